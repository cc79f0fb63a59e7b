"""`hf-mmdl convert vokenizer-matcher`: the released matcher's BEST.pth layout, written out here by name (BERT of
transformers 3 with pooler and position_ids, torchvision ResNeXt with frozen batch norm and no fc, the two MLPs)."""

import pytest
import torch
from transformers import AutoModel, BertTokenizerFast

from hf_mmdl import VokenizerModel
from hf_mmdl.cli import main
from hf_mmdl.convert.vokenizer_original import convert_original_state_dict, convert_vokenizer_matcher

# A tiny matcher in the released layout: BERT 2 layers of 32 (4 heads of 8), vocab 30, 40 positions; ResNeXt stem 8,
# stages of 16 and 32 channels with 1 and 2 blocks, 2 groups x 4; MLPs 64 → 16 → 8 (the last 2 layers).
V, H, FF, P, L = 30, 32, 37, 40, 2
STAGES = [(16, 8, 1), (32, 16, 2)]  # (out channels, grouped width, blocks)


def bert_tensors() -> dict[str, tuple[int, ...]]:
    shapes = {"embeddings.word_embeddings.weight": (V, H), "embeddings.position_embeddings.weight": (P, H),
              "embeddings.token_type_embeddings.weight": (2, H), "embeddings.LayerNorm.weight": (H,),
              "embeddings.LayerNorm.bias": (H,), "pooler.dense.weight": (H, H), "pooler.dense.bias": (H,)}
    for layer in range(L):
        block = f"encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes |= {f"{block}{name}.weight": (H, H), f"{block}{name}.bias": (H,)}
        shapes |= {f"{block}attention.output.LayerNorm.weight": (H,), f"{block}attention.output.LayerNorm.bias": (H,),
                   f"{block}intermediate.dense.weight": (FF, H), f"{block}intermediate.dense.bias": (FF,),
                   f"{block}output.dense.weight": (H, FF), f"{block}output.dense.bias": (H,),
                   f"{block}output.LayerNorm.weight": (H,), f"{block}output.LayerNorm.bias": (H,)}
    return {f"lang_model.backbone.{name}": shape for name, shape in shapes.items()}


def frozen_bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{name}": (channels,) for name in ("weight", "bias", "running_mean", "running_var")}


def resnext_tensors() -> dict[str, tuple[int, ...]]:
    shapes = {"conv1.weight": (8, 3, 7, 7), **frozen_bn("bn1", 8)}
    channels = 8
    for stage, (out, width, blocks) in enumerate(STAGES, start=1):
        for block in range(blocks):
            name = f"layer{stage}.{block}"
            shapes |= {f"{name}.conv1.weight": (width, channels, 1, 1), **frozen_bn(f"{name}.bn1", width),
                       f"{name}.conv2.weight": (width, width // 2, 3, 3), **frozen_bn(f"{name}.bn2", width),
                       f"{name}.conv3.weight": (out, width, 1, 1), **frozen_bn(f"{name}.bn3", out)}
            if block == 0:
                shapes |= {f"{name}.downsample.0.weight": (out, channels, 1, 1), **frozen_bn(f"{name}.downsample.1", out)}
            channels = out
    return {f"visn_model.backbone.{name}": shape for name, shape in shapes.items()}


def original_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = bert_tensors() | resnext_tensors() | {
        "lang_model.mlp.0.weight": (16, 2 * H), "lang_model.mlp.0.bias": (16,), "lang_model.mlp.3.weight": (8, 16),
        "lang_model.mlp.3.bias": (8,), "visn_model.mlp.0.weight": (16, 32), "visn_model.mlp.0.bias": (16,),
        "visn_model.mlp.3.weight": (8, 16), "visn_model.mlp.3.bias": (8,)}
    state = {name: torch.rand(shape, generator=generator) * 0.2 + 0.9 if name.endswith("running_var")
             else torch.randn(shape, generator=generator) * 0.1 for name, shape in shapes.items()}
    state["lang_model.backbone.embeddings.position_ids"] = torch.arange(P)[None]
    return state


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "BEST.pth"
    torch.save(original_state_dict(), path)
    return path


def test_every_original_tensor_is_mapped_exactly_once_and_position_ids_dropped(checkpoint, tmp_path):
    original = original_state_dict()
    folder = convert_vokenizer_matcher(checkpoint, tmp_path / "out", num_attention_heads=4)
    model = AutoModel.from_pretrained(folder)
    assert type(model) is VokenizerModel
    config = model.config
    assert (config.text_config.num_hidden_layers, config.text_config.hidden_size, config.lang_layers) == (2, 32, [-2, -1])
    assert (config.text_config.vocab_size, config.text_config.max_position_embeddings) == (V, P)
    assert (config.mlp_hidden_size, config.joint_dim) == (16, 8)
    assert config.vision_config.depths == [1, 2] and config.vision_config.groups == 2
    assert config.vision_config.frozen_batch_norm
    state = model.state_dict()
    assert set(state) == set(original) - {"lang_model.backbone.embeddings.position_ids"}
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, original[name], rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_a_data_parallel_state_dict_and_the_command_line_convert_alike(tmp_path):
    wrapped = {f"module.{name}": tensor for name, tensor in original_state_dict().items()}
    torch.save(wrapped, tmp_path / "ddp.pth")
    main(["convert", "vokenizer-matcher", str(tmp_path / "ddp.pth"), str(tmp_path / "out"), "--lang_layers=-1,-2",
          "--num_attention_heads", "4"])
    model = VokenizerModel.from_pretrained(tmp_path / "out")
    assert model.config.text_config.num_attention_heads == 4
    assert model.config.lang_layers == [-2, -1]  # concatenated in sorted order, as the released LangModel does
    torch.testing.assert_close(model.state_dict()["visn_model.mlp.3.bias"], original_state_dict()["visn_model.mlp.3.bias"])


def test_converted_weights_score_as_the_original_computation(checkpoint, tmp_path):
    # The released matcher's forward written out from its parts: last-2 BERT layers → MLP → l2norm; CNN → avg → MLP.
    model = VokenizerModel.from_pretrained(convert_vokenizer_matcher(checkpoint, tmp_path / "out", num_attention_heads=4)).eval()
    ids, pixels = torch.randint(0, V, (2, 5)), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = model.lang_model.backbone(input_ids=ids, output_hidden_states=True).hidden_states
        mlp = lambda x, p: (x @ p["0.weight"].T + p["0.bias"]).relu() @ p["3.weight"].T + p["3.bias"]  # noqa: E731
        original = original_state_dict()
        lang = {k: original[f"lang_model.mlp.{k}"] for k in ("0.weight", "0.bias", "3.weight", "3.bias")}
        text = mlp(torch.cat(hidden[-2:], -1), lang)
        out = model(input_ids=ids, pixel_values=pixels, return_loss=False)
    torch.testing.assert_close(out.text_keys, text / text.norm(dim=-1, keepdim=True))


def test_bad_checkpoints_are_refused_with_the_reason(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert_vokenizer_matcher(tmp_path / "missing.pth", tmp_path / "out")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a Vokenizer matcher state dict"):
        convert_vokenizer_matcher(tmp_path / "other.pth", tmp_path / "out")
    with pytest.raises(KeyError, match="visn_model.fc.weight"):
        convert_original_state_dict(original_state_dict() | {"visn_model.fc.weight": torch.zeros(2, 2)})
    truncated = {k: v for k, v in original_state_dict().items() if k != "visn_model.backbone.layer2.1.bn3.running_mean"}
    torch.save(truncated, tmp_path / "truncated.pth")
    with pytest.raises(ValueError, match="missing.*layer2.1.bn3.running_mean"):
        convert_vokenizer_matcher(tmp_path / "truncated.pth", tmp_path / "out", num_attention_heads=4)
    torch.save(original_state_dict(), tmp_path / "best.pth")
    with pytest.raises(ValueError, match="lang_layers"):
        convert_vokenizer_matcher(tmp_path / "best.pth", tmp_path / "out", num_attention_heads=4, lang_layers="-1")
    # The default head count (hidden size / 64) does not fit a 32-wide BERT: the converter asks for it.
    with pytest.raises(ValueError, match="--num_attention_heads"):
        convert_vokenizer_matcher(tmp_path / "best.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_tokenizer_of_another_vocabulary_is_refused(checkpoint, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat"]))
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(tmp_path / "tok")
    with pytest.raises(ValueError, match="tokens but the checkpoint's BERT embeds 30: pass the matcher's own tokenizer"):
        convert_vokenizer_matcher(checkpoint, tmp_path / "out", tokenizer=str(tmp_path / "tok"), num_attention_heads=4)
    assert not (tmp_path / "out").exists()  # nothing half-written
