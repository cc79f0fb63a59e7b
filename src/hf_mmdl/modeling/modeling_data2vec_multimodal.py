"""data2vec-multimodal: one self-distilled Transformer for text, images and audio.

data2vec (Baevski et al., ICML 2022) trains a student on a masked input to regress, at the masked time-steps, the
average of the top-K blocks of an exponential-moving-average teacher that sees the whole input (§3). The paper trains
one model per modality; here one set of blocks serves all three, with VLMo's / BEiT-3's modality experts (shared
self-attention, one LayerNorm + FFN per modality, routed by input type) or fully shared or fully separate blocks, and
paired batches add an explicit cross-modal term so that one concept gets one representation whatever carries it.
data2vec 2.0's efficiency (Baevski et al., ICML 2023) is a pair of switches: M masked copies per teacher pass
(multi-mask) and an image student that encodes only its visible patches with a light convolutional decoder.

The input encoders are transformers' Data2Vec input stages (text and position embeddings; patch embeddings, CLS, mask
token and BEiT's relative position bias; wav2vec 2.0's waveform convolutions, projection and convolutional positions).
"""

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ImageClassifierOutput, SequenceClassifierOutput
from transformers.models.data2vec.modeling_data2vec_audio import (
    Data2VecAudioFeatureEncoder, Data2VecAudioFeatureProjection, Data2VecAudioPositionalConvEmbedding,
    Data2VecAudioPreTrainedModel, _compute_mask_indices,
)
from transformers.models.data2vec.modeling_data2vec_text import Data2VecTextEmbeddings
from transformers.models.data2vec.modeling_data2vec_vision import (
    Data2VecVisionEmbeddings, Data2VecVisionRelativePositionBias,
)
from transformers.utils import ModelOutput

from .configuration_data2vec_multimodal import MODALITIES, Data2VecMultimodalConfig
from .inputs import check_float_tensor, check_image_batch, check_token_ids, check_values, to_model_dtype
from .loading import CheckedSaveLoadMixin
from .losses import ContrastiveLoss

# peft `LoraConfig(target_modules=...)` (a regex peft matches against whole module names): the student's attention
# queries and values (shared or per modality) and the fusion blocks'; not the EMA teacher's copies, the input
# encoders or the FFN experts.
DATA2VEC_MULTIMODAL_LORA_TARGET_MODULES = r"(data2vec_multimodal\.)?(fusion_)?layers\.\d+\.attention\.(\w+\.)?(query|value)"


