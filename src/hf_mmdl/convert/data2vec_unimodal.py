"""Convert the released unimodal data2vec checkpoints (transformers' `Data2VecTextModel`, `Data2VecVisionModel`,
`Data2VecAudioModel`, e.g. `facebook/data2vec-text-base`, `facebook/data2vec-vision-base`,
`facebook/data2vec-audio-base`) into one `Data2VecMultimodalModel` with per-modality blocks.

With `block_sharing="separate"` every block holds one attention, LayerNorm pair and FFN per modality, text and audio
blocks post-LN and image blocks pre-LN with CaiT layer scale, so the converted model reproduces each released
encoder exactly: its `hidden_states` for one modality (the input of the first block and each block's output) equal
transformers' `output_hidden_states=True` ones.

    from hf_mmdl.convert.data2vec_unimodal import convert_data2vec_checkpoints
    convert_data2vec_checkpoints("data2vec-multimodal-base", text="facebook/data2vec-text-base",
                                 vision="facebook/data2vec-vision-base", audio="facebook/data2vec-audio-base")

or `hf-mmdl convert data2vec OUTPUT_DIR --text T --vision V --audio A`.

Source → target (block i):

    text: Data2VecTextModel                       → multimodal
      embeddings.*                                → text_encoder.embeddings.*
      encoder.layer.i.attention.self.{query,key,value} → layers.i.attention.text.{query,key,value}
      encoder.layer.i.attention.output.dense      → layers.i.attention.text.out
      encoder.layer.i.attention.output.LayerNorm  → layers.i.norm1.text
      encoder.layer.i.intermediate.dense          → layers.i.ffn.text.fc1
      encoder.layer.i.output.dense                → layers.i.ffn.text.fc2
      encoder.layer.i.output.LayerNorm            → layers.i.norm2.text
    vision: Data2VecVisionModel
      embeddings.* (cls_token, mask_token, patch_embeddings.projection, position_embeddings)
                                                  → image_encoder.embeddings.*
      encoder.relative_position_bias.relative_position_bias_table
                                                  → image_encoder.relative_position_bias.relative_position_bias_table
      encoder.layer.i.layernorm_before            → layers.i.norm1.image
      encoder.layer.i.attention.attention.{query,key,value} → layers.i.attention.image.{query,key,value}
      encoder.layer.i.attention.output.dense      → layers.i.attention.image.out
      encoder.layer.i.layernorm_after             → layers.i.norm2.image
      encoder.layer.i.intermediate.dense          → layers.i.ffn.image.fc1
      encoder.layer.i.output.dense                → layers.i.ffn.image.fc2
      encoder.layer.i.lambda_1, lambda_2          → layers.i.layer_scale1.image, layers.i.layer_scale2.image
      layernorm (use_mean_pooling=False: the released pre-trained layout), or
      pooler.layernorm (use_mean_pooling=True)    → final_norm.image
    audio: Data2VecAudioModel
      feature_extractor.*, feature_projection.*, masked_spec_embed
                                                  → audio_encoder.(same name)
      encoder.pos_conv_embed.*, encoder.layer_norm → audio_encoder.pos_conv_embed.*, audio_encoder.layer_norm
      encoder.layers.i.attention.{q,k,v,out}_proj → layers.i.attention.audio.{query,key,value,out}
      encoder.layers.i.layer_norm                 → layers.i.norm1.audio
      encoder.layers.i.feed_forward.intermediate_dense → layers.i.ffn.audio.fc1
      encoder.layers.i.feed_forward.output_dense  → layers.i.ffn.audio.fc2
      encoder.layers.i.final_layer_norm           → layers.i.norm2.audio

Filled without a source tensor: `layers.i.attention.image.key.bias` = 0 (BEiT's key has no bias); `final_norm.image` =
weight 1, bias 0 for a mean-pooling vision checkpoint without pooler weights; `audio_encoder.masked_spec_embed` = 0
for an audio checkpoint without one (`mask_time_prob = mask_feature_prob = 0`). Text and audio blocks are post-LN,
so their `final_norm` is the identity and has no weights.

Intentionally dropped (not part of the encoders): the text pooler (`pooler.dense`, tanh over the first token), every
task head of a task checkpoint (loaded through its base-model prefix: `lm_head`, `classifier`, `qa_outputs`,
`projector`, `tdnn`, `feature_extractor` of X-vector, `decode_head`, `auxiliary_head`, `fpn*`, ...) and the derived
buffer `relative_position_index` of old vision files. New in the converted model, left at their fresh initialisation:
the modalities not given (their sub-config then has the given ones' width and default input settings), the
projections into the shared space (`projections.*`) and the fusion stack's final norm.

The vision `last_hidden_state` of a mean-pooling checkpoint is the one exception to exactness: transformers normalises
nothing per token there (its pooler normalises the mean of the patch tokens), whereas `final_norm.image` normalises
each token; its weights are the pooler's LayerNorm, the nearest learned equivalent. The hidden states stay exact.

Refused with a `ValueError` before anything is written: per-layer relative position biases (`-ft1k` vision
checkpoints, `use_relative_position_bias=True`: the converted blocks have one bias shared by all blocks), an audio
adapter (`add_adapter=True`), a decoder text model (`is_decoder=True`: causal attention), blocks whose sizes or
activation differ between the given checkpoints, and a folder of another model type. No processor is written: the
released checkpoints' tokenizer, image processor and feature extractor stay usable as they are, and a
`Data2VecMultimodalProcessor` needs a tokenizer matching the text vocabulary. `mask_token_id` (for pre-training the
text student) is left unset: set it from the text checkpoint's tokenizer (`<mask>`, 50264 for data2vec-text-base).
"""

