"""Convert the released Vokenizer matcher (airsplay/vokenization, `xmatching`) into a `VokenizerModel` folder.

The matcher's `BEST.pth` is a `torch.save` of its JointModel's state dict: `lang_model.backbone.*` (a BertModel with
pooler, plus the `embeddings.position_ids` buffer transformers 3 saved), `lang_model.mlp.{0,3}.*`,
`visn_model.backbone.*` (torchvision ResNeXt names with frozen batch norm, no `fc`) and `visn_model.mlp.{0,3}.*`.
`VokenizerModel` keeps those names, so conversion reads the architecture off the shapes, drops `position_ids` (a
constant, rebuilt by the model) and maps every other tensor exactly once; a state dict saved from a
`DistributedDataParallel` wrapper (`module.` before every name) is read too. Loading uses weights-only unpickling.

    hf-mmdl convert vokenizer-matcher BEST.pth OUT_DIR --tokenizer bert-base-uncased
"""

import re
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig

from ..modeling import ResNeXtConfig, VokenizerConfig, VokenizerModel
from ..processing import VokenizerImageProcessor, VokenizerProcessor

_DROPPED = re.compile(r"^lang_model\.backbone\.embeddings\.position_ids$")
_KNOWN = re.compile(r"^(lang_model\.(backbone\.(embeddings|encoder|pooler)|mlp\.[03])"
                    r"|visn_model\.(backbone\.(conv1|bn1|layer\d+)|mlp\.[03]))\.")
_WORD_EMBEDDINGS = "lang_model.backbone.embeddings.word_embeddings.weight"


def load_original_matcher(path: str | Path) -> dict[str, torch.Tensor]:
    """The matcher's state dict from `BEST.pth`, without running pickled code; a `module.` prefix on every name
    (DistributedDataParallel) is removed. Raises `FileNotFoundError`, or `ValueError` for a file that is not a
    matcher state dict."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"{path} does not load as a state dict with weights-only unpickling ({error}); "
                         "`BEST.pth.model` is a pickled whole model: pass `BEST.pth`.") from error
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} holds a {type(state_dict).__name__}, not a state dict: pass the matcher's BEST.pth.")
    if state_dict and all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module."):]: tensor for key, tensor in state_dict.items()}
    if _WORD_EMBEDDINGS not in state_dict or "visn_model.mlp.0.weight" not in state_dict:
        raise ValueError(f"{path} is not a Vokenizer matcher state dict (no {_WORD_EMBEDDINGS} or visn_model.mlp.0.weight).")
    return state_dict


def _count(state_dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for key in state_dict if (m := pattern.match(key))})


def config_from_original_state_dict(state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None,
                                    lang_layers: list[int] | None = None) -> VokenizerConfig:
    """Read the matcher's architecture off its tensor shapes. Not recorded in the file: the BERT's head count (default
    hidden size / 64, as in every Google BERT; bert-base: 12) and which hidden states the MLP reads (default: the last
    K, K = MLP input width / hidden size; the released matcher: [-4, -3, -2, -1]; given ones are sorted, as the
    released code concatenates them in sorted order). Raises `ValueError` for shapes
    that do not fit together."""
    vocab_size, hidden = state_dict[_WORD_EMBEDDINGS].shape
    heads = num_attention_heads or hidden // 64
    if heads < 1 or hidden % heads:
        raise ValueError(f"num_attention_heads={heads} does not divide the BERT's hidden size {hidden}; pass "
                         "--num_attention_heads.")
    text = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_attention_heads=heads,
        num_hidden_layers=_count(state_dict, "lang_model.backbone.encoder.layer."),
        intermediate_size=state_dict["lang_model.backbone.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state_dict["lang_model.backbone.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state_dict["lang_model.backbone.embeddings.token_type_embeddings.weight"].shape[0],
    )
    mlp_in = state_dict["lang_model.mlp.0.weight"].shape[1]
    if mlp_in % hidden:
        raise ValueError(f"lang_model.mlp.0 reads {mlp_in} features, not a multiple of the BERT's hidden size {hidden}.")
    # The released LangModel concatenates its layers in sorted order, whatever order they were given in.
    layers = sorted(lang_layers) if lang_layers else list(range(-(mlp_in // hidden), 0))
    if len(layers) != mlp_in // hidden:
        raise ValueError(f"lang_layers {layers} name {len(layers)} hidden states but lang_model.mlp.0 reads "
                         f"{mlp_in // hidden} of them.")
    prefix = "visn_model.backbone."
    stages = len({key.split(".")[2] for key in state_dict if re.match(r"visn_model\.backbone\.layer\d+\.", key)})
    first_width, per_group = state_dict[prefix + "layer1.0.conv2.weight"].shape[:2]
    vision = ResNeXtConfig(
        num_channels=state_dict[prefix + "conv1.weight"].shape[1],
        embedding_size=state_dict[prefix + "conv1.weight"].shape[0],
        hidden_sizes=[state_dict[f"{prefix}layer{s}.0.conv3.weight"].shape[0] for s in range(1, stages + 1)],
        depths=[_count(state_dict, f"{prefix}layer{s}.") for s in range(1, stages + 1)],
        groups=first_width // per_group, width_per_group=per_group,
        frozen_batch_norm=not any(key.endswith("num_batches_tracked") for key in state_dict if key.startswith(prefix)),
    )
    widths = [state_dict[f"{prefix}layer{s}.0.conv2.weight"].shape[0] for s in range(1, stages + 1)]
    if widths != vision.inner_widths:
        raise ValueError(f"The ResNeXt's grouped convolutions have {widths} channels, not the {vision.inner_widths} of "
                         f"{vision.groups} groups x {vision.width_per_group} doubling per stage.")
    return VokenizerConfig(text_config=text, vision_config=vision, lang_layers=layers,
                           mlp_hidden_size=state_dict["lang_model.mlp.0.weight"].shape[0],
                           joint_dim=state_dict["lang_model.mlp.3.weight"].shape[0])


def convert_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every original tensor under its `VokenizerModel` name (the same name: the model keeps the released
    attribute names), `embeddings.position_ids` dropped; raises `KeyError` for a tensor of no known part."""
    converted = {}
    for key, tensor in state_dict.items():
        if _DROPPED.match(key):
            continue
        if not _KNOWN.match(key):
            raise KeyError(f"Unknown tensor {key!r} in the matcher state dict: is this xmatching's JointModel?")
        converted[key] = tensor
    return converted


def convert_vokenizer_matcher(checkpoint: str | Path, output_dir: str | Path, tokenizer: str | None = None,
                              num_attention_heads: int | None = None, lang_layers: str | list[int] | None = None) -> Path:
    """Write a `VokenizerModel` folder (and, with `tokenizer`, a `VokenizerProcessor` with that BERT tokenizer and the
    released keys' image preprocessing) for an original `BEST.pth`. Raises `ValueError` when a tensor is left
    unmapped or the tokenizer's vocabulary differs from the checkpoint's embedding table."""
    state_dict = load_original_matcher(checkpoint)
    if isinstance(lang_layers, str):
        lang_layers = [int(i) for i in lang_layers.split(",")]
    config = config_from_original_state_dict(state_dict, num_attention_heads, lang_layers)
    processor = None
    if tokenizer is not None:
        bert_tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if len(bert_tokenizer) != config.text_config.vocab_size:
            raise ValueError(f"The tokenizer {tokenizer} has {len(bert_tokenizer)} tokens but the checkpoint's BERT "
                             f"embeds {config.text_config.vocab_size}: pass the matcher's own tokenizer "
                             "(bert-base-uncased for the released one).")
        processor = VokenizerProcessor(VokenizerImageProcessor(), bert_tokenizer)
    model = VokenizerModel(config)
    missing, unexpected = model.load_state_dict(convert_original_state_dict(state_dict), strict=False)
    if missing or unexpected:
        raise ValueError(f"Conversion left tensors unmapped: missing {missing}, unexpected {unexpected}.")
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if processor is not None:
        processor.save_pretrained(output_dir)
    return output_dir


__all__ = ["config_from_original_state_dict", "convert_original_state_dict", "convert_vokenizer_matcher",
           "load_original_matcher"]