# ---- masking (data2vec §3.2 / Table: per-modality masking) -----------------------------------------------------------
def bert_mask_tokens(input_ids: torch.LongTensor, maskable: torch.BoolTensor, mask_prob: float, mask_token_id: int,
                     vocab_size: int, generator: torch.Generator | None = None):
    """BERT masking (Devlin et al. 2019, §3.1): each maskable token is selected with probability `mask_prob`; a
    selected token becomes MASK (80 %), a random token (10 %) or stays (10 %). At least one token per row is selected.

    Returns (masked input_ids, selected (B, T) bool)."""
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    selected = (draw < mask_prob) & maskable
    # A row without a selected token would give the student nothing to predict: select its likeliest token.
    empty = ~selected.any(1) & maskable.any(1)
    if empty.any():
        first = torch.where(maskable, draw, torch.full_like(draw, 2.0)).argmin(1)
        selected[empty, first[empty]] = True
    how = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    masked = torch.where(selected & (how < 0.8), torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(selected & (how >= 0.8) & (how < 0.9), random_ids, masked)
    return masked, selected


def block_mask_patches(batch_size: int, height: int, width: int, mask_prob: float, min_patches: int = 16,
                       generator: torch.Generator | None = None, device=None) -> torch.BoolTensor:
    """BEiT's block-wise masking (Bao et al., ICLR 2022, Alg. 1): rectangles of at least `min_patches` patches (fewer
    on small grids) and aspect ratio in [0.3, 1/0.3] are masked until `mask_prob` of the height×width grid is covered;
    the count is then made exact (random patches added or removed), so every row masks the same number of patches,
    which an encoder of visible patches only (data2vec 2.0) needs.

    Returns a (batch, height·width) bool tensor, True = masked."""
    total = height * width
    target = max(1, min(total - 1, round(mask_prob * total)))
    min_patches = max(1, min(min_patches, target))
    masks = torch.zeros(batch_size, height, width, dtype=torch.bool)
    log_aspect = (math.log(0.3), math.log(1 / 0.3))

    def uniform(low, high):
        return low + (high - low) * torch.rand((), generator=generator).item()

    for mask in masks:
        for _attempt in range(10 * total):
            count = int(mask.sum())
            if count >= target:
                break
            area = uniform(min_patches, max(min_patches, target - count))
            aspect = math.exp(uniform(*log_aspect))
            h = min(height, max(1, round(math.sqrt(area * aspect))))
            w = min(width, max(1, round(math.sqrt(area / aspect))))
            top = int(torch.randint(height - h + 1, (), generator=generator))
            left = int(torch.randint(width - w + 1, (), generator=generator))
            mask[top:top + h, left:left + w] = True
    flat = masks.view(batch_size, total)
    for row in flat:  # exact count: drop random masked patches or add random visible ones
        surplus = int(row.sum()) - target
        pool = torch.nonzero(row if surplus > 0 else ~row).squeeze(1)
        chosen = pool[torch.randperm(len(pool), generator=generator)[:abs(surplus)]]
        row[chosen] = surplus < 0
    return flat.to(device)


def span_mask_frames(batch_size: int, num_frames: int, mask_prob: float, mask_length: int,
                     frame_mask: torch.BoolTensor | None = None, device=None) -> torch.BoolTensor:
    """wav2vec 2.0 / data2vec speech masking: every frame starts a masked span of `mask_length` frames with
    probability `mask_prob` (data2vec: p = 0.065, span 10, ≈ 49 % of frames), padding never masked. Through
    transformers' `_compute_mask_indices`, whose probability argument is p × span. Draws from numpy's global
    generator (seeded by `transformers.set_seed`)."""
    attention = frame_mask.long().cpu() if frame_mask is not None else None
    indices = _compute_mask_indices((batch_size, num_frames), mask_prob=mask_prob * mask_length,
                                    mask_length=mask_length, attention_mask=attention, min_masks=1)
    return torch.as_tensor(indices, dtype=torch.bool, device=device)


# ---- teacher targets (data2vec §3.3, Eq. 2) --------------------------------------------------------------------------
def normalise_layer_target(ffn_output: torch.Tensor, norm: str) -> torch.Tensor:
    """â of one block (data2vec §3.3): `"instance"` norm over the steps of each sample per channel (speech), or a
    parameter-free `"layer"` norm over the channels of each step (text and images). Computed in float32."""
    ffn_output = ffn_output.float()
    if norm == "instance":
        return F.instance_norm(ffn_output.transpose(1, 2)).transpose(1, 2)
    return F.layer_norm(ffn_output, ffn_output.shape[-1:])


def teacher_target(ffn_outputs: list[torch.Tensor], norm: str, top_k: int) -> torch.Tensor:
    """y_t = (1/K) Σ over the top K blocks of the normalised FFN outputs (before the last residual)."""
    return torch.stack([normalise_layer_target(a, norm) for a in ffn_outputs[-top_k:]]).mean(0)


def regression_loss(prediction: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 2: smooth-L1 with transition β (L2 for β = 0), summed over channels and scaled by 1/√H as in fairseq's
    implementation, averaged over the given (masked) steps. `prediction`, `target`: (steps, H)."""
    if beta > 0:
        per_channel = F.smooth_l1_loss(prediction.float(), target, reduction="none", beta=beta)
    else:
        per_channel = F.mse_loss(prediction.float(), target, reduction="none")
    return per_channel.sum(-1).div(math.sqrt(prediction.shape[-1])).mean()


def ema_decay(step: int, start: float, end: float, anneal_steps: int) -> float:
    """τ of Eq. 1 after `step` teacher updates: linear from τ0 to τe over the first τn updates, then constant."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return end
    return start + (end - start) * step / anneal_steps


def masked_mean(hidden: torch.Tensor, mask: torch.BoolTensor) -> torch.Tensor:
    """Mean over the real (mask True) steps of (B, T, H) → (B, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@contextmanager
def evaluation_mode(module: nn.Module):
    """Dropout off for the teacher's pass through modules it shares with the student, restored afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


# ---- outputs ---------------------------------------------------------------------------------------------------------
@dataclass
class Data2VecMultimodalModelOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`(batch, steps, hidden_size)`): the final blocks' output (after the modality's final
            LayerNorm when its blocks are pre-LN). Steps: text tokens; CLS + patches; 20 ms audio frames.
        pooler_output (`(batch, hidden_size)`): mean over the real steps.
        hidden_states (tuple of `(batch, steps, hidden_size)`): the input to the first block and each block's output.
        output_mask (`(batch, steps)` bool): True at real steps (audio: frames that cover the waveform's real samples).
        modality (`str`): "text", "image" or "audio".
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    output_mask: torch.BoolTensor | None = None
    modality: str | None = None


@dataclass
class Data2VecMultimodalForPreTrainingOutput(ModelOutput):
    """
    Args:
        loss: the sum of the per-modality data2vec losses (Eq. 2) and the weighted cross-modal term.
        text_loss, image_loss, audio_loss: each modality's regression loss on its masked steps (None if absent).
        cross_modal_loss: the paired-batch term (None for unimodal batches).
        target_variance, prediction_variance: mean over channels of the variance across masked steps of the teacher
            targets and of the student's predictions (data2vec §6: collapse shows there first).
    """

    loss: torch.FloatTensor | None = None
    text_loss: torch.FloatTensor | None = None
    image_loss: torch.FloatTensor | None = None
    audio_loss: torch.FloatTensor | None = None
    cross_modal_loss: torch.FloatTensor | None = None
    target_variance: torch.FloatTensor | None = None
    prediction_variance: torch.FloatTensor | None = None


# ---- input encoders --------------------------------------------------------------------------------------------------
@dataclass
class Embedded:
    """One modality's input to the blocks: hidden (B, T, H), mask (B, T) True at real steps, and an additive
    attention bias (1 or B, heads, T, T) when the modality has one (BEiT's relative position bias)."""

    hidden: torch.Tensor
    mask: torch.BoolTensor
    bias: torch.Tensor | None = None


class Data2VecMultimodalTextEncoder(nn.Module):
    """Token + learned position (+ token type) embeddings and LayerNorm: transformers' `Data2VecTextEmbeddings`."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = Data2VecTextEmbeddings(config)

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> Embedded:
        mask = input_ids.ne(self.config.pad_token_id) if attention_mask is None else attention_mask.bool()
        return Embedded(self.embeddings(input_ids=input_ids), mask)


class Data2VecMultimodalImageEncoder(nn.Module):
    """Patch embedding, CLS token, mask token and absolute positions (transformers' `Data2VecVisionEmbeddings`),
    plus BEiT's relative position bias shared by all blocks when the vision config asks for it."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = Data2VecVisionEmbeddings(config)
        self.grid = self.embeddings.patch_embeddings.patch_shape
        self.relative_position_bias = (Data2VecVisionRelativePositionBias(config, window_size=self.grid)
                                       if config.use_shared_relative_position_bias else None)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: torch.BoolTensor | None = None) -> Embedded:
        hidden, (height, width) = self.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)
        bias = None
        if self.relative_position_bias is not None:
            bias = self.relative_position_bias((height, width), dim_size=hidden.shape[1])
        return Embedded(hidden, torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device), bias)


class Data2VecMultimodalAudioEncoder(nn.Module):
    """wav2vec 2.0's waveform encoder as transformers' Data2VecAudio has it: strided convolutions (16 kHz → 50 Hz
    with the default strides), LayerNorm + projection to H, a learned embedding at masked frames, and convolutional
    relative positions added before a LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.feature_extractor = Data2VecAudioFeatureEncoder(config)
        self.feature_projection = Data2VecAudioFeatureProjection(config)
        self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size))
        self.pos_conv_embed = Data2VecAudioPositionalConvEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)

    # transformers' frame arithmetic, which reads only `self.config`.
    _get_feat_extract_output_lengths = Data2VecAudioPreTrainedModel._get_feat_extract_output_lengths
    _get_feature_vector_attention_mask = Data2VecAudioPreTrainedModel._get_feature_vector_attention_mask

    def num_frames(self, num_samples: torch.Tensor | int):
        """Frames the convolutions make of `num_samples` samples."""
        return self._get_feat_extract_output_lengths(num_samples, add_adapter=False)

    def frame_mask(self, audio_attention_mask: torch.Tensor | None, num_frames: int, batch_size: int, device):
        """(batch, frames) bool, True at frames that cover real samples."""
        if audio_attention_mask is None:
            return torch.ones(batch_size, num_frames, dtype=torch.bool, device=device)
        return self._get_feature_vector_attention_mask(num_frames, audio_attention_mask.long(), add_adapter=False)

    def extract(self, input_values: torch.Tensor) -> torch.Tensor:
        """The convolutions' (batch, frames, conv_dim[-1]) features of (batch, samples) waveforms."""
        return self.feature_extractor(input_values).transpose(1, 2)

    def forward(self, input_values: torch.Tensor, audio_attention_mask: torch.Tensor | None = None,
                mask_time_indices: torch.BoolTensor | None = None, features: torch.Tensor | None = None) -> Embedded:
        """`features`: `extract(input_values)` when already computed (the teacher and the student share them)."""
        features = self.extract(input_values) if features is None else features
        mask = self.frame_mask(audio_attention_mask, features.shape[1], features.shape[0], features.device)
        hidden, _ = self.feature_projection(features)
        if mask_time_indices is not None:
            hidden = torch.where(mask_time_indices.unsqueeze(-1), self.masked_spec_embed.to(hidden.dtype), hidden)
        hidden = hidden.masked_fill(~mask.unsqueeze(-1), 0.0)  # padding frames carry nothing into the positions
        hidden = self.layer_norm(hidden + self.pos_conv_embed(hidden))
        return Embedded(self.dropout(hidden), mask)


# ---- blocks ----------------------------------------------------------------------------------------------------------
class Data2VecMultimodalAttention(nn.Module):
    """Multi-head self-attention through `scaled_dot_product_attention`."""

    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, steps, width = hidden.shape
        q, k, v = (proj(hidden).view(batch, steps, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.to(q.dtype)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask,
                                                 dropout_p=self.dropout if self.training else 0.0)
        return self.out(context.transpose(1, 2).reshape(batch, steps, width))


class Data2VecMultimodalFeedForward(nn.Module):
    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden)))


class Data2VecMultimodalLayer(GradientCheckpointingLayer):
    """One Transformer block with experts: self-attention shared by all experts (or one per expert), and per expert a
    LayerNorm pair, an FFN and an optional layer scale (VLMo's MoME block). An expert is pre-LN or post-LN.

    `forward(hidden, attention_mask, expert)` returns the block output and the FFN output before the last residual
    (and before layer scale and dropout), which the teacher's targets average (data2vec §3.3)."""

    def __init__(self, config: Data2VecMultimodalConfig, experts: tuple[str, ...], separate_attention: bool,
                 pre_norm: dict[str, bool], norm_eps: dict[str, float]):
        super().__init__()
        self.attention = (nn.ModuleDict({e: Data2VecMultimodalAttention(config) for e in experts})
                          if separate_attention else Data2VecMultimodalAttention(config))
        self.norm1 = nn.ModuleDict({e: nn.LayerNorm(config.hidden_size, eps=norm_eps[e]) for e in experts})
        self.norm2 = nn.ModuleDict({e: nn.LayerNorm(config.hidden_size, eps=norm_eps[e]) for e in experts})
        self.ffn = nn.ModuleDict({e: Data2VecMultimodalFeedForward(config) for e in experts})
        scaled = {e: v for e, v in config.layer_scale_init_values.items() if e in experts}
        self.layer_scale1 = nn.ParameterDict({e: nn.Parameter(torch.full((config.hidden_size,), v)) for e, v in scaled.items()})
        self.layer_scale2 = nn.ParameterDict({e: nn.Parameter(torch.full((config.hidden_size,), v)) for e, v in scaled.items()})
        self.pre_norm = dict(pre_norm)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _scale(self, scales: nn.ParameterDict, expert: str, branch: torch.Tensor) -> torch.Tensor:
        return branch * scales[expert] if expert in scales else branch

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, expert: str):
        attention = self.attention[expert] if isinstance(self.attention, nn.ModuleDict) else self.attention
        norm1, norm2, ffn = self.norm1[expert], self.norm2[expert], self.ffn[expert]
        if self.pre_norm[expert]:
            hidden = hidden + self.dropout(self._scale(self.layer_scale1, expert, attention(norm1(hidden), attention_mask)))
            ffn_output = ffn(norm2(hidden))
            return hidden + self.dropout(self._scale(self.layer_scale2, expert, ffn_output)), ffn_output
        hidden = norm1(hidden + self.dropout(self._scale(self.layer_scale1, expert, attention(hidden, attention_mask))))
        ffn_output = ffn(hidden)
        return norm2(hidden + self.dropout(self._scale(self.layer_scale2, expert, ffn_output))), ffn_output


def build_layers(config: Data2VecMultimodalConfig) -> nn.ModuleList:
    """The shared blocks as `config.block_sharing` asks: experts "text"/"image"/"audio", or one expert "shared"."""
    eps = {"text": config.text_config.layer_norm_eps, "image": config.vision_config.layer_norm_eps,
           "audio": config.audio_config.layer_norm_eps}
    pre_norm = {m: m in config.pre_norm_modalities for m in MODALITIES}
    if config.block_sharing == "shared":
        experts, pre_norm, eps = ("shared",), {"shared": bool(config.pre_norm_modalities)}, {"shared": eps["text"]}
    else:
        experts = MODALITIES
    return nn.ModuleList([
        Data2VecMultimodalLayer(config, experts, config.block_sharing == "separate", pre_norm, eps)
        for _ in range(config.num_hidden_layers)
    ])


def build_fusion_layers(config: Data2VecMultimodalConfig) -> nn.ModuleList:
    """VLMo's top blocks for a concatenated pair: shared attention over both, one "fusion" FFN, pre-LN."""
    return nn.ModuleList([
        Data2VecMultimodalLayer(config, ("fusion",), False, {"fusion": True}, {"fusion": config.text_config.layer_norm_eps})
        for _ in range(config.num_fusion_layers)
    ])


def attention_mask_for(embedded: Embedded) -> torch.Tensor | None:
    """SDPA's mask: the relative position bias, or a (B, 1, 1, T) key mask when some steps are padding."""
    if embedded.bias is not None:
        return embedded.bias
    if bool(embedded.mask.all()):
        return None
    return embedded.mask[:, None, None, :]


def run_layers(layers: nn.ModuleList, embedded: Embedded, expert: str):
    """Hidden states (input and after each block) and each block's FFN output."""
    mask = attention_mask_for(embedded)
    hidden, states, ffn_outputs = embedded.hidden, [embedded.hidden], []
    for layer in layers:
        hidden, ffn_output = layer(hidden, mask, expert)
        states.append(hidden)
        ffn_outputs.append(ffn_output)
    return states, ffn_outputs


# ---- models ----------------------------------------------------------------------------------------------------------
class Data2VecMultimodalPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    """Weight init, loading rules and the input checks of every data2vec-multimodal model."""

    config: Data2VecMultimodalConfig
    base_model_prefix = "data2vec_multimodal"
    main_input_name = "input_ids"
    input_modalities = ("text", "image", "audio")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["Data2VecMultimodalLayer"]
    # Trainer must not pass num_items_in_batch: the losses are means already.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, Data2VecTextEmbeddings):
            # Non-persistent buffers: never in a saved file, so `from_pretrained` leaves them to this method.
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
            init.zeros_(module.token_type_ids)
        elif isinstance(module, Data2VecVisionEmbeddings):
            nn.init.trunc_normal_(module.cls_token, std=std)
            if module.mask_token is not None:
                nn.init.trunc_normal_(module.mask_token, std=std)
            if module.position_embeddings is not None:
                nn.init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, Data2VecVisionRelativePositionBias):
            nn.init.zeros_(module.relative_position_bias_table)
        elif isinstance(module, Data2VecMultimodalAudioEncoder):
            nn.init.uniform_(module.masked_spec_embed)
            for conv in module.modules():
                if isinstance(conv, nn.Conv1d):
                    nn.init.kaiming_normal_(conv.weight)
                    if conv.bias is not None:
                        nn.init.zeros_(conv.bias)
        elif isinstance(module, Data2VecMultimodalLayer):
            for expert, scale in module.layer_scale1.items():
                nn.init.constant_(scale, self.config.layer_scale_init_values[expert])
                nn.init.constant_(module.layer_scale2[expert], self.config.layer_scale_init_values[expert])
        elif isinstance(module, ContrastiveLoss):
            nn.init.constant_(module.logit_scale, math.log(1 / self.config.contrastive_temperature))


class Data2VecMultimodalModel(Data2VecMultimodalPreTrainedModel):
    """The bare data2vec-multimodal encoder (the student): one modality's input encoder, the shared blocks, a final
    LayerNorm for pre-LN modalities, and a projection per modality into the shared embedding space of
    `get_text_features` / `get_image_features` / `get_audio_features`.

    Call it with one modality's inputs (`input_ids` [+ `attention_mask`], `pixel_values`, or `input_values` [+
    `audio_attention_mask`]), as the [`Data2VecMultimodalProcessor`] returns them; the modality is inferred."""

    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__(config)
        self.text_encoder = Data2VecMultimodalTextEncoder(config.text_config)
        self.image_encoder = Data2VecMultimodalImageEncoder(config.vision_config)
        self.audio_encoder = Data2VecMultimodalAudioEncoder(config.audio_config)
        self.layers = build_layers(config)
        self.fusion_layers = build_fusion_layers(config)
        eps = {"text": config.text_config.layer_norm_eps, "image": config.vision_config.layer_norm_eps,
               "audio": config.audio_config.layer_norm_eps, "fusion": config.text_config.layer_norm_eps}
        # A pre-LN stack leaves its residual stream unnormalised; post-LN blocks end in a LayerNorm already.
        self.final_norm = nn.ModuleDict({
            m: nn.LayerNorm(config.hidden_size, eps=eps[m]) if self._is_pre_norm(m) else nn.Identity()
            for m in (*MODALITIES, "fusion")
        })
        self.projections = nn.ModuleDict({m: nn.Linear(config.hidden_size, config.projection_dim, bias=False)
                                          for m in MODALITIES})
        self.post_init()

    def _is_pre_norm(self, modality: str) -> bool:
        if modality == "fusion":
            return True
        if self.config.block_sharing == "shared":
            return bool(self.config.pre_norm_modalities)
        return modality in self.config.pre_norm_modalities

    def expert(self, modality: str) -> str:
        return "shared" if self.config.block_sharing == "shared" else modality

    def get_input_embeddings(self):
        return self.text_encoder.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.text_encoder.embeddings.word_embeddings = value

    # -- input checks and embedding
    def modality_of(self, input_ids=None, pixel_values=None, input_values=None) -> str:
        given = [m for m, value in zip(MODALITIES, (input_ids, pixel_values, input_values)) if value is not None]
        if len(given) != 1:
            raise ValueError(
                "Pass exactly one modality's inputs (input_ids, pixel_values or input_values), got "
                f"{given or 'none'}; encode each modality with its own call (the processor returns each one's inputs). "
                "To score captions against images or audio in one call (zero-shot classification), use "
                "Data2VecMultimodalForZeroShotClassification."
            )
        return given[0]

    def check_inputs(self, modality: str, value: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The modality's main input, validated and cast to the model's dtype."""
        if modality == "text":
            text = self.config.text_config
            # RoBERTa-layout positions start after the padding index.
            check_token_ids(value, "input_ids", text.vocab_size, text.max_position_embeddings - text.pad_token_id - 1)
        elif modality == "image":
            vision = self.config.vision_config
            check_image_batch(value, vision.num_channels, vision.patch_size)
            if tuple(value.shape[2:]) != (vision.image_size, vision.image_size):
                raise ValueError(f"pixel_values are {value.shape[2]}×{value.shape[3]} but this model reads "
                                 f"{vision.image_size}×{vision.image_size} images: resize them with the processor.")
        else:
            check_float_tensor(value, "input_values", ndim=2)
            check_values(value, "input_values")
            receptive = int(self.audio_encoder.num_frames(torch.tensor(value.shape[1])))
            if receptive < 1:
                raise ValueError(f"input_values hold {value.shape[1]} samples, too short for one frame of the "
                                 "waveform encoder: pass at least "
                                 f"{self.config.audio_config.conv_kernel[0]} samples (16 kHz audio).")
        if mask is not None and tuple(mask.shape) != tuple(value.shape[:2]):
            raise ValueError(f"The attention mask has shape {tuple(mask.shape)} but its inputs {tuple(value.shape[:2])}.")
        return to_model_dtype(value, self.dtype)

    def embed(self, modality: str, inputs: torch.Tensor, mask: torch.Tensor | None = None,
              masked_steps: torch.BoolTensor | None = None, audio_features: torch.Tensor | None = None) -> Embedded:
        """The modality's input encoder; `masked_steps` puts its mask embedding at those steps (student input);
        `audio_features` are the waveform convolutions' output when already computed."""
        if modality == "text":
            return self.text_encoder(inputs, mask)
        if modality == "image":
            return self.image_encoder(inputs, bool_masked_pos=masked_steps)
        return self.audio_encoder(inputs, mask, mask_time_indices=masked_steps, features=audio_features)

    def encode(self, modality: str, embedded: Embedded):
        """The shared blocks over one modality: (hidden states, FFN outputs) per block."""
        return run_layers(self.layers, embedded, self.expert(modality))

    def fuse(self, embedded: dict[str, Embedded]) -> dict[str, torch.Tensor]:
        """The fusion blocks over the concatenation of several modalities' block outputs (each (B, T_m, H));
        returns each modality's slice of the fused sequence, after the fusion stack's final LayerNorm."""
        modalities = list(embedded)
        hidden = torch.cat([embedded[m].hidden for m in modalities], 1)
        mask = torch.cat([embedded[m].mask for m in modalities], 1)
        states, _ = run_layers(self.fusion_layers, Embedded(hidden, mask), "fusion")
        fused = self.final_norm["fusion"](states[-1])
        return dict(zip(modalities, fused.split([embedded[m].hidden.shape[1] for m in modalities], 1)))

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.FloatTensor | None = None, input_values: torch.FloatTensor | None = None,
                audio_attention_mask: torch.Tensor | None = None, bool_masked_pos: torch.BoolTensor | None = None,
                mask_time_indices: torch.BoolTensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> Data2VecMultimodalModelOutput | tuple:
        r"""Encode one modality.

        Args:
            input_ids (`(batch, tokens)`), attention_mask (`(batch, tokens)`, 1 = real token): text.
            pixel_values (`(batch, channels, image_size, image_size)` float, the processor's normalised pixels).
            input_values (`(batch, samples)` float, 16 kHz waveform normalised per clip), audio_attention_mask
                (`(batch, samples)`, 1 = real sample).
            bool_masked_pos (`(batch, patches)`) / mask_time_indices (`(batch, frames)`): steps replaced by the
                mask embedding (the student's view); text is masked in `input_ids` itself.
        Returns:
            [`Data2VecMultimodalModelOutput`].
        Raises:
            ValueError: no or several modalities, wrong shape, dtype, size or values (NaN, ids outside the
                vocabulary, too many tokens, audio shorter than one frame).
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        modality = self.modality_of(input_ids, pixel_values, input_values)
        value, mask, masked = {
            "text": (input_ids, attention_mask, None),
            "image": (pixel_values, None, bool_masked_pos),
            "audio": (input_values, audio_attention_mask, mask_time_indices),
        }[modality]
        value = self.check_inputs(modality, value, mask)
        embedded = self.embed(modality, value, mask, masked)
        states, _ = self.encode(modality, embedded)
        last = self.final_norm[modality](states[-1])
        output = Data2VecMultimodalModelOutput(
            last_hidden_state=last, pooler_output=masked_mean(last, embedded.mask),
            hidden_states=tuple(states) if output_hidden_states else None, output_mask=embedded.mask, modality=modality,
        )
        return output if return_dict else output.to_tuple()

    def _features(self, modality: str, **inputs) -> torch.Tensor:
        pooled = self(**inputs).pooler_output
        return F.normalize(self.projections[modality](pooled), dim=-1)

    def get_text_features(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, projection_dim) unit-length embeddings of texts in the space shared by all modalities."""
        return self._features("text", input_ids=input_ids, attention_mask=attention_mask)

    def get_image_features(self, pixel_values: torch.FloatTensor) -> torch.Tensor:
        """(batch, projection_dim) unit-length embeddings of images in the shared space."""
        return self._features("image", pixel_values=pixel_values)

    def get_audio_features(self, input_values: torch.FloatTensor,
                           audio_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, projection_dim) unit-length embeddings of 16 kHz waveforms in the shared space."""
        return self._features("audio", input_values=input_values, audio_attention_mask=audio_attention_mask)


class Data2VecMultimodalImageDecoder(nn.Module):
    """data2vec 2.0's light decoder for an encoder of visible patches only: the encoder's outputs are put back on the
    patch grid with Gaussian noise (std 0.01) at masked patches, then conv + LayerNorm + GELU blocks with residuals
    predict every patch's target."""

    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__()
        width, kernel = config.hidden_size, config.decoder_kernel_size
        self.convs = nn.ModuleList([nn.Conv2d(width, width, kernel, padding=kernel // 2, groups=1)
                                    for _ in range(config.decoder_layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(width, elementwise_affine=False) for _ in range(config.decoder_layers)])

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, H, h, w) → (B, H, h, w)."""
        for conv, norm in zip(self.convs, self.norms):
            step = F.gelu(norm(conv(grid).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
            grid = grid + step
        return grid


class Data2VecMultimodalForPreTraining(Data2VecMultimodalPreTrainedModel):
    """data2vec-multimodal with its pre-training objective: the student (`data2vec_multimodal`), the EMA teacher of
    its blocks (`teacher_layers`; input encoders are shared, not averaged), a regression head per modality, and the
    cross-modal term of paired batches.

    `forward` with one or several modalities' unmasked inputs masks them itself (BERT 80/10/10 for text, BEiT blocks
    for images, spans for audio), runs the teacher on the unmasked inputs and returns the loss. Several modalities
    in one batch are paired row by row (row i of each is the same concept). The teacher follows the student through
    `update_teacher(step)` after each optimizer step (the `TeacherUpdateCallback` of the training recipe)."""

    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__(config)
        self.data2vec_multimodal = Data2VecMultimodalModel(config)
        self.teacher_layers = copy.deepcopy(self.data2vec_multimodal.layers)
        self.teacher_layers.requires_grad_(False)
        width = config.hidden_size
        self.regression_heads = nn.ModuleDict({
            # fairseq's text head has two layers; images and audio one (data2vec §3.3, "regression head").
            "text": nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width)),
            "image": nn.Linear(width, width),
            "audio": nn.Linear(width, width),
        })
        self.image_decoder = Data2VecMultimodalImageDecoder(config) if config.encode_unmasked_only else None
        self.cross_modal_heads = nn.ModuleDict({m: nn.Linear(width, width) for m in MODALITIES})
        self.contrastive = ContrastiveLoss(config.contrastive_temperature)
        self.post_init()
        self.reset_teacher()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As transformers' `from_pretrained`; a folder without teacher weights (e.g. a saved bare model) starts the
        teacher as a copy of the student, as a fresh model does."""
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if any(key.startswith("teacher_layers.") for key in info["missing_keys"]):
            model.reset_teacher()
        return (model, info) if want_info else model

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher_layers.eval()  # the teacher never drops out (data2vec §3.1)
        return self

    @torch.no_grad()
    def reset_teacher(self):
        """Teacher blocks := student blocks (the start of training)."""
        for teacher, student in zip(self.teacher_layers.parameters(), self.data2vec_multimodal.layers.parameters()):
            teacher.copy_(student)

    def teacher_encoder(self) -> Data2VecMultimodalModel:
        """The EMA teacher as a bare encoder: a copy of the student model (`data2vec_multimodal`: input encoders,
        final norms, projections) with the teacher's blocks, in eval mode. Frozen features of the EMA network are
        what BYOL and DINO evaluate; on the built-in scenes its image and text 1-NN accuracy beat both the student's
        and the random network's where the student's did not (README, data2vec-multimodal). Save it with
        `save_pretrained` to load it as `AutoModel` later."""
        encoder = copy.deepcopy(self.data2vec_multimodal)
        encoder.layers.load_state_dict(self.teacher_layers.state_dict())
        return encoder.eval()

    def teacher_decay(self, step: int) -> float:
        c = self.config
        return ema_decay(step, c.ema_decay_start, c.ema_decay_end, c.ema_anneal_end_step)

    @torch.no_grad()
    def update_teacher(self, step: int) -> float:
        """Eq. 1 after optimizer step `step`: Δ ← τΔ + (1 − τ)θ over the blocks, computed in float32; returns τ."""
        tau = self.teacher_decay(step)
        teachers = list(self.teacher_layers.parameters())
        students = [p.detach().float() for p in self.data2vec_multimodal.layers.parameters()]
        if all(t.dtype == torch.float32 for t in teachers):
            # Δ + (1 − τ)(θ − Δ) = τΔ + (1 − τ)θ as one fused kernel over all tensors: the per-tensor loop it replaces
            # cost a tenth of a small text step.
            torch._foreach_lerp_(teachers, students, 1 - tau)
        else:
            for teacher, student in zip(teachers, students):
                teacher.copy_(teacher.float().lerp_(student, 1 - tau))
        return tau

    # -- the objective
    def student_masks(self, modality: str, value: torch.Tensor, mask: torch.Tensor | None, generator=None):
        """(student input, masked steps (B, T_out) in the blocks' step positions, masked positions for the encoder)."""
        c, model = self.config, self.data2vec_multimodal
        batch = value.shape[0]
        if modality == "text":
            text = c.text_config
            real = mask.bool() if mask is not None else value.ne(text.pad_token_id)
            maskable = real & ~torch.isin(value, torch.tensor([text.bos_token_id, text.eos_token_id, text.pad_token_id],
                                                               device=value.device))
            if c.mask_token_id is None:
                raise ValueError("Text pre-training needs config.mask_token_id (the tokenizer's <mask> id); build "
                                 "the config with data2vec_multimodal_config_for(..., mask_token_id=...).")
            masked_ids, selected = bert_mask_tokens(value, maskable, c.mask_prob["text"], c.mask_token_id,
                                                    text.vocab_size, generator)
            return masked_ids, selected, None
        if modality == "image":
            height, width = model.image_encoder.grid
            patches = block_mask_patches(batch, height, width, c.mask_prob["image"], c.image_min_mask_patches,
                                         generator, value.device)
            cls = torch.zeros(batch, 1, dtype=torch.bool, device=value.device)
            return value, torch.cat([cls, patches], 1), patches
        frames = int(model.audio_encoder.num_frames(torch.tensor(value.shape[1])))
        frame_mask = model.audio_encoder.frame_mask(mask, frames, batch, value.device)
        spans = span_mask_frames(batch, frames, c.mask_prob["audio"], c.audio_mask_length, frame_mask, value.device)
        spans &= frame_mask
        return value, spans, spans

    @torch.no_grad()
    def teacher_targets(self, modality: str, value, mask, audio_features=None) -> tuple[torch.Tensor, torch.BoolTensor]:
        """y for every step of the unmasked input, and the steps' mask; the input encoders are the student's (shared,
        data2vec §3.1), run without dropout and without gradients."""
        model = self.data2vec_multimodal
        encoder = {"text": model.text_encoder, "image": model.image_encoder, "audio": model.audio_encoder}[modality]
        with evaluation_mode(encoder):
            embedded = model.embed(modality, value, mask, audio_features=audio_features)
        _, ffn_outputs = run_layers(self.teacher_layers, embedded, model.expert(modality))
        target = teacher_target(ffn_outputs, self.config.target_norm[modality], self.config.top_k_layers[modality])
        return target, embedded.mask

    def student_hidden(self, modality: str, student_input, mask, masked_positions, audio_features=None) -> Embedded:
        """The student's output over all steps (B, T, H), after the final LayerNorm, with the steps' mask."""
        model = self.data2vec_multimodal
        if modality == "image" and self.image_decoder is not None:
            return self.sparse_image_student(student_input, masked_positions)
        embedded = model.embed(modality, student_input, mask, masked_positions, audio_features)
        states, _ = model.encode(modality, embedded)
        return Embedded(model.final_norm[modality](states[-1]), embedded.mask)

    def sparse_image_student(self, pixel_values, masked_patches) -> Embedded:
        """data2vec 2.0: the blocks see CLS + visible patches only; the decoder predicts on the full grid."""
        model = self.data2vec_multimodal
        if model.image_encoder.relative_position_bias is not None:
            raise ValueError("encode_unmasked_only needs absolute position embeddings (vision_config."
                             "use_absolute_position_embeddings=True, use_shared_relative_position_bias=False).")
        full = model.embed("image", pixel_values)
        batch, steps, width = full.hidden.shape
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=full.hidden.device), ~masked_patches], 1)
        visible = full.hidden[keep].view(batch, -1, width)
        states, _ = model.encode("image", Embedded(visible, torch.ones(visible.shape[:2], dtype=torch.bool,
                                                                       device=visible.device)))
        encoded = model.final_norm["image"](states[-1])
        filled = torch.randn(batch, steps, width, device=encoded.device, dtype=encoded.dtype) * 0.01
        filled = filled.masked_scatter(keep.unsqueeze(-1), encoded)
        height, grid_width = model.image_encoder.grid
        grid = filled[:, 1:].transpose(1, 2).reshape(batch, width, height, grid_width)
        decoded = self.image_decoder(grid).flatten(2).transpose(1, 2)
        return Embedded(torch.cat([filled[:, :1], decoded], 1), full.mask)

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.FloatTensor | None = None, input_values: torch.FloatTensor | None = None,
                audio_attention_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
                return_dict: bool | None = None, **kwargs) -> Data2VecMultimodalForPreTrainingOutput | tuple:
        r"""The data2vec loss of each given modality plus, for several modalities (paired rows), the cross-modal term.

        Args:
            Unmasked inputs of one or more modalities, as the processor returns them (see [`Data2VecMultimodalModel`]);
            several modalities must have the same batch size (row i of each is one concept).
            generator (`torch.Generator`, optional): draws the image and text masks (audio spans come from numpy's
                global generator, seeded by `transformers.set_seed`).
        Returns:
            [`Data2VecMultimodalForPreTrainingOutput`].
        Raises:
            ValueError: no inputs, paired inputs of different batch sizes, or any bad input of the bare model.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        model, c = self.data2vec_multimodal, self.config
        given = {m: (v, k) for m, v, k in (("text", input_ids, attention_mask), ("image", pixel_values, None),
                                           ("audio", input_values, audio_attention_mask)) if v is not None}
        if not given:
            raise ValueError("Pass at least one modality's inputs: input_ids, pixel_values or input_values.")
        given = {m: (model.check_inputs(m, v, k), k) for m, (v, k) in given.items()}
        sizes = {m: v.shape[0] for m, (v, _) in given.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Paired modalities must have the same batch size (row i of each is one concept), got {sizes}.")
        copies = c.num_mask_copies
        hidden, pooled_targets, pending, audio_features = {}, {}, [], None
        for modality, (value, mask) in given.items():
            # The waveform convolutions, the costliest part of the audio encoder, run once for teacher and student.
            features = model.audio_encoder.extract(value) if modality == "audio" else None
            audio_features = features if features is not None else audio_features
            target, steps_mask = self.teacher_targets(
                modality, value, mask, features.detach() if features is not None else None)
            pooled_targets[modality] = masked_mean(target, steps_mask)
            # data2vec 2.0 multi-mask: M masked copies of each row share the one teacher pass above.
            value_m = value.repeat_interleave(copies, 0)
            mask_m = mask.repeat_interleave(copies, 0) if mask is not None else None
            student_input, masked_steps, masked_positions = self.student_masks(modality, value_m, mask_m, generator)
            hidden[modality] = self.student_hidden(
                modality, student_input, mask_m, masked_positions,
                features.repeat_interleave(copies, 0) if features is not None else None)
            pending.append((modality, target.repeat_interleave(copies, 0), masked_steps))
        if len(given) > 1 and c.num_fusion_layers:
            fused = model.fuse(hidden)
            hidden = {m: Embedded(fused[m], hidden[m].mask) for m in hidden}
        losses, predictions, targets = {}, [], []
        for modality, target, masked_steps in pending:
            prediction = self.regression_heads[modality](hidden[modality].hidden[masked_steps])
            target = target[masked_steps]
            losses[modality] = regression_loss(prediction, target, c.loss_beta[modality])
            predictions.append(prediction.detach().float())
            targets.append(target)
        loss = sum(losses.values())
        cross = self.cross_modal_term(given, audio_features, pooled_targets) if len(given) > 1 else None
        if cross is not None:
            loss = loss + c.cross_modal_weight * cross
        output = Data2VecMultimodalForPreTrainingOutput(
            loss=loss, text_loss=losses.get("text"), image_loss=losses.get("image"), audio_loss=losses.get("audio"),
            cross_modal_loss=cross,
            target_variance=torch.stack([t.var(0).mean() for t in targets]).mean(),
            prediction_variance=torch.stack([p.var(0).mean() for p in predictions]).mean(),
        )
        return output if return_dict else output.to_tuple()

    def cross_modal_term(self, given: dict, audio_features, pooled_targets: dict[str, torch.Tensor]):
        """Paired rows: the regression term (each modality's pooled student output, through its cross-modal head,
        regresses each partner's pooled teacher target, MSE) and/or symmetric InfoNCE between the projected pooled
        student outputs of each pair of modalities. The student encodes the unmasked inputs here, the view
        `get_*_features` embeds: with the masked views (60 % of an image, half of a clip hidden) the contrastive term
        stayed near log(batch) for hundreds of steps on the built-in scenes."""
        c, model = self.config, self.data2vec_multimodal
        pooled = {}
        for modality, (value, mask) in given.items():
            embedded = model.embed(modality, value, mask, audio_features=audio_features if modality == "audio" else None)
            states, _ = model.encode(modality, embedded)
            pooled[modality] = masked_mean(model.final_norm[modality](states[-1]), embedded.mask)
        modalities, terms = list(pooled), []
        if c.cross_modal_loss in ("regression", "both"):
            for a in modalities:
                for b in modalities:
                    if a != b:
                        terms.append(F.mse_loss(self.cross_modal_heads[b](pooled[b]).float(), pooled_targets[a]))
        if c.cross_modal_loss in ("contrastive", "both") and len(next(iter(pooled.values()))) > 1:
            projected = {m: model.projections[m](p) for m, p in pooled.items()}
            for i, a in enumerate(modalities):
                for b in modalities[i + 1:]:
                    terms.append(self.contrastive(projected[a], projected[b]))
        return torch.stack(terms).mean() if terms else None


@dataclass
class Data2VecMultimodalZeroShotOutput(ModelOutput):
    """
    Args:
        logits_per_image (`(images, texts)`) or logits_per_audio (`(clips, texts)`): cosine similarity in the shared
            space times the learned contrastive scale exp(s) (what transformers' zero-shot pipelines softmax).
        logits_per_text (`(texts, images or clips)`): the transpose.
        text_embeds, image_embeds, audio_embeds (`(batch, projection_dim)`): the unit-length features of
            `get_text_features` / `get_image_features` / `get_audio_features` (None for the absent modality).
    """

    logits_per_image: torch.FloatTensor | None = None
    logits_per_audio: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None


class Data2VecMultimodalForZeroShotClassification(Data2VecMultimodalPreTrainedModel):
    """The student encoder as a dual encoder (as CLIP is) for zero-shot classification: candidate captions scored
    against images or audio clips in the shared space, scaled by the contrastive term's learned temperature.

    Its weights are named as in [`Data2VecMultimodalForPreTraining`] (`data2vec_multimodal.*`, `contrastive.
    logit_scale`), so a pre-training folder loads with its learned temperature (teacher and regression heads are
    left out); a bare-model folder loads with the configured initial temperature (`contrastive_temperature`).
    transformers' `pipeline("zero-shot-image-classification", model=folder)` loads it through
    `AutoModelForZeroShotImageClassification`. `pipeline("zero-shot-audio-classification")` (which loads plain
    `AutoModel`s) takes it as `model=`, with `tokenizer=processor.tokenizer` and
    `feature_extractor=Wav2Vec2FeatureExtractor.from_pretrained(folder, return_attention_mask=False)`: that pipeline
    passes the captions' and the clip's inputs in one call, where both would be named `attention_mask` (one clip
    needs no mask)."""

    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__(config)
        self.data2vec_multimodal = Data2VecMultimodalModel(config)
        self.contrastive = ContrastiveLoss(config.contrastive_temperature)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.FloatTensor | None = None, input_values: torch.FloatTensor | None = None,
                audio_attention_mask: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs) -> Data2VecMultimodalZeroShotOutput | tuple:
        r"""Score every caption against every image or every audio clip.

        Args:
            input_ids (`(texts, tokens)`), attention_mask: the candidate captions, as the processor returns them.
            pixel_values (`(images, channels, size, size)`) or input_values (`(clips, samples)`, 16 kHz) +
                audio_attention_mask: what is classified; exactly one of the two.
        Returns:
            [`Data2VecMultimodalZeroShotOutput`]: `logits_per_image` or `logits_per_audio` (`(images or clips,
            texts)`), `logits_per_text` and the three modalities' features.
        Raises:
            ValueError: no captions, neither or both of images and audio, or any bad input of the bare model.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if input_ids is None or (pixel_values is None) == (input_values is None):
            given = [n for n, v in (("input_ids", input_ids), ("pixel_values", pixel_values),
                                    ("input_values", input_values)) if v is not None]
            raise ValueError("Zero-shot classification scores captions (input_ids) against images (pixel_values) or "
                             f"audio (input_values): pass input_ids and exactly one of the other two, got {given or 'none'}.")
        model = self.data2vec_multimodal
        text_embeds = model.get_text_features(input_ids, attention_mask)
        image_embeds = model.get_image_features(pixel_values) if pixel_values is not None else None
        audio_embeds = (model.get_audio_features(input_values, audio_attention_mask)
                        if input_values is not None else None)
        other = image_embeds if image_embeds is not None else audio_embeds
        # The scale training used (exp(s) clipped at max_logit_scale), so that scores are as confident as trained.
        scale = self.contrastive.logit_scale.exp().clamp(max=self.contrastive.max_logit_scale)
        logits = scale * other @ text_embeds.T
        output = Data2VecMultimodalZeroShotOutput(
            logits_per_image=logits if image_embeds is not None else None,
            logits_per_audio=logits if audio_embeds is not None else None,
            logits_per_text=logits.T, text_embeds=text_embeds, image_embeds=image_embeds, audio_embeds=audio_embeds,
        )
        return output if return_dict else output.to_tuple()


class Data2VecMultimodalForClassification(Data2VecMultimodalPreTrainedModel):
    """A linear classifier on the mean-pooled student output of one modality (data2vec fine-tunes with mean pooling);
    the task classes below fix the modality for transformers' Auto classes and pipelines."""

    modality: str
    output_class = SequenceClassifierOutput

    def __init__(self, config: Data2VecMultimodalConfig):
        super().__init__(config)
        self.data2vec_multimodal = Data2VecMultimodalModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, input_values=None,
                audio_attention_mask=None, labels: torch.LongTensor | None = None, return_dict: bool | None = None,
                **kwargs):
        r"""labels (`(batch,)` class ids in [0, num_labels), optional): cross-entropy loss. Returns logits (batch,
        num_labels). Raises ValueError for inputs of another modality than the head's."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        given = self.data2vec_multimodal.modality_of(input_ids, pixel_values, input_values)
        if given != self.modality:
            raise ValueError(f"{type(self).__name__} classifies {self.modality}, got {given} inputs.")
        pooled = self.data2vec_multimodal(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                                          input_values=input_values, audio_attention_mask=audio_attention_mask).pooler_output
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if labels.ndim != 1 or len(labels) != len(logits):
                raise ValueError(f"labels must be (batch,) = ({len(logits)},) class ids, got shape {tuple(labels.shape)}.")
            if bool((labels < 0).any()) or bool((labels >= self.config.num_labels).any()):
                raise ValueError(f"labels must lie in [0, num_labels = {self.config.num_labels}).")
            loss = F.cross_entropy(logits.float(), labels)
        output = self.output_class(loss=loss, logits=logits)
        return output if return_dict else output.to_tuple()


class Data2VecMultimodalForSequenceClassification(Data2VecMultimodalForClassification):
    """Text classification on the shared encoder (`AutoModelForSequenceClassification`)."""

    modality = "text"


class Data2VecMultimodalForImageClassification(Data2VecMultimodalForClassification):
    """Image classification on the shared encoder (`AutoModelForImageClassification`)."""

    modality = "image"
    main_input_name = "pixel_values"
    output_class = ImageClassifierOutput


class Data2VecMultimodalForAudioClassification(Data2VecMultimodalForClassification):
    """Audio classification on the shared encoder (`AutoModelForAudioClassification`)."""

    modality = "audio"
    main_input_name = "input_values"


__all__ = [
    "DATA2VEC_MULTIMODAL_LORA_TARGET_MODULES",
    "Data2VecMultimodalForAudioClassification",
    "Data2VecMultimodalForImageClassification",
    "Data2VecMultimodalForPreTraining",
    "Data2VecMultimodalForPreTrainingOutput",
    "Data2VecMultimodalForSequenceClassification",
    "Data2VecMultimodalForZeroShotClassification",
    "Data2VecMultimodalModel",
    "Data2VecMultimodalModelOutput",
    "Data2VecMultimodalPreTrainedModel",
    "Data2VecMultimodalZeroShotOutput",
    "block_mask_patches",
    "bert_mask_tokens",
    "ema_decay",
    "span_mask_frames",
    "teacher_target",
]
