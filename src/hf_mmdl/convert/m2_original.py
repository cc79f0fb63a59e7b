"""Convert the original M² release (aimagelab/meshed-memory-transformer) into a `from_pretrained` folder.

The original `meshed_memory_transformer.pth` is a `torch.save` of a dict with `state_dict` plus optimizer, scheduler
and RNG states; `vocab.pkl` is a pickled `data.vocab.Vocab`. Neither is unpickled freely: the checkpoint loads with
`torch.load(weights_only=True)`, allowing only the numpy types its RNG state needs, and the vocabulary with an
unpickler that knows the three names a Vocab pickle uses and refuses any other.

    hf-mmdl convert m2 meshed_memory_transformer.pth OUT_DIR --vocab vocab.pkl --num_heads 8

The checkpoint does not record the number of attention heads (every tensor has the same shape for any head count
dividing d_model), so it is a required argument: the released COCO model uses 8; a wrong value converts without an
error into a model with wrong outputs.
"""

import collections
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from ..modeling import M2Config, M2ForConditionalGeneration
from ..processing import M2ImageProcessor, M2Processor, caption_tokenizer_from_vocab

# Original name pattern -> our name (regex substitution), applied to every tensor exactly once.
_RENAMES = [
    (r"^encoder\.fc\.", "model.encoder.input_proj."),
    (r"^encoder\.layer_norm\.", "model.encoder.input_norm."),
    (r"^encoder\.layers\.(\d+)\.mhatt\.attention\.fc_([qkvo])\.", r"model.encoder.layers.\1.self_attn.\2_proj."),
    (r"^encoder\.layers\.(\d+)\.mhatt\.attention\.m_k$", r"model.encoder.layers.\1.self_attn.memory_keys"),
    (r"^encoder\.layers\.(\d+)\.mhatt\.attention\.m_v$", r"model.encoder.layers.\1.self_attn.memory_values"),
    (r"^encoder\.layers\.(\d+)\.mhatt\.layer_norm\.", r"model.encoder.layers.\1.attn_residual.layer_norm."),
    (r"^(en|de)coder\.layers\.(\d+)\.pwff\.fc([12])\.", r"model.\1coder.layers.\2.feed_forward.fc\3."),
    (r"^(en|de)coder\.layers\.(\d+)\.pwff\.layer_norm\.", r"model.\1coder.layers.\2.feed_forward.residual.layer_norm."),
    (r"^decoder\.word_emb\.", "model.decoder.embed_tokens."),
    (r"^decoder\.pos_emb\.", "model.decoder.embed_positions."),
    (r"^decoder\.layers\.(\d+)\.self_att\.attention\.fc_([qkvo])\.", r"model.decoder.layers.\1.self_attn.\2_proj."),
    (r"^decoder\.layers\.(\d+)\.self_att\.layer_norm\.", r"model.decoder.layers.\1.self_residual.layer_norm."),
    (r"^decoder\.layers\.(\d+)\.enc_att\.attention\.fc_([qkvo])\.", r"model.decoder.layers.\1.cross_attn.\2_proj."),
    (r"^decoder\.layers\.(\d+)\.enc_att\.layer_norm\.", r"model.decoder.layers.\1.cross_residual.layer_norm."),
    (r"^decoder\.fc\.weight$", "lm_head.weight"),
]
# Empty buffers of the original's stateful decoding: state, not weights.
_DROPPED = re.compile(r"^decoder\.(running_mask_self_attention|running_seq|layers\.\d+\.self_att\.running_(keys|values))$")
_GATE = re.compile(r"^decoder\.layers\.(\d+)\.fc_alpha(\d+)\.(weight|bias)$")


def rename_original_key(key: str) -> str | None:
    """Our parameter name for an original one; None for the dropped decoding buffers."""
    if _DROPPED.match(key):
        return None
    if gate := _GATE.match(key):
        layer, level, kind = gate.groups()
        return f"model.decoder.layers.{layer}.gates.{int(level) - 1}.{kind}"
    for pattern, replacement in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise KeyError(f"Unknown tensor {key!r} in the original M² state dict: is this a meshed-memory transformer checkpoint?")


