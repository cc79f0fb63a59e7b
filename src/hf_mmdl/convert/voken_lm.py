"""Convert the released voken-classification language models of airsplay/vokenization (`vlm_12L_768H_wiki`,
trained with transformers 3.3 as `CoLwithBert`) into `VokenBertForPreTraining` folders.

A released folder holds `config.json` (a BERT config plus `voken_size`, `do_voken_cls`, ...), `pytorch_model.bin`
(the `state_dict` of `CoLwithBert`, a `BertForMaskedLM` with a `visual_cls_head`) and the tokenizer files. The
parameter names are already ours (`VokenBertForPreTraining` keeps `bert`, `cls` and `visual_cls_head`); the
conversion reads every tensor exactly once:

- kept under its own name: `bert.embeddings.*`, `bert.encoder.layer.N.*`, `cls.predictions.{bias, transform.*}`,
  `visual_cls_head.{dense, layer_norm, decoder}.*`;
- dropped: `bert.embeddings.position_ids` (a buffer transformers rebuilds), and the tied copies
  `cls.predictions.decoder.weight` (= the word embeddings) and `cls.predictions.decoder.bias`
  (= `cls.predictions.bias`), each checked equal to what it is tied to;
- refused: anything else (a pooler, the regression / contrastive voken heads, another model's tensors), a tensor of
  another shape than the config gives, or a missing one.

    hf-mmdl convert voken-lm vlm_12L_768H_wiki OUT_DIR

`pytorch_model.bin` is read with `torch.load(weights_only=True)` (tensors only, no code); `model.safetensors` is read
as well. Corrupt or foreign files raise a `ValueError` naming the file.
"""

import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..modeling import VokenBertConfig, VokenBertForPreTraining

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("pytorch_model.bin", "model.safetensors")
# Buffers transformers rebuilds from the config.
DROPPED = ("bert.embeddings.position_ids",)
# Tied copies in the original state dict: name → the tensor it must equal.
TIED = {
    "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}
# What the original's other voken heads (`--do_voken_reg`, `--do_voken_ctr`, `--shared_head`) add.
OTHER_HEADS = ("visual_reg_head.", "visual_ctr_head.", "voken_feat_emb.", "cls.visn_decoder.")
# BERT fields of the original config.json the converted config keeps.
BERT_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
               "initializer_range", "layer_norm_eps", "pad_token_id")


def _weights_file(checkpoint: Path) -> Path:
    if checkpoint.is_file():
        return checkpoint
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint}: no such file or folder; pass a released folder (e.g. "
                                "vlm_12L_768H_wiki) or its pytorch_model.bin.")
    for name in WEIGHT_FILES:
        if (checkpoint / name).is_file():
            return checkpoint / name
    raise FileNotFoundError(f"{checkpoint} holds none of {WEIGHT_FILES}: is it a released voken-LM folder?")


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `pytorch_model.bin` (weights-only unpickling: tensors and containers, never code) or a
    `.safetensors` file. Raises ValueError naming the file when it is corrupt or holds anything but a flat mapping
    of names to tensors."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state_dict = load_file(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # whatever a damaged or foreign file makes torch.load / safetensors raise
        raise ValueError(f"{path} does not load as a weights file with weights-only unpickling ({error}): it is "
                         "corrupt or truncated, or holds objects other than tensors (it was not unpickled further).") \
            from error
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} is not a state dict (a mapping of names to tensors): pass the model's "
                         "pytorch_model.bin, not a training checkpoint or a pickled model.")
    return state_dict


def config_from_original(state_dict: dict[str, torch.Tensor], original_config: dict | None = None,
                         num_attention_heads: int | None = None) -> VokenBertConfig:
    """The `VokenBertConfig` of an original checkpoint: sizes read off the tensors, the other BERT fields from its
    `config.json` (`original_config`). The head count is not in the tensors: it comes from `config.json` or
    `num_attention_heads`. Raises ValueError when the tensors are not a voken-classification BERT's, or contradict
    the config."""
    if "visual_cls_head.decoder.weight" not in state_dict or "bert.embeddings.word_embeddings.weight" not in state_dict:
        raise ValueError("The weights have no visual_cls_head.decoder.weight / bert.embeddings.word_embeddings.weight: "
                         "not a CoLwithBert voken-classification checkpoint (an MLM-only BERT loads with "
                         "transformers' BertForMaskedLM).")
    vocab_size, hidden_size = state_dict["bert.embeddings.word_embeddings.weight"].shape
    layers = {int(k.split(".")[3]) for k in state_dict if k.startswith("bert.encoder.layer.")}
    from_tensors = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=len(layers),
        intermediate_size=state_dict["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state_dict["bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state_dict["bert.embeddings.token_type_embeddings.weight"].shape[0],
        voken_size=state_dict["visual_cls_head.decoder.weight"].shape[0],
    )
    original_config = original_config or {}
    if original_config.get("do_voken_cls") is False:
        raise ValueError("config.json says do_voken_cls=false: this checkpoint was not trained with voken "
                         "classification.")
    for name in (*BERT_FIELDS, "voken_size"):
        given = original_config.get(name)
        if name in from_tensors and given is not None and given != from_tensors[name]:
            raise ValueError(f"config.json gives {name}={given} but the weights have {from_tensors[name]}: the "
                             "config does not belong to these weights.")
    kwargs = {name: original_config[name] for name in BERT_FIELDS if original_config.get(name) is not None}
    if num_attention_heads is not None:
        kwargs["num_attention_heads"] = num_attention_heads
    elif "num_attention_heads" not in kwargs:
        raise ValueError("The number of attention heads is not stored in the weights and there is no config.json "
                         "giving it: pass num_attention_heads (8 for 6L/512H, 12 for 12L/768H).")
    return VokenBertConfig(**(kwargs | from_tensors))