import copy
import logging
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    Data2VecAudioConfig, Data2VecAudioModel, Data2VecTextConfig, Data2VecTextModel, Data2VecVisionConfig,
    Data2VecVisionModel, PretrainedConfig,
)

from ..modeling.configuration_data2vec_multimodal import MODALITIES, Data2VecMultimodalConfig
from ..modeling.modeling_data2vec_multimodal import Data2VecMultimodalModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Source:
    flag: str  # the command-line flag and keyword naming it
    config_class: type
    model_class: type
    encoder: str  # the multimodal model's input encoder
    base_model_prefix: str


SOURCES = {
    "text": _Source("text", Data2VecTextConfig, Data2VecTextModel, "text_encoder", "data2vec_text"),
    "image": _Source("vision", Data2VecVisionConfig, Data2VecVisionModel, "image_encoder", "data2vec_vision"),
    "audio": _Source("audio", Data2VecAudioConfig, Data2VecAudioModel, "audio_encoder", "data2vec_audio"),
}

_WB = r"(weight|bias)"
_BLOCK = {"text": r"encoder\.layer\.(\d+)\.", "image": r"encoder\.layer\.(\d+)\.", "audio": r"encoder\.layers\.(\d+)\."}
# Per modality: (base-model tensor name pattern, multimodal name template over its groups).
_RULES = {
    "text": [
        (r"embeddings\.(.+)", r"text_encoder.embeddings.\1"),
        (rf"{_BLOCK['text']}attention\.self\.(query|key|value)\.{_WB}", r"layers.\1.attention.text.\2.\3"),
        (rf"{_BLOCK['text']}attention\.output\.dense\.{_WB}", r"layers.\1.attention.text.out.\2"),
        (rf"{_BLOCK['text']}attention\.output\.LayerNorm\.{_WB}", r"layers.\1.norm1.text.\2"),
        (rf"{_BLOCK['text']}intermediate\.dense\.{_WB}", r"layers.\1.ffn.text.fc1.\2"),
        (rf"{_BLOCK['text']}output\.dense\.{_WB}", r"layers.\1.ffn.text.fc2.\2"),
        (rf"{_BLOCK['text']}output\.LayerNorm\.{_WB}", r"layers.\1.norm2.text.\2"),
    ],
    "image": [
        (r"embeddings\.(.+)", r"image_encoder.embeddings.\1"),
        (r"encoder\.relative_position_bias\.relative_position_bias_table",
         r"image_encoder.relative_position_bias.relative_position_bias_table"),
        (rf"{_BLOCK['image']}layernorm_before\.{_WB}", r"layers.\1.norm1.image.\2"),
        (rf"{_BLOCK['image']}attention\.attention\.(query|key|value)\.{_WB}", r"layers.\1.attention.image.\2.\3"),
        (rf"{_BLOCK['image']}attention\.output\.dense\.{_WB}", r"layers.\1.attention.image.out.\2"),
        (rf"{_BLOCK['image']}layernorm_after\.{_WB}", r"layers.\1.norm2.image.\2"),
        (rf"{_BLOCK['image']}intermediate\.dense\.{_WB}", r"layers.\1.ffn.image.fc1.\2"),
        (rf"{_BLOCK['image']}output\.dense\.{_WB}", r"layers.\1.ffn.image.fc2.\2"),
        (rf"{_BLOCK['image']}lambda_1", r"layers.\1.layer_scale1.image"),
        (rf"{_BLOCK['image']}lambda_2", r"layers.\1.layer_scale2.image"),
        (rf"layernorm\.{_WB}", r"final_norm.image.\1"),
        (rf"pooler\.layernorm\.{_WB}", r"final_norm.image.\1"),
    ],
    "audio": [
        (r"(feature_extractor|feature_projection)\.(.+)", r"audio_encoder.\1.\2"),
        (r"masked_spec_embed", r"audio_encoder.masked_spec_embed"),
        (r"encoder\.(pos_conv_embed\..+|layer_norm\.(?:weight|bias))", r"audio_encoder.\1"),
        (rf"{_BLOCK['audio']}attention\.q_proj\.{_WB}", r"layers.\1.attention.audio.query.\2"),
        (rf"{_BLOCK['audio']}attention\.k_proj\.{_WB}", r"layers.\1.attention.audio.key.\2"),
        (rf"{_BLOCK['audio']}attention\.v_proj\.{_WB}", r"layers.\1.attention.audio.value.\2"),
        (rf"{_BLOCK['audio']}attention\.out_proj\.{_WB}", r"layers.\1.attention.audio.out.\2"),
        (rf"{_BLOCK['audio']}layer_norm\.{_WB}", r"layers.\1.norm1.audio.\2"),
        (rf"{_BLOCK['audio']}feed_forward\.intermediate_dense\.{_WB}", r"layers.\1.ffn.audio.fc1.\2"),
        (rf"{_BLOCK['audio']}feed_forward\.output_dense\.{_WB}", r"layers.\1.ffn.audio.fc2.\2"),
        (rf"{_BLOCK['audio']}final_layer_norm\.{_WB}", r"layers.\1.norm2.audio.\2"),
    ],
}
_RULES = {m: [(re.compile(pattern), target) for pattern, target in rules] for m, rules in _RULES.items()}
# Base-model tensors that are not part of the encoder (see the module docstring).
_DROPPED = {
    "text": re.compile(r"pooler\.dense\.(weight|bias)"),
    "image": re.compile(r".*relative_position_index"),
    "audio": None,
}
# Target tensors the sources may lack, and what fills them: (pattern, fill).
_FILLED = {
    "image": [(re.compile(r"layers\.\d+\.attention\.image\.key\.bias"), torch.zeros),
              (re.compile(r"final_norm\.image\.weight"), torch.ones),
              (re.compile(r"final_norm\.image\.bias"), torch.zeros)],
    "audio": [(re.compile(r"audio_encoder\.masked_spec_embed"), torch.zeros)],
    "text": [],
}
_BLOCK_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act")