def config_from_original_state_dict(state_dict: dict[str, torch.Tensor], num_heads: int, **overrides) -> M2Config:
    """Read the architecture off the tensor shapes. `num_heads` is not stored in the checkpoint and must be given
    (the released model uses 8); it must be an int ≥ 1 dividing d_model, else a `ValueError`."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be an int ≥ 1 (the released M² uses 8), got {num_heads!r}.")
    vocab_size, d_model = state_dict["decoder.word_emb.weight"].shape
    layer_ids = lambda prefix: {int(k.split(".")[2]) for k in state_dict if k.startswith(prefix)}  # noqa: E731
    encoder_layers, decoder_layers = len(layer_ids("encoder.layers.")), len(layer_ids("decoder.layers."))
    gates = len({k for k in state_dict if k.startswith("decoder.layers.0.fc_alpha") and k.endswith("weight")})
    if gates != encoder_layers:
        raise ValueError(f"The checkpoint has {encoder_layers} encoder levels but {gates} gates per decoder layer.")
    kwargs = dict(
        vocab_size=vocab_size,
        d_model=d_model,
        num_attention_heads=num_heads,
        d_ff=state_dict["encoder.layers.0.pwff.fc1.weight"].shape[0],
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        memory_slots=state_dict["encoder.layers.0.mhatt.attention.m_k"].shape[1],
        region_feature_dim=state_dict["encoder.fc.weight"].shape[1],
        max_position_embeddings=state_dict["decoder.pos_emb.weight"].shape[0] - 1,
        region_mask_mode="legacy",
        position_table_init="xavier",
        unk_token_id=0, pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2,
    )
    return M2Config(**(kwargs | overrides))


def convert_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every original tensor exactly once; raises on unknown or duplicated names."""
    converted = {}
    for key, tensor in state_dict.items():
        new_key = rename_original_key(key)
        if new_key is None:
            continue
        if new_key in converted:
            raise ValueError(f"Two original tensors map to {new_key!r}.")
        converted[new_key] = tensor
    return converted


def load_original_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of an original training checkpoint, loaded without running arbitrary pickled code: only
    tensors, containers and the numpy types of the saved RNG state are accepted."""
    numpy_types = [np.ndarray, np.dtype, np.core.multiarray._reconstruct, type(np.dtype("uint32")), type(np.dtype("float64"))]
    try:
        with torch.serialization.safe_globals(numpy_types):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(
            f"{path} does not load as an M² training checkpoint with weights-only unpickling ({error}). It may be "
            "corrupt, or contain objects other than tensors and RNG state; it was not unpickled further."
        ) from error
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or "decoder.word_emb.weight" not in state_dict:
        raise ValueError(f"{path} holds no M² state_dict (no 'decoder.word_emb.weight'): is it the original checkpoint?")
    return state_dict


class _VocabPickle:
    """Stands in for the original `data.vocab.Vocab`, whose code is not needed to read its `itos`."""

    def __setstate__(self, state):
        self.__dict__.update(state)


def _default_unk_index():
    return 0


class _VocabUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("data.vocab", "Vocab"): _VocabPickle,
        ("data.vocab", "_default_unk_index"): _default_unk_index,
        ("collections", "Counter"): collections.Counter,
        ("collections", "defaultdict"): collections.defaultdict,
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"vocab.pkl refers to {module}.{name}, which an M² vocabulary never does.")
        return self.ALLOWED[(module, name)]


def load_original_vocabulary(path: str | Path) -> list[str]:
    """The `itos` list of the original `vocab.pkl` (10,201 words for the released model)."""
    with open(path, "rb") as handle:
        vocab = _VocabUnpickler(handle).load()
    itos = getattr(vocab, "itos", None)
    if not isinstance(itos, list) or not all(isinstance(w, str) for w in itos):
        raise ValueError(f"{path} is not an M² vocabulary pickle (no list of words in `itos`).")
    return itos


def convert_m2_checkpoint(checkpoint: str | Path, output_dir: str | Path, vocab: str | Path, num_heads: int) -> Path:
    """Write a `from_pretrained` folder (model in legacy mode, word tokenizer from the original vocabulary, region
    processor for 50 × 2048-d detector features) for an original M² checkpoint. `num_heads` is the checkpoint
    model's attention head count, which the file does not record (8 for the released COCO model)."""
    state_dict = load_original_checkpoint(checkpoint)
    itos = load_original_vocabulary(vocab)
    config = config_from_original_state_dict(state_dict, num_heads=num_heads)
    if len(itos) != config.vocab_size:
        raise ValueError(f"vocab.pkl has {len(itos)} words but the checkpoint's embedding has {config.vocab_size} rows.")
    model = M2ForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(convert_original_state_dict(state_dict), strict=False)
    if missing or unexpected:
        raise ValueError(f"Conversion left parameters unmapped: missing {missing}, unexpected {unexpected}.")
    tokenizer = caption_tokenizer_from_vocab(itos, model_max_length=config.max_position_embeddings)
    processor = M2Processor(M2ImageProcessor(max_regions=config.max_regions, region_feature_dim=config.region_feature_dim), tokenizer)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir
