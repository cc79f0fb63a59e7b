"""M² meshed-memory transformer for image captioning (Cornia et al., "Meshed-Memory Transformer for Image
Captioning", CVPR 2020).

A memory-augmented encoder turns image regions into N levels of visual features; a meshed decoder cross-attends to
every level and mixes them with learned sigmoid gates. Equation numbers refer to the paper. Where the released code and
the paper differ, the code is followed, since it produced the released checkpoint (e.g. the 1/√N of the meshed sum).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_m2 import M2Config
from .inputs import check_float_tensor, check_values, to_model_dtype
from .layers import MultiHeadAttention, PostNormFeedForward, PostNormResidual, sinusoid_position_table
from .loading import CheckedSaveLoadMixin

# transformers 5.24 renamed the cache argument and output field `past_key_values` to `cache`; M² accepts both.
CACHE_FIELD = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"


@dataclass
class M2EncoderOutput(ModelOutput):
    """Output of the memory-augmented encoder.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, regions, d_model)`): X̃ᴺ, the last encoder level.
        level_hidden_states (`torch.FloatTensor` of shape `(batch, N, regions, d_model)`): X̃¹..X̃ᴺ, every encoder
            level, which the meshed decoder reads.
        attention_mask (`torch.BoolTensor` of shape `(batch, regions)`): True for regions the decoder may attend to.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): The projected regions followed by every level.
    """

    last_hidden_state: torch.FloatTensor | None = None
    level_hidden_states: torch.FloatTensor | None = None
    attention_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class M2Seq2SeqModelOutput(Seq2SeqModelOutput):
    """[`Seq2SeqModelOutput`] plus `gates`: per decoder layer, the meshed gates α of shape (batch, N, length, d_model)."""

    gates: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class M2Seq2SeqLMOutput(Seq2SeqLMOutput):
    """[`Seq2SeqLMOutput`] plus `gates`: per decoder layer, the meshed gates α of shape (batch, N, length, d_model)."""

    gates: tuple[torch.FloatTensor, ...] | None = None


class M2MemoryAugmentedAttention(MultiHeadAttention):
    """Memory-augmented attention (Eq. 3): n_m learnable key and value slots are appended to the projected keys and
    values, so the encoder can retrieve a-priori knowledge not present in the regions. Slots are not projected; as in
    the released code they are scaled at use by √d_k (keys) and √n_m (values), and are never masked."""

    def __init__(self, hidden_size: int, num_heads: int, memory_slots: int):
        super().__init__(hidden_size, num_heads)
        self.memory_slots = memory_slots
        self.memory_keys = nn.Parameter(torch.empty(1, memory_slots, hidden_size))
        self.memory_values = nn.Parameter(torch.empty(1, memory_slots, hidden_size))

    def project_keys_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = states.shape[0]
        memory_keys = math.sqrt(self.head_dim) * self.memory_keys.expand(batch, -1, -1)
        memory_values = math.sqrt(self.memory_slots) * self.memory_values.expand(batch, -1, -1)
        keys = torch.cat([self.k_proj(states), memory_keys.to(states.dtype)], dim=1)
        values = torch.cat([self.v_proj(states), memory_values.to(states.dtype)], dim=1)
        return self.split_heads(keys), self.split_heads(values)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is not None:
            slots_visible = attention_mask.new_ones(*attention_mask.shape[:-1], self.memory_slots)
            attention_mask = torch.cat([attention_mask, slots_visible], dim=-1)
        return super().forward(hidden_states, attention_mask=attention_mask)


class M2EncoderLayer(GradientCheckpointingLayer):
    """One encoder level: Z = AddNorm(M_mem(X)), X̃ = AddNorm(F(Z)) (Eq. 5)."""

    def __init__(self, config: M2Config):
        super().__init__()
        self.self_attn = M2MemoryAugmentedAttention(config.d_model, config.num_attention_heads, config.memory_slots)
        self.attn_residual = PostNormResidual(config.d_model, config.dropout, config.layer_norm_eps)
        self.feed_forward = PostNormFeedForward(config.d_model, config.d_ff, config.dropout, config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = self.attn_residual(hidden_states, self.self_attn(hidden_states, attention_mask=attention_mask))
        return self.feed_forward(hidden_states)


class M2Encoder(nn.Module):
    """The memory-augmented encoder: visual tokens (detector regions, or grid cells of a backbone) are projected as
    LN(Dropout(ReLU(W x))), then pass through N memory-augmented layers; every layer's output is kept."""

    def __init__(self, config: M2Config):
        super().__init__()
        self.config = config
        self.backbone = AutoBackbone.from_config(config.backbone_config) if config.backbone_config is not None else None
        feature_dim = self.backbone.channels[-1] if self.backbone is not None else config.region_feature_dim
        self.input_proj = nn.Linear(feature_dim, config.d_model)
        self.grid_position_embeddings = (
            nn.Embedding(config.max_regions, config.d_model)
            if self.backbone is not None and config.grid_position_embeddings
            else None
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.input_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList([M2EncoderLayer(config) for _ in range(config.encoder_layers)])

    def train(self, mode: bool = True):
        """A frozen backbone (no parameter requires grad: `--freeze_backbone`, LoRA, SCST on a fixed feature
        extractor) stays in eval mode, so training passes do not move its BatchNorm running statistics: those are
        base weights that a frozen model, or an adapter file, must not change."""
        super().train(mode)
        if mode and self.backbone is not None and not any(p.requires_grad for p in self.backbone.parameters()):
            self.backbone.eval()
        return self

    def grid_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Backbone grid cells as visual tokens: (batch, C, h, w) -> (batch, h·w, C)."""
        if self.backbone is None:
            raise ValueError(
                "This M² model was configured for precomputed region features (no `backbone_config`): pass "
                "`region_features` instead of `pixel_values`, or build the model with a backbone_config."
            )
        feature_map = self.backbone(pixel_values).feature_maps[-1]
        cells = feature_map.flatten(2).transpose(1, 2)
        if cells.shape[1] > self.config.max_regions:
            raise ValueError(
                f"The backbone produced {cells.shape[1]} grid cells, more than max_regions={self.config.max_regions}: "
                "use smaller images or a config with a larger max_regions."
            )
        return cells

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> M2EncoderOutput:
        if (pixel_values is None) == (region_features is None):
            raise ValueError("Pass exactly one visual input: `pixel_values` (images) or `region_features`.")
        if region_features is not None and self.backbone is not None:
            raise ValueError(
                "This M² model reads images through its backbone (`backbone_config`), so its input projection expects "
                f"{self.input_proj.in_features}-d backbone cells, not detector regions: pass `pixel_values` (images "
                "through its processor), or use a model built for region features (no backbone_config)."
            )
        # The encoder is where forward and generate both read the visual input: NaN here would otherwise come out
        # as a fluent caption.
        if pixel_values is not None:
            check_float_tensor(pixel_values, "pixel_values", ndim=4)
            check_values(pixel_values, "pixel_values")
        else:
            check_float_tensor(region_features, "region_features", ndim=3)
            check_values(region_features, "region_features")
            if region_attention_mask is not None and region_attention_mask.shape != region_features.shape[:2]:
                raise ValueError(f"Batch mismatch: region_attention_mask has shape {tuple(region_attention_mask.shape)} "
                                 f"but region_features {tuple(region_features.shape)}; pass one mask row per image.")
        dtype = self.input_proj.weight.dtype
        pixel_values, region_features = to_model_dtype(pixel_values, dtype), to_model_dtype(region_features, dtype)
        if pixel_values is not None:
            features = self.grid_features(pixel_values)
            projected = self.input_proj(features)
            if self.grid_position_embeddings is not None:
                projected = projected + self.grid_position_embeddings.weight[: features.shape[1]]
            visible = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        else:
            features = region_features
            projected = self.input_proj(features)
            if region_attention_mask is not None:
                visible = region_attention_mask.bool()
            else:
                visible = (features != 0).any(dim=-1)
        hidden_states = self.input_norm(self.input_dropout(F.relu(projected)))
        if self.config.region_mask_mode == "legacy":
            # The released code tests the projected, normalised features for zero, which in practice masks nothing.
            visible = hidden_states.sum(dim=-1) != 0
        attention_mask = visible[:, None, None, :]

        embedded, levels = hidden_states, []
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)
            levels.append(hidden_states)
        level_hidden_states = torch.stack(levels, dim=1)
        return M2EncoderOutput(
            last_hidden_state=hidden_states,
            level_hidden_states=level_hidden_states,
            attention_mask=visible,
            hidden_states=(embedded, *levels) if output_hidden_states else None,
        )


class M2DecoderLayer(GradientCheckpointingLayer):
    """A meshed decoder layer (Eq. 6-9). Masked self-attention is followed by ONE cross-attention applied to every
    encoder level X̃ⁱ (Eq. 7); the per-level results are weighted by sigmoid gates α_i = σ(W_i[Y; C(X̃ⁱ, Y)] + b_i)
    (Eq. 8) and summed, then a feed-forward block follows. Outputs at padded query positions are zeroed."""

    def __init__(self, config: M2Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_levels = config.encoder_layers
        self.self_attn = MultiHeadAttention(config.d_model, config.num_attention_heads)
        self.self_residual = PostNormResidual(config.d_model, config.dropout, config.layer_norm_eps)
        self.cross_attn = MultiHeadAttention(config.d_model, config.num_attention_heads)
        self.cross_residual = PostNormResidual(config.d_model, config.dropout, config.layer_norm_eps)
        self.gates = nn.ModuleList([nn.Linear(2 * config.d_model, config.d_model) for _ in range(self.num_levels)])
        self.feed_forward = PostNormFeedForward(config.d_model, config.d_ff, config.dropout, config.layer_norm_eps)

    def level_keys_values(self, level_hidden_states: torch.Tensor, cache: EncoderDecoderCache | None):
        """Cross-attention keys/values of all levels, folded into the batch: (batch·N, heads, regions, head_dim).

        They are computed once per generation and cached as (batch, N·heads, regions, head_dim): a view of the same
        memory whose first axis is the beam axis, so beam reordering stays correct and reading costs no copy."""
        batch, levels, regions, _ = level_hidden_states.shape
        if cache is not None and cache.is_updated.get(self.layer_idx):
            cached = cache.cross_attention_cache.layers[self.layer_idx]
            keys, values = cached.keys, cached.values
        else:
            keys, values = self.cross_attn.project_keys_values(level_hidden_states.flatten(0, 1))
            keys, values = (t.reshape(batch, -1, regions, t.shape[-1]) for t in (keys, values))
            if cache is not None:
                keys, values = cache.cross_attention_cache.update(keys, values, self.layer_idx)
                cache.is_updated[self.layer_idx] = True
        return tuple(t.reshape(batch * levels, -1, regions, t.shape[-1]) for t in (keys, values))

    def forward(
        self,
        hidden_states: torch.Tensor,
        level_hidden_states: torch.Tensor,
        self_attention_mask: torch.Tensor,
        cross_attention_mask: torch.Tensor,
        query_mask: torch.Tensor,
        cache: EncoderDecoderCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys_values = self.self_attn.project_keys_values(hidden_states)
        if cache is not None:
            keys_values = cache.self_attention_cache.update(*keys_values, self.layer_idx)
        attended = self.self_attn(hidden_states, attention_mask=self_attention_mask, key_value=keys_values)
        queries = self.self_residual(hidden_states, attended) * query_mask

        # Eq. 7 for all levels in one attention call: levels are folded into the batch axis.
        batch, length, width = queries.shape
        level_queries = queries.unsqueeze(1).expand(-1, self.num_levels, -1, -1).reshape(-1, length, width)
        cross = self.cross_attn(
            level_queries,
            attention_mask=cross_attention_mask.repeat_interleave(self.num_levels, dim=0),
            key_value=self.level_keys_values(level_hidden_states, cache),
        )
        cross = self.cross_residual(level_queries, cross).view(batch, self.num_levels, length, width)
        cross = cross * query_mask.unsqueeze(1)

        gates = torch.stack(
            [torch.sigmoid(gate(torch.cat([queries, cross[:, i]], dim=-1))) for i, gate in enumerate(self.gates)],
            dim=1,
        )  # Eq. 8
        meshed = (gates * cross).sum(dim=1) / math.sqrt(self.num_levels)  # Eq. 6, with the released code's 1/√N
        meshed = meshed * query_mask
        return self.feed_forward(meshed) * query_mask, gates


class M2PositionEmbedding(nn.Embedding):
    """The decoder's frozen word-position table; row 0 is the padding position."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__(num_positions, dim, padding_idx=0)
        self.weight.requires_grad_(False)


class M2Decoder(nn.Module):
    """The meshed decoder: word + frozen position embeddings, then meshed decoder layers.

    Positions are 1..T for tokens and 0 for padding. The position table is a frozen parameter saved with the
    weights: a loaded checkpoint keeps its own table (the released model's is a frozen *random* matrix)."""

    def __init__(self, config: M2Config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.embed_positions = M2PositionEmbedding(config.max_position_embeddings + 1, config.d_model)
        self.layers = nn.ModuleList([M2DecoderLayer(config, i) for i in range(config.decoder_layers)])

    def forward(
        self,
        input_ids: torch.LongTensor,
        encoder_outputs: M2EncoderOutput,
        cache: EncoderDecoderCache | None = None,
        output_hidden_states: bool = False,
        output_gates: bool = False,
    ):
        batch, length = input_ids.shape
        past_length = cache.get_seq_length() if cache is not None else 0
        if past_length + length > self.config.max_position_embeddings:
            raise ValueError(
                f"Captions of {past_length + length} tokens exceed max_position_embeddings="
                f"{self.config.max_position_embeddings}: shorten them or generate fewer tokens."
            )
        is_token = input_ids != self.config.pad_token_id
        positions = torch.arange(past_length + 1, past_length + length + 1, device=input_ids.device).expand(batch, -1)
        if past_length == 0:
            positions = positions.masked_fill(~is_token, 0)

        key_positions = torch.arange(past_length + length, device=input_ids.device)
        query_positions = torch.arange(past_length, past_length + length, device=input_ids.device)
        causal = key_positions[None, :] <= query_positions[:, None]
        # Only the new keys' padding is known here; in cached decoding earlier keys are real tokens.
        key_is_token = torch.cat([is_token.new_ones(batch, past_length), is_token], dim=1)
        self_attention_mask = causal[None, None] & key_is_token[:, None, None, :]
        cross_attention_mask = encoder_outputs.attention_mask[:, None, None, :]
        query_mask = is_token.unsqueeze(-1).to(self.embed_tokens.weight.dtype)

        hidden_states = self.embed_tokens(input_ids) + self.embed_positions(positions)
        all_hidden_states, all_gates = [], []
        for layer in self.layers:
            hidden_states, gates = layer(
                hidden_states,
                encoder_outputs.level_hidden_states,
                self_attention_mask,
                cross_attention_mask,
                query_mask.to(hidden_states.dtype),
                cache,
            )
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            if output_gates:
                all_gates.append(gates)
        return hidden_states, tuple(all_hidden_states) or None, tuple(all_gates) or None


class M2PreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    """Weight init and loading for M² models. Like the released code, every ≥2-D weight is Xavier-uniform (memory
    slots and embeddings included) and attention/gate biases are zero."""

    config: M2Config
    base_model_prefix = "model"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["M2EncoderLayer", "M2DecoderLayer"]
    # Trainer would otherwise pass num_items_in_batch and rescale our (already mean) loss under DDP.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, M2PositionEmbedding):
            if self.config.position_table_init == "sinusoidal":
                init.copy_(module.weight, sinusoid_position_table(*module.weight.shape, padding_idx=0))
            else:
                init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.Embedding):
            init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, M2MemoryAugmentedAttention):
            init.xavier_uniform_(module.memory_keys)
            init.xavier_uniform_(module.memory_values)
        elif isinstance(module, (nn.LayerNorm, nn.Conv2d, nn.BatchNorm2d)):
            super()._init_weights(module)


def _as_encoder_output(encoder_outputs) -> M2EncoderOutput:
    if isinstance(encoder_outputs, M2EncoderOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, (tuple, list)) and len(encoder_outputs) >= 3:
        return M2EncoderOutput(*encoder_outputs[:3])
    raise TypeError(_encoder_outputs_error(encoder_outputs))


def _encoder_outputs_error(encoder_outputs) -> str:
    return (
        f"encoder_outputs must be the M2EncoderOutput that `model.get_encoder()(...)` returns, got "
        f"{type(encoder_outputs).__name__}: pass it unchanged (generate's beam search expands its fields per beam; "
        "only forward also takes them as a tuple of last_hidden_state, level_hidden_states, attention_mask)."
    )


class M2Model(M2PreTrainedModel):
    """The bare M² encoder-decoder: memory-augmented encoder and meshed decoder, returning decoder hidden states."""

    def __init__(self, config: M2Config):
        super().__init__(config)
        self.encoder = M2Encoder(config)
        self.decoder = M2Decoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value):
        self.decoder.embed_tokens = value

    def get_encoder(self, modality=None):
        return self.encoder

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        region_features: torch.FloatTensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        encoder_outputs: M2EncoderOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_gates: bool = False,
        return_dict: bool | None = None,
        past_key_values: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        r"""
        cache (`EncoderDecoderCache`, *optional*): Keys/values of earlier decoding steps (`past_key_values` before
            transformers 5.24; either name works).
        """
        cache = cache if cache is not None else past_key_values
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids are required (or pass `labels` to M2ForConditionalGeneration).")
        if decoder_input_ids.shape[-1] == 0:
            raise ValueError("decoder_input_ids (or labels) hold no tokens: pass at least one token per caption "
                             "(the processor's `text_target` gives labels ending in <eos>).")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                pixel_values=pixel_values,
                region_features=region_features,
                region_attention_mask=region_attention_mask,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        encoder_outputs = _as_encoder_output(encoder_outputs)
        if encoder_outputs.level_hidden_states.shape[0] != decoder_input_ids.shape[0]:
            raise ValueError(
                f"Batch mismatch: {encoder_outputs.level_hidden_states.shape[0]} images but "
                f"{decoder_input_ids.shape[0]} captions."
            )
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        if not use_cache:
            cache = None
        hidden_states, decoder_hidden_states, gates = self.decoder(
            decoder_input_ids,
            encoder_outputs,
            cache=cache,
            output_hidden_states=bool(output_hidden_states),
            output_gates=output_gates,
        )
        return M2Seq2SeqModelOutput(
            last_hidden_state=hidden_states,
            **{CACHE_FIELD: cache},
            decoder_hidden_states=decoder_hidden_states,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            gates=gates,
        )


def shift_tokens_right(labels: torch.LongTensor, pad_token_id: int, start_token_id: int) -> torch.LongTensor:
    """Teacher-forcing decoder input: <bos> followed by the labels without their last token; -100 becomes <pad>."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# peft LoRA targets: every attention projection (encoder memory attention, decoder self- and cross-attention) and
# the meshed gates. Use as `LoraConfig(target_modules=M2_LORA_TARGET_MODULES, ...)`.
M2_LORA_TARGET_MODULES = r".*\.(q_proj|k_proj|v_proj|o_proj)|.*\.gates\.\d+"


class M2ForConditionalGeneration(M2PreTrainedModel, GenerationMixin):
    """M² captioner: [`M2Model`] with an untied, bias-free word classifier. With `labels` it returns the paper's
    cross-entropy (first) training objective; `generate()` runs beam search (paper: 5 beams, 20 tokens, no length
    penalty, the defaults of this model's generation config) with a KV cache.

    Visual input is either `pixel_values` (images through the configured backbone) or `region_features` with an
    optional `region_attention_mask` (precomputed detector regions, as in the paper)."""

    def __init__(self, config: M2Config):
        super().__init__(config)
        self.model = M2Model(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()
        self.generation_config.num_beams = 5
        self.generation_config.max_new_tokens = 20
        self.generation_config.length_penalty = 0.0

    def get_encoder(self, modality=None):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    def get_input_embeddings(self):
        return self.model.decoder.embed_tokens

    def set_input_embeddings(self, value):
        self.model.decoder.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    @staticmethod
    def _reorder_cache(cache: EncoderDecoderCache, beam_idx: torch.LongTensor) -> EncoderDecoderCache:
        # Beam search only reorders beams within an image, and the cross-attention keys/values depend on the image
        # alone, so only the self-attention cache moves; copying the 3-level cross cache each step halved speed.
        cache.self_attention_cache.reorder_cache(beam_idx)
        return cache

    def generate(self, inputs=None, generation_config=None, **kwargs):
        """transformers' `generate` (defaults: 5 beams, 20 new tokens, no length penalty), after checks that name a
        bad setting before any decoding: `num_beams` must be an int ≥ 1, `encoder_outputs` an [`M2EncoderOutput`]
        (beam search cannot expand a tuple), and the longest caption (<bos>, any `decoder_input_ids` prefix and
        `max_new_tokens`, or `max_length`) must fit the position table (`max_position_embeddings`). Each raises a
        `ValueError` (a `TypeError` for `encoder_outputs`)."""
        config = generation_config if generation_config is not None else self.generation_config
        num_beams = kwargs.get("num_beams", config.num_beams)
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"num_beams must be an int ≥ 1 (1 = greedy search; the paper uses 5), got {num_beams!r}.")
        encoder_outputs = kwargs.get("encoder_outputs")
        if encoder_outputs is not None and not isinstance(encoder_outputs, M2EncoderOutput):
            raise TypeError(_encoder_outputs_error(encoder_outputs))
        prefix = kwargs.get("decoder_input_ids")
        prefix_length = prefix.shape[-1] if prefix is not None else 1
        max_new_tokens = kwargs.get("max_new_tokens", config.max_new_tokens)
        max_length = prefix_length + max_new_tokens if max_new_tokens is not None else kwargs.get("max_length", config.max_length)
        # The last generated token is never fed back, so the decoder reads at most max_length - 1 positions.
        if max_length - 1 > self.config.max_position_embeddings:
            allowed = self.config.max_position_embeddings + 1 - prefix_length
            raise ValueError(
                f"Asked for captions of up to {max_length} tokens (<bos>, a {prefix_length - 1}-token prefix and "
                f"max_new_tokens={max_length - prefix_length}), but the position table holds "
                f"max_position_embeddings={self.config.max_position_embeddings}: pass max_new_tokens ≤ {allowed}."
            )
        return super().generate(inputs, generation_config, **kwargs)

    def _prepare_model_inputs(self, inputs=None, bos_token_id=None, model_kwargs=None):
        # Either visual input can drive generation; transformers only knows the main one (pixel_values).
        if inputs is None and model_kwargs.get("pixel_values") is None and model_kwargs.get("region_features") is not None:
            return model_kwargs.pop("region_features"), "region_features", model_kwargs
        return super()._prepare_model_inputs(inputs, bos_token_id, model_kwargs)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        region_features: torch.FloatTensor | None = None,
        region_attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        encoder_outputs: M2EncoderOutput | tuple | None = None,
        cache: EncoderDecoderCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        output_gates: bool = False,
        return_dict: bool | None = None,
        past_key_values: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> M2Seq2SeqLMOutput:
        r"""
        pixel_values / region_features (`torch.FloatTensor`): The visual input, one of the two (as the processor
            returns them); NaN or infinite values raise a `ValueError` here and in `generate`.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Caption token ids ending in <eos>, -100 where padded (as `M2Processor(text_target=...)` returns). The
            decoder input is <bos> + labels[:-1]; the loss is the mean negative log-likelihood of the real tokens.
        """
        if labels is not None and labels.shape[-1] == 0:
            raise ValueError("labels hold no tokens: pass at least one token per caption (the processor's "
                             "`text_target` gives labels ending in <eos>).")
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            use_cache = False
        outputs = self.model(
            pixel_values=pixel_values,
            region_features=region_features,
            region_attention_mask=region_attention_mask,
            decoder_input_ids=decoder_input_ids,
            encoder_outputs=encoder_outputs,
            cache=cache if cache is not None else past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            output_gates=output_gates,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return M2Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)},
            decoder_hidden_states=outputs.decoder_hidden_states,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            gates=outputs.gates,
        )


__all__ = [
    "M2_LORA_TARGET_MODULES",
    "M2EncoderOutput",
    "M2ForConditionalGeneration",
    "M2Model",
    "M2PreTrainedModel",
    "M2Seq2SeqLMOutput",
    "M2Seq2SeqModelOutput",
]