def rename_unimodal_key(modality: str, key: str) -> str | None:
    """The multimodal name of one base-model tensor of `modality` ("text", "image" or "audio"), or None if no rule
    maps it (it is then either intentionally dropped or an error)."""
    for pattern, target in _RULES[modality]:
        if match := pattern.fullmatch(key):
            return match.expand(target)
    return None


def owns(modality: str, target_key: str) -> bool:
    """Whether a `Data2VecMultimodalModel` tensor belongs to `modality`'s tower (its input encoder, its attention,
    norms, FFN and layer scale in every block, its final norm)."""
    return (target_key.startswith(SOURCES[modality].encoder + ".")
            or re.fullmatch(rf"layers\.\d+\.\w+\.{modality}(\..+)?", target_key) is not None
            or target_key.startswith(f"final_norm.{modality}."))


@dataclass
class UnimodalMapping:
    """One modality's renamed tensors (the source tensors themselves, under multimodal names) and the source names
    intentionally dropped."""

    state_dict: dict[str, torch.Tensor]
    dropped: list[str]


def map_unimodal_state_dict(modality: str, state_dict: dict[str, torch.Tensor]) -> UnimodalMapping:
    """Rename a transformers Data2Vec{Text,Vision,Audio}Model state dict (or a task model's, whose encoder tensors
    carry the base-model prefix, e.g. `data2vec_text.`; its heads are dropped) to `Data2VecMultimodalModel` names.
    Each source tensor goes to at most one target.

    Raises:
        ValueError: a tensor that no rule maps and that is not a known non-encoder tensor, or two tensors that map
            to one target (e.g. both a per-token and a pooler LayerNorm); all are listed.
    """
    if modality not in SOURCES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}.")
    prefix = SOURCES[modality].base_model_prefix + "."
    dropped = []
    if any(key.startswith(prefix) for key in state_dict):
        dropped = sorted(key for key in state_dict if not key.startswith(prefix))  # the task heads
        state_dict = {key[len(prefix):]: tensor for key, tensor in state_dict.items() if key.startswith(prefix)}
    mapped, sources, unmapped = {}, {}, []
    for key, tensor in state_dict.items():
        target = rename_unimodal_key(modality, key)
        if target is None:
            if _DROPPED[modality] is not None and _DROPPED[modality].fullmatch(key):
                dropped.append(key)
            else:
                unmapped.append(key)
            continue
        if target in mapped:
            unmapped.append(f"{key} (→ {target}, already filled from {sources[target]})")
            continue
        mapped[target], sources[target] = tensor, key
    if unmapped:
        raise ValueError(f"These {SOURCES[modality].flag} tensors have no place in the multimodal model: "
                         f"{', '.join(sorted(unmapped))}. Pass a {SOURCES[modality].model_class.__name__} "
                         "checkpoint (or one of its task models).")
    return UnimodalMapping(mapped, dropped)