def convert_original_state_dict(state_dict: dict[str, torch.Tensor], model: VokenBertForPreTraining
                                ) -> dict[str, torch.Tensor]:
    """Every original tensor read exactly once (see the module docstring): the kept ones with their shapes checked
    against `model`'s, the tied copies checked equal and dropped. Raises ValueError for unknown, mis-shaped,
    unequal tied or missing tensors."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items() if name not in TIED}
    converted, unknown = {}, []
    for name, tensor in state_dict.items():
        if name in DROPPED:
            continue
        if name in TIED:
            target = state_dict.get(TIED[name])
            if target is None or not torch.equal(tensor, target):
                raise ValueError(f"{name} should be tied to (equal) {TIED[name]}, but it is not: the checkpoint is "
                                 "not a CoLwithBert with a tied MLM decoder.")
            continue
        if name.startswith(OTHER_HEADS):
            raise ValueError(f"{name} belongs to the original's voken regression / contrastive / shared head, which "
                             "VokenBertForPreTraining does not have (only voken classification was released).")
        if name not in expected:
            unknown.append(name)
            continue
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)} but the config gives {expected[name]}.")
        converted[name] = tensor
    if unknown:
        raise ValueError(f"Tensors that are not part of a CoLwithBert voken LM: {sorted(unknown)[:10]}"
                         + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "") + ".")
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(f"The checkpoint lacks {missing[:10]}" + (f" and {len(missing) - 10} more" if len(missing) > 10
                                                                   else "") + ": it is incomplete.")
    return converted


def _tokenizer_of(source: Path):
    from transformers import AutoTokenizer, BertTokenizer

    if (source / "tokenizer_config.json").is_file() or (source / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(source)
    if (source / "vocab.txt").is_file():
        return BertTokenizer.from_pretrained(source)
    return None


def convert_voken_lm_checkpoint(checkpoint: str | Path, output_dir: str | Path, tokenizer: str | Path | None = None,
                                num_attention_heads: int | None = None) -> Path:
    """Write a `VokenBertForPreTraining` folder (safetensors, config and tokenizer) for a released CoLwithBert
    checkpoint: a folder (`config.json` + `pytorch_model.bin` or `model.safetensors`, tokenizer files) or a weights
    file with `num_attention_heads`. `tokenizer` is a folder (or Hub id) to take the tokenizer from when the
    checkpoint's folder has none (the released models use `bert-base-uncased`'s).

    Raises FileNotFoundError for a missing checkpoint and ValueError for a corrupt or foreign one (see
    `convert_original_state_dict`); nothing is written then."""
    checkpoint = Path(checkpoint)
    weights = _weights_file(checkpoint)
    folder = weights.parent
    state_dict = load_original_state_dict(weights)
    config_path = folder / "config.json"
    original_config = json.loads(config_path.read_text()) if config_path.is_file() else None
    config = config_from_original(state_dict, original_config, num_attention_heads)
    model = VokenBertForPreTraining(config)
    converted = convert_original_state_dict(state_dict, model)
    model.load_state_dict(converted, strict=False)  # the tied decoder follows the word embeddings
    model.tie_weights()
    processing = _tokenizer_of(folder) if tokenizer is None else None
    if tokenizer is not None:
        from transformers import AutoTokenizer
        processing = AutoTokenizer.from_pretrained(tokenizer)
    if processing is not None and len(processing) != config.vocab_size:
        raise ValueError(f"The tokenizer has {len(processing)} tokens but the model's vocabulary {config.vocab_size}.")
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if processing is None:
        logger.warning("%s has no tokenizer files and none was given: %s holds the model only; save the training "
                       "tokenizer (bert-base-uncased for the released models) next to it for fill-mask.", folder,
                       output_dir)
    else:
        processing.save_pretrained(output_dir)
    return output_dir


__all__ = ["config_from_original", "convert_original_state_dict", "convert_voken_lm_checkpoint",
           "load_original_state_dict"]
