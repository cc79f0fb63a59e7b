"""The converter of the released CoLwithBert voken LMs (`hf-mmdl convert voken-lm`), on state dicts in the original
names and shapes (transformers 3.3's `save_pretrained`: every parameter alias and the position_ids buffer)."""

import json
import pickle

import pytest
import torch

from hf_mmdl.convert.voken_lm import convert_voken_lm_checkpoint
from hf_mmdl.modeling import VokenBertForPreTraining

from voken_lm_helpers import tiny_config, tiny_inputs, tiny_tokenizer


def original_folder(tmp_path, model=None, with_tokenizer=True, **config_overrides):
    """A folder as the original run_vlm_distributed.py saves it: config.json of a CoLBertConfig (model_type bert),
    pytorch_model.bin with the tied copies and the position_ids buffer, the tokenizer's vocab.txt."""
    if model is None:
        torch.manual_seed(1)
        model = VokenBertForPreTraining(tiny_config(vocab_size=len(tiny_tokenizer())))
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"].clone()
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"].clone()
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    folder = tmp_path / "vlm_2L_32H"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    c = model.config
    config = dict(architectures=["CoLwithBert"], model_type="bert", vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                  num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                  intermediate_size=c.intermediate_size, hidden_act="gelu", hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, max_position_embeddings=64, type_vocab_size=2,
                  initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0, voken_size=c.voken_size,
                  voken_dim=None, do_voken_cls=True, do_voken_reg=False, do_voken_ctr=False, shared_head=False,
                  verbose=False)
    (folder / "config.json").write_text(json.dumps(config | config_overrides))
    if with_tokenizer:
        vocab = tiny_tokenizer().get_vocab()
        (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    return folder, state, model


def test_conversion_reads_every_tensor_and_gives_the_same_outputs(tmp_path):
    folder, state, model = original_folder(tmp_path)
    out = convert_voken_lm_checkpoint(folder, tmp_path / "converted")
    converted = VokenBertForPreTraining.from_pretrained(out).eval()
    assert converted.config.model_type == "voken_bert" and converted.config.voken_size == 10
    assert converted.config.num_attention_heads == 2
    for name, tensor in converted.state_dict().items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    with torch.no_grad():
        inputs = tiny_inputs(vocab_size=model.config.vocab_size)
        expected, got = model.eval()(**inputs), converted(**inputs)
    torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=0)
    torch.testing.assert_close(got.voken_logits, expected.voken_logits, rtol=0, atol=0)
    # The vocab.txt became a tokenizer that fill-mask reads.
    from transformers import AutoTokenizer
    words = (folder / "vocab.txt").read_text().split()
    assert AutoTokenizer.from_pretrained(out).get_vocab() == {word: i for i, word in enumerate(words)}


def test_a_weights_file_without_config_needs_the_head_count(tmp_path):
    folder, _, _ = original_folder(tmp_path)
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match="num_attention_heads"):
        convert_voken_lm_checkpoint(folder / "pytorch_model.bin", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    out = convert_voken_lm_checkpoint(folder / "pytorch_model.bin", tmp_path / "out", num_attention_heads=2)
    assert VokenBertForPreTraining.from_pretrained(out).config.num_attention_heads == 2


def test_safetensors_weights_convert_too(tmp_path):
    from safetensors.torch import save_file

    folder, state, _ = original_folder(tmp_path)
    (folder / "pytorch_model.bin").unlink()
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    out = convert_voken_lm_checkpoint(folder, tmp_path / "out")
    torch.testing.assert_close(VokenBertForPreTraining.from_pretrained(out).visual_cls_head.decoder.weight,
                               state["visual_cls_head.decoder.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("change, match", [
    ("a pooler", "not part of a CoLwithBert"),
    ("the regression head", "regression / contrastive"),
    ("a missing tensor", "lacks"),
    ("an untied decoder", "tied"),
    ("a mis-shaped tensor", "has shape"),
    ("no voken head", "not a CoLwithBert voken-classification checkpoint"),
])
def test_foreign_or_incomplete_state_dicts_are_refused(tmp_path, change, match):
    folder, state, _ = original_folder(tmp_path)
    if change == "a pooler":
        state["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    elif change == "the regression head":
        state["visual_reg_head.dense.weight"] = torch.zeros(32, 32)
    elif change == "a missing tensor":
        del state["bert.encoder.layer.1.output.dense.bias"]
    elif change == "an untied decoder":
        state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1
    elif change == "a mis-shaped tensor":
        state["visual_cls_head.dense.weight"] = torch.zeros(32, 16)
    else:
        del state["visual_cls_head.decoder.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=match):
        convert_voken_lm_checkpoint(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_config_of_other_weights_is_refused(tmp_path):
    folder, _, _ = original_folder(tmp_path, voken_size=50000)
    with pytest.raises(ValueError, match="voken_size=50000"):
        convert_voken_lm_checkpoint(folder, tmp_path / "out")


def test_a_truncated_weights_file_is_refused_naming_it(tmp_path):
    folder, _, _ = original_folder(tmp_path)
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        convert_voken_lm_checkpoint(folder, tmp_path / "out")


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickle_with_code_is_not_unpickled(tmp_path, capsys):
    folder, _, _ = original_folder(tmp_path)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(ValueError, match="weights-only"):
        convert_voken_lm_checkpoint(folder, tmp_path / "out")
    assert "this must never run" not in capsys.readouterr().out


def test_a_missing_checkpoint_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        convert_voken_lm_checkpoint(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        convert_voken_lm_checkpoint(tmp_path / "empty", tmp_path / "out")


def test_a_tokenizer_of_another_vocabulary_is_refused(tmp_path):
    folder, _, _ = original_folder(tmp_path, VokenBertForPreTraining(tiny_config()), with_tokenizer=False)
    tokenizer_folder = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tokenizer_folder)  # 120 ids, the model's vocabulary 99
    with pytest.raises(ValueError, match="tokenizer has"):
        convert_voken_lm_checkpoint(folder, tmp_path / "out", tokenizer=tokenizer_folder)