def data2vec_multimodal_state_dict(config: Data2VecMultimodalConfig,
                                   **state_dicts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `Data2VecMultimodalModel(config)` tensors of the given modalities (keywords `text`, `image`, `audio`:
    each a transformers Data2Vec base-model or task-model state dict). Every source tensor is used once (or
    dropped as a non-encoder tensor), every tensor of a given modality's tower is filled (from its source, or by the
    fills of the module docstring), with the model's shapes.

    Raises:
        ValueError: an unknown modality; tensors unmapped, missing or mis-shaped (all listed).
    """
    unknown = set(state_dicts) - set(MODALITIES)
    if unknown:
        raise ValueError(f"Modalities are {MODALITIES}; got {sorted(unknown)}.")
    with torch.device("meta"):
        expected = {key: tensor for key, tensor in Data2VecMultimodalModel(config).state_dict().items()}
    result, problems = {}, {"unmapped": [], "missing": [], "mis-shaped": []}
    for modality, state_dict in state_dicts.items():
        mapped = map_unimodal_state_dict(modality, state_dict).state_dict
        owned = {key for key in expected if owns(modality, key)}
        problems["unmapped"] += sorted(set(mapped) - owned)
        for key in sorted(owned - set(mapped)):
            fill = next((fill for pattern, fill in _FILLED[modality] if pattern.fullmatch(key)), None)
            if fill is None:
                problems["missing"].append(key)
            else:
                mapped[key] = fill(expected[key].shape, dtype=torch.float32)
        for key, tensor in mapped.items():
            if key in owned and tensor.shape != expected[key].shape:
                problems["mis-shaped"].append(f"{key} {tuple(tensor.shape)} ≠ {tuple(expected[key].shape)}")
        result |= {key: tensor for key, tensor in mapped.items() if key in owned}
    if any(problems.values()):
        details = "; ".join(f"{kind}: {', '.join(keys)}" for kind, keys in problems.items() if keys)
        raise ValueError(f"The unimodal weights do not fit the data2vec-multimodal model (hidden size "
                         f"{config.hidden_size}, {config.num_hidden_layers} blocks). {details}")
    return result


def _check_layout(modality: str, config: PretrainedConfig) -> None:
    """Refuse source layouts the converted blocks cannot reproduce."""
    flag = SOURCES[modality].flag
    if modality == "image" and config.use_relative_position_bias:
        raise ValueError(f"--{flag}: this checkpoint has a relative position bias per block "
                         "(use_relative_position_bias=True, as the fine-tuned `-ft1k` releases), but the converted "
                         "model has one bias shared by all blocks. Convert the pre-trained checkpoint instead (e.g. "
                         "facebook/data2vec-vision-base, use_shared_relative_position_bias=True).")
    if modality == "audio" and config.add_adapter:
        raise ValueError(f"--{flag}: this checkpoint has an adapter after its blocks (add_adapter=True), which the "
                         "converted model does not have. Convert a checkpoint without one.")
    if modality == "text" and (config.is_decoder or config.add_cross_attention):
        raise ValueError(f"--{flag}: this is a decoder checkpoint (is_decoder / add_cross_attention: causal "
                         "attention), but the converted blocks attend both ways. Convert a bidirectional "
                         "Data2VecText checkpoint (e.g. facebook/data2vec-text-base).")


def data2vec_multimodal_config_from(text: Data2VecTextConfig | None = None,
                                    vision: Data2VecVisionConfig | None = None,
                                    audio: Data2VecAudioConfig | None = None) -> Data2VecMultimodalConfig:
    """The configuration that reproduces the given unimodal encoders: `block_sharing="separate"`, pre-LN image
    blocks with the vision config's layer scale, post-LN text and audio blocks, the given configs as sub-configs;
    a modality not given gets a default sub-config of the same width and block sizes. top-K target layers are the
    paper's, capped at the number of blocks.

    Raises:
        ValueError: none given, a layout that cannot be reproduced, or block sizes / activation that differ between
            the given configs (each difference named).
    """
    given = {m: c for m, c in zip(MODALITIES, (text, vision, audio)) if c is not None}
    if not given:
        raise ValueError("Pass at least one of text=, vision= or audio= (--text, --vision, --audio): the "
                         "Data2Vec checkpoints to convert.")
    for modality, config in given.items():
        _check_layout(modality, config)
    differ = [f"{field} ({', '.join(f'{SOURCES[m].flag} {getattr(c, field)}' for m, c in given.items())})"
              for field in _BLOCK_FIELDS if len({getattr(c, field) for c in given.values()}) > 1]
    if differ:
        raise ValueError("The checkpoints' blocks must have the same sizes and activation to share one model; "
                         f"they differ in {'; '.join(differ)}.")
    blocks = {field: getattr(next(iter(given.values())), field) for field in _BLOCK_FIELDS}
    width = blocks["hidden_size"]
    defaults = {
        "text": lambda: Data2VecTextConfig(**blocks),
        "image": lambda: Data2VecVisionConfig(**blocks, use_absolute_position_embeddings=True, use_mask_token=True),
        # Grouped positional convolution: 16 groups (data2vec) where the width allows.
        "audio": lambda: Data2VecAudioConfig(**blocks, num_conv_pos_embedding_groups=math.gcd(16, width)),
    }
    # Copies: the composite configuration takes its sub-configs over (attention implementation included), and the
    # caller's configs may still drive their own models.
    sub = {m: copy.deepcopy(given[m]) if m in given else defaults[m]() for m in MODALITIES}
    scale = sub["image"].layer_scale_init_value
    paper_top_k = {"text": 10, "image": 6, "audio": 8}  # data2vec §3.3, 12-block models
    return Data2VecMultimodalConfig(
        text_config=sub["text"], vision_config=sub["image"], audio_config=sub["audio"], **blocks,
        block_sharing="separate", pre_norm_modalities=["image"],
        layer_scale_init_values={"image": scale} if scale and scale > 0 else {},
        top_k_layers={m: min(k, blocks["num_hidden_layers"]) for m, k in paper_top_k.items()},
    )


def _load_config(modality: str, source: str | Path) -> PretrainedConfig:
    spec = SOURCES[modality]
    path = Path(source).expanduser()
    if not path.exists() and (path.is_absolute() or str(source).startswith((".", "~")) or str(source).count("/") > 1):
        raise FileNotFoundError(f"--{spec.flag}: no folder {source}; pass a saved {spec.model_class.__name__} folder "
                                "or a Hub id.")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"--{spec.flag}: {source} has no config.json; pass a folder saved with "
                                f"{spec.model_class.__name__}.save_pretrained (or a Hub id).")
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(str(path) if path.exists() else str(source))
    except OSError as error:
        raise FileNotFoundError(f"--{spec.flag}: cannot read a model configuration from {source} ({error})") from error
    found = config_dict.get("model_type")
    if found != spec.config_class.model_type:
        raise ValueError(f"--{spec.flag}: {source} holds a `{found}` model, not a `{spec.config_class.model_type}` "
                         f"one. Pass a {spec.model_class.__name__} folder (or one of its task models).")
    return spec.config_class.from_dict(config_dict)


def _load_state_dict(modality: str, source: str | Path, config: PretrainedConfig) -> tuple[dict, list[str]]:
    """The base model's tensors as saved in `source` (task checkpoints through their base-model prefix), and the
    saved tensors that are not part of the base model."""
    spec = SOURCES[modality]
    path = Path(source).expanduser()
    # The pooler's LayerNorm is the final norm of a mean-pooling vision checkpoint; the text pooler is dropped.
    options = ({"add_pooling_layer": False} if modality == "text"
               else {"add_pooling_layer": config.use_mean_pooling} if modality == "image" else {})
    try:
        model, info = spec.model_class.from_pretrained(str(path) if path.exists() else str(source), config=config,
                                                       output_loading_info=True, **options)
    except OSError as error:
        raise FileNotFoundError(f"--{spec.flag}: cannot read the weights of {source} ({error})") from error
    missing = [key for key in info["missing_keys"] if not (modality == "image" and key.startswith("pooler."))]
    if modality == "audio" and "masked_spec_embed" in missing:
        missing.remove("masked_spec_embed")
    if missing:
        raise ValueError(f"--{spec.flag}: {source} lacks encoder weights: {', '.join(sorted(missing))}. Pass a "
                         f"complete {spec.model_class.__name__} checkpoint.")
    state_dict = {key: tensor for key, tensor in model.state_dict().items() if key not in info["missing_keys"]}
    return state_dict, sorted(info["unexpected_keys"])


def convert_data2vec_checkpoints(output_dir: str | Path, text: str | Path | None = None,
                                 vision: str | Path | None = None, audio: str | Path | None = None) -> Path:
    """Write a `Data2VecMultimodalModel` folder (safetensors) holding the given Data2Vec checkpoints (local folders
    or Hub ids of `Data2VecTextModel` / `Data2VecVisionModel` / `Data2VecAudioModel` or their task models). Everything
    is read and checked before anything is written, and the folder is written next to `output_dir` and then
    renamed, so a failure never leaves a half-written `output_dir`. Returns `output_dir`.

    Raises:
        ValueError: no checkpoint given, a folder of another model type, a layout the model cannot reproduce,
            mismatched block sizes, incomplete weights.
        FileNotFoundError: a checkpoint that cannot be found or read.
        FileExistsError: `output_dir` exists and is not an empty folder.
    """
    sources = {m: s for m, s in zip(MODALITIES, (text, vision, audio)) if s is not None}
    if not sources:
        raise ValueError("Pass at least one of --text, --vision or --audio (text=, vision=, audio=): the Data2Vec "
                         "checkpoints to convert.")
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir} exists and is not an empty folder; choose a new output folder.")
    configs = {m: _load_config(m, s) for m, s in sources.items()}
    config = data2vec_multimodal_config_from(configs.get("text"), configs.get("image"), configs.get("audio"))
    state_dicts = {}
    for modality, source in sources.items():
        state_dicts[modality], dropped = _load_state_dict(modality, source, configs[modality])
        if dropped:
            logger.info("--%s %s: dropped %d tensors that are not part of the encoder: %s", SOURCES[modality].flag,
                        source, len(dropped), ", ".join(dropped))
    state_dict = data2vec_multimodal_state_dict(config, **state_dicts)
    model = Data2VecMultimodalModel(config)  # fresh towers for the modalities not given, and the projections
    result = model.load_state_dict(state_dict, strict=False)
    assert not result.unexpected_keys and not any(owns(m, k) for m in sources for k in result.missing_keys)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir.parent, prefix=f".{output_dir.name}.") as staging:
        staged = Path(staging) / output_dir.name
        model.save_pretrained(staged)
        staged.replace(output_dir)
    return output_dir


__all__ = ["convert_data2vec_checkpoints", "data2vec_multimodal_config_from", "data2vec_multimodal_state_dict",
           "map_unimodal_state_dict", "owns", "rename_unimodal_key"]
