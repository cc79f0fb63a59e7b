import pickle
import sys
import types

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from hf_mmdl.convert.m2_original import (
    config_from_original_state_dict,
    convert_m2_checkpoint,
    convert_original_state_dict,
    load_original_vocabulary,
)
from hf_mmdl.modeling import M2ForConditionalGeneration


def original_state_dict(vocab=40, d=32, d_ff=64, slots=4, d_in=16, positions=21, layers=3) -> dict:
    """Tensors named and shaped as the original code's Transformer.state_dict() (spec §6), random values."""
    g = torch.Generator().manual_seed(0)
    t = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    sd = {"encoder.fc.weight": t(d, d_in), "encoder.fc.bias": t(d), "encoder.layer_norm.weight": t(d), "encoder.layer_norm.bias": t(d)}
    def attention(prefix):
        for p in "qkvo":
            sd[f"{prefix}.attention.fc_{p}.weight"], sd[f"{prefix}.attention.fc_{p}.bias"] = t(d, d), t(d)
        sd[f"{prefix}.layer_norm.weight"], sd[f"{prefix}.layer_norm.bias"] = t(d), t(d)
    def pwff(prefix):
        sd.update({f"{prefix}.fc1.weight": t(d_ff, d), f"{prefix}.fc1.bias": t(d_ff), f"{prefix}.fc2.weight": t(d, d_ff),
                   f"{prefix}.fc2.bias": t(d), f"{prefix}.layer_norm.weight": t(d), f"{prefix}.layer_norm.bias": t(d)})
    for i in range(layers):
        attention(f"encoder.layers.{i}.mhatt")
        sd[f"encoder.layers.{i}.mhatt.attention.m_k"], sd[f"encoder.layers.{i}.mhatt.attention.m_v"] = t(1, slots, d), t(1, slots, d)
        pwff(f"encoder.layers.{i}.pwff")
    sd["decoder.word_emb.weight"], sd["decoder.pos_emb.weight"] = t(vocab, d), t(positions, d)
    for j in range(layers):
        attention(f"decoder.layers.{j}.self_att")
        attention(f"decoder.layers.{j}.enc_att")
        pwff(f"decoder.layers.{j}.pwff")
        for level in (1, 2, 3):
            sd[f"decoder.layers.{j}.fc_alpha{level}.weight"], sd[f"decoder.layers.{j}.fc_alpha{level}.bias"] = t(d, 2 * d), t(d)
        sd[f"decoder.layers.{j}.self_att.running_keys"] = torch.zeros(0, d)
        sd[f"decoder.layers.{j}.self_att.running_values"] = torch.zeros(0, d)
    sd["decoder.fc.weight"] = t(vocab, d)
    sd["decoder.running_mask_self_attention"] = torch.zeros(1, 1, 0, dtype=torch.uint8)
    sd["decoder.running_seq"] = torch.zeros(1, dtype=torch.long)
    return sd


def test_every_original_tensor_is_mapped_exactly_once_with_its_shape():
    original = original_state_dict()
    config = config_from_original_state_dict(original, num_heads=4)
    model = M2ForConditionalGeneration(config)
    converted = convert_original_state_dict(original)
    ours = model.state_dict()
    assert set(converted) == set(ours), (set(ours) - set(converted), set(converted) - set(ours))
    assert len(converted) == len(original) - 8  # the 8 empty decoding buffers are dropped
    for key, tensor in converted.items():
        assert tensor.shape == ours[key].shape, key
    assert config.region_mask_mode == "legacy" and config.memory_slots == 4 and config.max_position_embeddings == 20
    assert converted["model.decoder.layers.0.gates.1.weight"] is original["decoder.layers.0.fc_alpha2.weight"]


# Where each kind of original tensor goes, written out by hand from the two codebases (not from the converter's own
# patterns), one layer each; `{i}` runs over the layers, `{p}` over weight and bias.
REFERENCE_NAMES = {
    "encoder.fc.{p}": "model.encoder.input_proj.{p}",
    "encoder.layer_norm.{p}": "model.encoder.input_norm.{p}",
    "encoder.layers.{i}.mhatt.attention.fc_q.{p}": "model.encoder.layers.{i}.self_attn.q_proj.{p}",
    "encoder.layers.{i}.mhatt.attention.fc_k.{p}": "model.encoder.layers.{i}.self_attn.k_proj.{p}",
    "encoder.layers.{i}.mhatt.attention.fc_v.{p}": "model.encoder.layers.{i}.self_attn.v_proj.{p}",
    "encoder.layers.{i}.mhatt.attention.fc_o.{p}": "model.encoder.layers.{i}.self_attn.o_proj.{p}",
    "encoder.layers.{i}.mhatt.layer_norm.{p}": "model.encoder.layers.{i}.attn_residual.layer_norm.{p}",
    "encoder.layers.{i}.pwff.fc1.{p}": "model.encoder.layers.{i}.feed_forward.fc1.{p}",
    "encoder.layers.{i}.pwff.fc2.{p}": "model.encoder.layers.{i}.feed_forward.fc2.{p}",
    "decoder.layers.{i}.self_att.attention.fc_q.{p}": "model.decoder.layers.{i}.self_attn.q_proj.{p}",
    "decoder.layers.{i}.self_att.attention.fc_k.{p}": "model.decoder.layers.{i}.self_attn.k_proj.{p}",
    "decoder.layers.{i}.self_att.attention.fc_v.{p}": "model.decoder.layers.{i}.self_attn.v_proj.{p}",
    "decoder.layers.{i}.self_att.attention.fc_o.{p}": "model.decoder.layers.{i}.self_attn.o_proj.{p}",
    "decoder.layers.{i}.enc_att.attention.fc_q.{p}": "model.decoder.layers.{i}.cross_attn.q_proj.{p}",
    "decoder.layers.{i}.enc_att.attention.fc_k.{p}": "model.decoder.layers.{i}.cross_attn.k_proj.{p}",
    "decoder.layers.{i}.enc_att.attention.fc_v.{p}": "model.decoder.layers.{i}.cross_attn.v_proj.{p}",
    "decoder.layers.{i}.enc_att.attention.fc_o.{p}": "model.decoder.layers.{i}.cross_attn.o_proj.{p}",
    "decoder.layers.{i}.fc_alpha1.{p}": "model.decoder.layers.{i}.gates.0.{p}",
    "decoder.layers.{i}.fc_alpha2.{p}": "model.decoder.layers.{i}.gates.1.{p}",
    "decoder.layers.{i}.fc_alpha3.{p}": "model.decoder.layers.{i}.gates.2.{p}",
}


def test_each_original_tensor_lands_under_the_reference_name_with_its_values():
    # Names and shapes alone cannot tell q from k (both d × d): the values must arrive where the reference says.
    original = original_state_dict()
    converted = convert_original_state_dict(original)
    checked = 0
    for source, target in REFERENCE_NAMES.items():
        for i in range(3):
            for p in ("weight", "bias"):
                torch.testing.assert_close(converted[target.format(i=i, p=p)], original[source.format(i=i, p=p)],
                                           rtol=0, atol=0, msg=lambda m, t=target: f"{t}: {m}")
                checked += 1
    assert checked == 20 * 3 * 2
    torch.testing.assert_close(converted["model.encoder.layers.1.self_attn.memory_keys"],
                               original["encoder.layers.1.mhatt.attention.m_k"], rtol=0, atol=0)
    torch.testing.assert_close(converted["lm_head.weight"], original["decoder.fc.weight"], rtol=0, atol=0)


def test_unknown_tensors_are_refused():
    with pytest.raises(KeyError, match="Unknown tensor"):
        convert_original_state_dict(original_state_dict() | {"visual_backbone.weight": torch.zeros(1)})


def write_vocab_pickle(path, itos):
    """A vocab.pkl as the original `data.vocab.Vocab` pickles it, written here with a stand-in module."""
    module = types.ModuleType("data.vocab")

    def _default_unk_index():
        return 0

    class Vocab:
        """Stand-in for the original data.vocab.Vocab."""

    Vocab.__module__ = _default_unk_index.__module__ = "data.vocab"
    Vocab.__qualname__, _default_unk_index.__qualname__ = "Vocab", "_default_unk_index"
    module.Vocab, module._default_unk_index = Vocab, _default_unk_index
    package = types.ModuleType("data")
    package.vocab = module
    sys.modules.update({"data": package, "data.vocab": module})
    try:
        vocab = Vocab()
        vocab.itos = itos
        from collections import Counter, defaultdict
        vocab.freqs = Counter(itos)
        vocab.stoi = defaultdict(_default_unk_index, {w: i for i, w in enumerate(itos)})
        path.write_bytes(pickle.dumps(vocab))
    finally:
        del sys.modules["data.vocab"], sys.modules["data"]


def test_convert_writes_a_loadable_legacy_folder_from_checkpoint_and_vocab(tmp_path):
    itos = ["<unk>", "<pad>", "<bos>", "<eos>"] + [f"word{i}" for i in range(36)]
    write_vocab_pickle(tmp_path / "vocab.pkl", itos)
    assert load_original_vocabulary(tmp_path / "vocab.pkl") == itos
    # The original train.py saves RNG states next to the weights, numpy's among them.
    torch.save({"state_dict": original_state_dict(d=64), "numpy_rng_state": np.random.get_state(), "epoch": 3},
               tmp_path / "m2.pth")
    out = convert_m2_checkpoint(tmp_path / "m2.pth", tmp_path / "hf", vocab=tmp_path / "vocab.pkl", num_heads=8)
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.region_mask_mode == "legacy"
    assert processor.tokenizer.convert_ids_to_tokens(7) == "word3"
    regions = processor(region_features=[np.random.rand(5, 16).astype(np.float32)])
    assert processor.batch_decode(model.generate(**regions, max_new_tokens=5))[0].split()[0].startswith("word")


def test_foreign_or_malicious_files_are_refused(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # would run a shell command
    with pytest.raises(pickle.UnpicklingError, match="never does"):
        load_original_vocabulary(tmp_path / "evil.pkl")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no M² state_dict"):
        convert_m2_checkpoint(tmp_path / "other.pth", tmp_path / "out", vocab=tmp_path / "evil.pkl", num_heads=8)
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights-only"):
        convert_m2_checkpoint(tmp_path / "corrupt.pth", tmp_path / "out", vocab=tmp_path / "evil.pkl", num_heads=8)
    assert not (tmp_path / "out").exists()


def test_the_head_count_is_a_required_documented_option(tmp_path, capsys):
    from hf_mmdl.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "m2", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--num_heads NUM_HEADS" in help_text and "8 for the released COCO model" in help_text
    assert "does not record it" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "m2", "m2.pth", "out", "--vocab", "vocab.pkl"])
    assert "the following arguments are required: --num_heads" in capsys.readouterr().err
    args = parser.parse_args(["convert", "m2", "m2.pth", "out", "--vocab", "vocab.pkl", "--num_heads", "4"])
    assert args.num_heads == 4
    # The given count is the one the converted model uses (the tensors would fit 1, 2, 4, 8, ... heads alike).
    assert config_from_original_state_dict(original_state_dict(), num_heads=4).num_attention_heads == 4
    assert config_from_original_state_dict(original_state_dict(), num_heads=2).num_attention_heads == 2
    with pytest.raises(ValueError, match="num_heads must be an int ≥ 1"):
        config_from_original_state_dict(original_state_dict(), num_heads=0)
