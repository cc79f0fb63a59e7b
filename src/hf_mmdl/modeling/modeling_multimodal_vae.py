"""A multimodal VAE over images, captions and (with `config.audio_modality`) spoken captions: one Gaussian latent z
that any subset of the modalities can infer and every modality can be generated from.

- Per-modality encoders give Gaussian experts q(z|x_m) = N(μ_m, diag σ_m²): images through diffusers' VAE encoder
  blocks (the blocks of [`ImageVAEModel`]) flattened into the latent, captions through a small bidirectional
  Transformer mean-pooled into it, spoken captions (log-mel frames, the processor's `input_features`) through
  stride-2 1-D convolutions over time flattened into it.
- Fusion (`config.fusion`):
  * `"poe"` — MVAE (Wu & Goodman, NeurIPS 2018, §3.1): the joint posterior is the product of the experts and of the
    prior expert N(0, I). A product of Gaussians is Gaussian with precision T = 1 + Σ_m 1/σ_m² and mean
    μ = (Σ_m μ_m/σ_m²) / T. A missing modality is an expert left out, so any subset of modalities gives a posterior.
    Training sums the ELBO of the joint posterior and, with `subsampled_elbo`, the ELBO of every other non-empty
    subset's posterior on its own modalities (MVAE's sub-sampled training, §3.2): ELBO(x) = E_q[Σ_m λ_m log p(x_m|z)] − β·KL(q ‖ p).
  * `"moe"` — MMVAE (Shi et al., NeurIPS 2019, §3, Eq. 3 with one stratified sample per expert): q(z|x) =
    (1/M) Σ_m q(z|x_m); the objective is (1/M) Σ_m E_{z_m ~ q(z|x_m)}[Σ_n λ_n log p(x_n|z_m) − β(log q(z_m|x) −
    log p(z_m))], so every modality is reconstructed from every unimodal sample (the KL of a mixture has no closed
    form; its one-sample estimate is used).
- Decoders: images through diffusers' VAE decoder blocks to the mean of a Gaussian with a learned per-channel scale
  (Kingma & Welling 2014, Eq. 12); log-mel frames through transposed 1-D convolutions to the mean of a Gaussian
  with a learned per-mel-bin scale; captions through a small causal Transformer whose first position is z projected
  to the model width (a prefix), generated with transformers' `GenerationMixin` (greedy or beam search, KV cache).
- Latent arithmetic (`arithmetic`): z(source) − z(minus) + z(plus) on posterior means, decoded by `decode_image`,
  `generate_text` and `decode_audio`.

Pixel conventions as [`ImageVAEModel`]: the model reads images in [-1, 1]; everything it hands back as an image is
in [0, 1], ready for `processor.postprocess`.
"""

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import Decoder, Encoder
from torch import nn
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast, ModelOutput

from .configuration_multimodal_vae import MultimodalVAEConfig
from .inputs import (
    check_batch_sizes, check_float_tensor, check_image_batch, check_token_ids, check_values, to_model_dtype,
)
from .layers import torch_default_init_
from .loading import CheckedSaveLoadMixin
from .schedules import cosine_ramp

# peft LoRA targets: the two 3×3 convolutions of every image ResNet block (encoder and decoder) and the query and
# value projections of every caption Transformer block (encoder and decoder).
MULTIMODAL_VAE_LORA_TARGET_MODULES = r".*resnets\.\d+\.conv[12]|.*layers\.\d+\.(q_proj|v_proj)"

# diffusers' DiagonalGaussianDistribution clamps log σ² here too: exp() of a wild encoder output stays finite.
LOGVAR_RANGE = (-30.0, 20.0)
IGNORE_INDEX = -100


@dataclass
class MultimodalVAEEncoderOutput(ModelOutput):
    """Posterior q(z|x) for the given modalities: the fused `latent_mean` / `latent_logvar` (batch, latent_dim) and
    each expert's own (None for a modality not given). For MoE fusion the fused pair is the mixture's mean and the
    log of its per-dimension variance (moment matching; the mixture itself is not Gaussian)."""

    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None
    image_mean: torch.FloatTensor | None = None
    image_logvar: torch.FloatTensor | None = None
    text_mean: torch.FloatTensor | None = None
    text_logvar: torch.FloatTensor | None = None
    audio_mean: torch.FloatTensor | None = None
    audio_logvar: torch.FloatTensor | None = None


@dataclass
class MultimodalVAEOutput(ModelOutput):
    """Output of [`MultimodalVAEModel`].

    Args:
        loss (`torch.FloatTensor`): The negative (β-weighted) objective of `config.fusion`, summed over its ELBO terms,
            per image value (divided by channels × side²), mean over the batch.
        image_reconstruction (`torch.FloatTensor` of shape `(batch, channels, side, side)`): Images decoded from
            `latents`, in [0, 1] (None without images).
        text_logits (`torch.FloatTensor` of shape `(batch, tokens + 1, vocab_size)`): Next-token logits of the
            caption decoder given `latents`, teacher-forced on `<bos> caption` (None without captions).
        audio_reconstruction (`torch.FloatTensor` of shape `(batch, mel bins, frames)`): Log-mel frames decoded
            from `latents` (None without audio).
        latents (`torch.FloatTensor` of shape `(batch, latent_dim)`): z the reconstructions came from: a sample of
            the joint posterior in training (PoE; for MoE the first present expert's sample, in the order image,
            text, audio), its mean in eval mode.
        latent_mean, latent_logvar (`torch.FloatTensor` of shape `(batch, latent_dim)`): The fused posterior (see
            [`MultimodalVAEEncoderOutput`]).
        image_nll, text_nll, audio_nll (`torch.FloatTensor` of shape `(batch,)`): −log p(x_m|z) in nats of the joint term (PoE)
            or averaged over the experts' samples (MoE), unweighted.
        kl (`torch.FloatTensor` of shape `(batch,)`): KL(q(z|x) ‖ N(0, I)) of the joint term in nats (PoE: exact;
            MoE: the one-sample estimate averaged over the experts).
        kl_weight (`torch.FloatTensor`): β used for this batch (after warm-up).
    """

    loss: torch.FloatTensor | None = None
    image_reconstruction: torch.FloatTensor | None = None
    text_logits: torch.FloatTensor | None = None
    audio_reconstruction: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None
    image_nll: torch.FloatTensor | None = None
    text_nll: torch.FloatTensor | None = None
    audio_nll: torch.FloatTensor | None = None
    kl: torch.FloatTensor | None = None
    kl_weight: torch.FloatTensor | None = None


def product_of_experts(means: list[torch.Tensor], logvars: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """MVAE §3.1: the Gaussian product of the experts N(μ_m, σ_m²) and the prior expert N(0, I), computed in float32:
    precision T = 1 + Σ_m exp(−log σ_m²), mean (Σ_m μ_m exp(−log σ_m²)) / T. Returns (mean, log variance)."""
    precision = 1.0 + sum(torch.exp(-logvar.float()) for logvar in logvars)
    weighted = sum(mean.float() * torch.exp(-logvar.float()) for mean, logvar in zip(means, logvars))
    return weighted / precision, -torch.log(precision)


def mixture_moments(means: list[torch.Tensor], logvars: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log per-dimension variance of the uniform mixture (1/M) Σ_m N(μ_m, σ_m²) (MMVAE's posterior)."""
    mean = torch.stack([m.float() for m in means]).mean(0)
    second = torch.stack([lv.float().exp() + m.float() ** 2 for m, lv in zip(means, logvars)]).mean(0)
    return mean, torch.log((second - mean**2).clamp_min(1e-12))


def gaussian_log_density(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag exp(logvar)) per row, summed over dimensions."""
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 * torch.exp(-logvar))).sum(-1)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per row (Kingma & Welling 2014, App. B): −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)."""
    return -0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(-1)


class MultimodalVAETextLayer(GradientCheckpointingLayer):
    """A pre-LN Transformer block (self-attention through `scaled_dot_product_attention`, GELU FFN); causal with a
    KV cache in the caption decoder, bidirectional with a padding mask in the caption encoder."""

    def __init__(self, config: MultimodalVAEConfig, layer_idx: int, causal: bool):
        super().__init__()
        width = config.hidden_size
        self.num_heads, self.layer_idx, self.causal = config.num_attention_heads, layer_idx, causal
        self.norm1 = nn.LayerNorm(width)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(width, width) for _ in range(4))
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, width)

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        batch, length, width = hidden_states.shape
        x = self.norm1(hidden_states)
        q, k, v = (proj(x).view(batch, length, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        mask = None
        if self.causal:
            # Query i (after `offset` cached positions) sees keys 0 .. offset + i.
            offset = k.shape[2] - length
            mask = (torch.arange(k.shape[2], device=q.device)[None, :]
                    <= torch.arange(length, device=q.device)[:, None] + offset)
        if key_mask is not None:
            padding = key_mask.bool()[:, None, None, :]
            mask = padding if mask is None else mask & padding
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        hidden_states = hidden_states + self.o_proj(attended.transpose(1, 2).reshape(batch, length, width))
        return hidden_states + self.fc2(F.gelu(self.fc1(self.norm2(hidden_states))))


class MultimodalVAEPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    """Weight init and loading rules of the multimodal VAE: PyTorch's default init for convolutions and linear layers
    (as diffusers' VAE blocks get), N(0, 0.02) embeddings, unit LayerNorms and GroupNorms."""

    config: MultimodalVAEConfig
    base_model_prefix = "multimodal_vae"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text", "audio")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["MultimodalVAETextLayer"]
    # Trainer must not pass num_items_in_batch: the loss is a mean already.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        if torch_default_init_(module):
            return
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=self.config.initializer_range)
        elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, MultimodalVAEModel):
            init.constant_(module.log_scale, self.config.init_log_scale)
            if module.audio_log_scale is not None:
                init.constant_(module.audio_log_scale, self.config.init_log_scale)


class MultimodalVAEImageEncoder(nn.Module):
    """Image expert: diffusers' VAE `Encoder` (ResNet levels, stride-2 downsampling) to spatial moments, flattened
    and mapped by a Linear layer to (μ, log σ²) of the shared latent."""

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__()
        self.encoder = Encoder(
            in_channels=config.in_channels, out_channels=config.image_latent_channels,
            down_block_types=("DownEncoderBlock2D",) * len(config.image_block_out_channels),
            block_out_channels=config.image_block_out_channels, layers_per_block=config.image_layers_per_block,
            act_fn=config.act_fn, norm_num_groups=config.image_norm_num_groups, double_z=True,
            mid_block_add_attention=False,
        )
        moments = 2 * config.image_latent_channels * config.latent_side**2
        self.to_moments = nn.Linear(moments, 2 * config.latent_dim)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.to_moments(self.encoder(pixel_values).flatten(1)).chunk(2, dim=-1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class MultimodalVAEImageDecoder(nn.Module):
    """p(x_image|z): a Linear layer to spatial latents, then diffusers' VAE `Decoder` to the Gaussian mean in the
    [-1, 1] pixel scale."""

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__()
        self.channels, self.side = config.image_latent_channels, config.latent_side
        self.from_latent = nn.Linear(config.latent_dim, self.channels * self.side**2)
        self.decoder = Decoder(
            in_channels=config.image_latent_channels, out_channels=config.in_channels,
            up_block_types=("UpDecoderBlock2D",) * len(config.image_block_out_channels),
            block_out_channels=config.image_block_out_channels, layers_per_block=config.image_layers_per_block,
            norm_num_groups=config.image_norm_num_groups, act_fn=config.act_fn, mid_block_add_attention=False,
        )

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(latents).view(-1, self.channels, self.side, self.side))


class MultimodalVAEAudioEncoder(nn.Module):
    """Audio expert: log-mel frames (batch, mel bins, frames) through `audio_num_layers` stride-2 1-D convolutions
    over time (GELU after each), flattened, and a Linear layer to (μ, log σ²) of the shared latent. Flattening keeps
    where in the clip each sound is (the features are padded to a fixed length, so positions line up)."""

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__()
        widths = [config.audio_num_mel_bins] + [config.audio_hidden_size] * config.audio_num_layers
        self.convs = nn.ModuleList(nn.Conv1d(widths[i], widths[i + 1], kernel_size=3, stride=2, padding=1)
                                   for i in range(config.audio_num_layers))
        frames = config.audio_num_frames // 2**config.audio_num_layers
        self.to_moments = nn.Linear(config.audio_hidden_size * frames, 2 * config.latent_dim)

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = input_features
        for conv in self.convs:
            hidden = F.gelu(conv(hidden))
        mean, logvar = self.to_moments(hidden.flatten(1)).chunk(2, dim=-1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class MultimodalVAEAudioDecoder(nn.Module):
    """p(log-mel frames|z): a Linear layer to (audio_hidden_size, frames / 2**layers), then transposed 1-D
    convolutions that double the frames (GELU between) to the Gaussian mean (batch, mel bins, frames)."""

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__()
        self.width, self.frames = config.audio_hidden_size, config.audio_num_frames // 2**config.audio_num_layers
        self.from_latent = nn.Linear(config.latent_dim, self.width * self.frames)
        widths = [config.audio_hidden_size] * config.audio_num_layers + [config.audio_num_mel_bins]
        self.convs = nn.ModuleList(nn.ConvTranspose1d(widths[i], widths[i + 1], kernel_size=4, stride=2, padding=1)
                                   for i in range(config.audio_num_layers))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden = self.from_latent(latents).view(-1, self.width, self.frames)
        for index, conv in enumerate(self.convs):
            hidden = conv(F.gelu(hidden) if index else hidden)
        return hidden


class MultimodalVAETextEncoder(nn.Module):
    """Caption expert: token + learned position embeddings, bidirectional Transformer blocks, a final LayerNorm, the
    mean over real tokens, and a Linear layer to (μ, log σ²) of the shared latent."""

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed_positions = nn.Embedding(config.max_text_length, config.hidden_size)
        self.layers = nn.ModuleList(MultimodalVAETextLayer(config, i, causal=False) for i in range(config.num_text_layers))
        self.norm = nn.LayerNorm(config.hidden_size)
        self.to_moments = nn.Linear(config.hidden_size, 2 * config.latent_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed_tokens(input_ids) + self.embed_positions(positions)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask)
        weights = attention_mask.to(hidden.dtype)[..., None]
        pooled = (self.norm(hidden) * weights).sum(1) / weights.sum(1)
        mean, logvar = self.to_moments(pooled).chunk(2, dim=-1)
        return mean, logvar.clamp(*LOGVAR_RANGE)


class MultimodalVAECaptionDecoder(MultimodalVAEPreTrainedModel, GenerationMixin):
    """p(caption|z): a causal Transformer over `[prefix(z), <bos>, w_1, …]`, where prefix(z) is z mapped by a Linear
    layer to the model width, predicting `w_1, …, <eos>`. `generate(input_ids=<bos> column, latents=z)` runs
    transformers' generation (greedy by default; `num_beams` for beam search) with a KV cache: the prefix and <bos>
    are read once, then one token per step."""

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__(config)
        self.latent_to_prefix = nn.Linear(config.latent_dim, config.hidden_size)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        # The prefix, <bos>, up to max_text_length words and, while generating, one more position for <eos>'s input.
        self.embed_positions = nn.Embedding(config.max_text_length + 2, config.hidden_size)
        self.layers = nn.ModuleList(MultimodalVAETextLayer(config, i, causal=True) for i in range(config.num_text_layers))
        self.norm = nn.LayerNorm(config.hidden_size)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.generation_config.max_new_tokens = config.max_text_length + 1  # the words and <eos>
        self.generation_config.num_beams = 1

    def get_input_embeddings(self):
        return self.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids: torch.LongTensor, latents: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, cache: DynamicCache | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None, **kwargs) -> CausalLMOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, tokens)`): `<bos> w_1 …` (the whole caption, or the new
            tokens after a cache).
        latents (`torch.FloatTensor` of shape `(batch, latent_dim)`): z; needed when the cache is empty (it becomes
            the first position), ignored after.
        labels (`torch.LongTensor` of shape `(batch, tokens)`): next tokens, −100 where not scored; the loss is the
            mean cross-entropy over scored tokens.
        cache (`DynamicCache`, *optional*): keys/values of earlier positions (`past_key_values` also works).
        """
        cache = cache if cache is not None else kwargs.get("past_key_values")
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        offset = cache.get_seq_length() if cache is not None else 0
        hidden = self.embed_tokens(input_ids)
        prefixed = offset == 0
        if prefixed:
            if latents is None:
                raise ValueError("The caption decoder needs `latents` (batch, latent_dim) for its first position.")
            hidden = torch.cat([self.latent_to_prefix(to_model_dtype(latents, self.dtype))[:, None], hidden], dim=1)
        if offset + hidden.shape[1] > self.embed_positions.num_embeddings:
            raise ValueError(f"Captions of more than {self.config.max_text_length} words (with <bos> and <eos>) do not "
                             "fit the position table: pass max_new_tokens ≤ max_text_length + 1.")
        positions = torch.arange(offset, offset + hidden.shape[1], device=hidden.device)
        hidden = hidden + self.embed_positions(positions)
        for layer in self.layers:
            hidden = layer(hidden, None, cache)
        hidden = self.norm(hidden)
        logits = self.lm_head(hidden[:, 1:] if prefixed else hidden)  # the prefix predicts nothing: <bos> is given
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        output = CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)
        return output if return_dict is not False else output.to_tuple()

    def prepare_inputs_for_generation(self, input_ids, cache=None, latents=None, use_cache=True, **kwargs):
        cache = cache if cache is not None else kwargs.get("past_key_values")
        started = cache is not None and cache.get_seq_length() > 0
        return {"input_ids": input_ids[:, -1:] if started else input_ids, "latents": None if started else latents,
                "cache": cache, "use_cache": use_cache}


class MultimodalVAEModel(MultimodalVAEPreTrainedModel):
    """A multimodal VAE over images, captions and (with `config.audio_modality`) spoken captions with one Gaussian
    latent (see the module docstring): MVAE's product of experts or MMVAE's mixture of experts, an encoder and a
    decoder per modality.

    `forward(pixel_values=…, input_ids=…, attention_mask=…, input_features=…)` takes any non-empty subset of the
    modalities and returns the negative objective as `loss` with the reconstructions. `encode(...)` gives the posterior mean and log-variance of
    whichever modalities are given, `decode_image(z)` images in [0, 1], `generate_text(z)` caption token ids (the
    processor's `batch_decode` turns them into words), `decode_audio(z)` log-mel frames, `arithmetic(source, minus,
    plus)` the latent
    z(source) − z(minus) + z(plus). The KL warm-up reads the training step set by `set_schedule_step` (the
    package's `ScheduleStepCallback` does this every Trainer step).
    """

    def __init__(self, config: MultimodalVAEConfig):
        super().__init__(config)
        self.image_encoder = MultimodalVAEImageEncoder(config)
        self.image_decoder = MultimodalVAEImageDecoder(config)
        self.text_encoder = MultimodalVAETextEncoder(config)
        self.text_decoder = MultimodalVAECaptionDecoder(config)
        self.log_scale = nn.Parameter(torch.full((config.in_channels, 1, 1), config.init_log_scale))
        # Built only for audio models, so that image + caption checkpoints keep exactly their weights.
        self.audio_encoder = MultimodalVAEAudioEncoder(config) if config.audio_modality else None
        self.audio_decoder = MultimodalVAEAudioDecoder(config) if config.audio_modality else None
        self.audio_log_scale = (nn.Parameter(torch.full((config.audio_num_mel_bins, 1), config.init_log_scale))
                                if config.audio_modality else None)
        self.schedule_step: int | None = None
        self.post_init()

    def get_input_embeddings(self):
        return self.text_encoder.embed_tokens

    def set_schedule_step(self, step: int | None) -> None:
        """Set the training step that drives the KL warm-up (`None`: the end of the schedule, for inference)."""
        self.schedule_step = step

    def current_kl_weight(self) -> float:
        """β after warm-up: a cosine ramp 0 → β over `kl_warmup_steps` (Bowman et al. 2016)."""
        step = self.schedule_step
        if step is None:
            return self.config.beta
        return cosine_ramp(step, self.config.kl_warmup_steps, 0.0, self.config.beta)

    # ---- input checks --------------------------------------------------------------------------------------------
    def _checked(self, pixel_values, input_ids, attention_mask, input_features=None):
        """The given inputs, validated (ValueError/TypeError naming what is wrong), the mask defaulting to all ones."""
        if pixel_values is None and input_ids is None and input_features is None:
            raise ValueError("Pass pixel_values and/or input_ids (the processor's `images=` and `text=` outputs) "
                             "and, for an audio model, input_features (its `audio=` output): the model needs at least "
                             "one modality.")
        if attention_mask is not None and input_ids is None:
            raise ValueError("attention_mask was given without input_ids: it masks caption tokens, pass both.")
        if pixel_values is not None:
            check_image_batch(pixel_values, self.config.in_channels, self.config.downsampling_factor,
                              self.config.image_size, value_range=(-1.0, 1.0),
                              hint="scale [0, 1] images by x * 2 − 1 (the processor does this).")
            pixel_values = to_model_dtype(pixel_values, self.dtype)
        if input_ids is not None:
            check_token_ids(input_ids, "input_ids", self.config.vocab_size, self.config.max_text_length, attention_mask)
            input_ids = input_ids.long()
            attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        if input_features is not None:
            input_features = self._checked_audio(input_features)
        sizes = {what: len(value) for what, value in (("images", pixel_values), ("captions", input_ids),
                                                      ("audio clips", input_features)) if value is not None}
        check_batch_sizes(sizes, "paired inputs need one of each per example (encode unpaired modalities in separate "
                                 "calls).")
        return pixel_values, input_ids, attention_mask, input_features

    def _checked_audio(self, input_features) -> torch.Tensor:
        config = self.config
        if not config.audio_modality:
            raise ValueError("input_features (audio) given, but this model has no audio modality "
                             "(config.audio_modality=False): pass images and/or captions, or train a model with audio "
                             "(`hf-mmdl train multimodal_vae --audio true`).")
        check_float_tensor(input_features, "input_features", ndim=3)
        expected = (config.audio_num_mel_bins, config.audio_num_frames)
        if tuple(input_features.shape[1:]) != expected:
            raise ValueError(f"input_features must have shape (batch, {expected[0]} mel bins, {expected[1]} frames) "
                             f"(the processor's `audio=` output), got {tuple(input_features.shape)}.")
        check_values(input_features, "input_features")
        return to_model_dtype(input_features, self.dtype)

    def _check_latents(self, latents, name: str = "latents") -> torch.Tensor:
        check_float_tensor(latents, name, ndim=2)
        if latents.shape[1] != self.config.latent_dim:
            raise ValueError(f"{name} must have latent_dim={self.config.latent_dim} columns, got shape "
                             f"{tuple(latents.shape)}.")
        check_values(latents, name)
        return to_model_dtype(latents, self.dtype)

    # ---- posteriors ----------------------------------------------------------------------------------------------
    def _experts(self, pixel_values, input_ids, attention_mask,
                 input_features=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        experts = {}
        if pixel_values is not None:
            experts["image"] = self.image_encoder(pixel_values)
        if input_ids is not None:
            experts["text"] = self.text_encoder(input_ids, attention_mask)
        if input_features is not None:
            experts["audio"] = self.audio_encoder(input_features)
        return experts

    def _fuse(self, experts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        means, logvars = [e[0] for e in experts], [e[1] for e in experts]
        if self.config.fusion == "poe":
            return product_of_experts(means, logvars)
        return mixture_moments(means, logvars)

    def encode(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None, input_features: torch.Tensor | None = None,
               return_dict: bool = True):
        """q(z|x) of whichever modalities are given (images in [-1, 1], caption ids with their mask, log-mel
        `input_features` (batch, mel bins, frames) of an audio model: what the processor returns, so
        `model.encode(**processor(images=…, text=…, audio=…))` works). Returns a [`MultimodalVAEEncoderOutput`];
        nothing given, audio for a model without audio, or bad inputs raise a `ValueError`/`TypeError`."""
        pixel_values, input_ids, attention_mask, input_features = self._checked(pixel_values, input_ids,
                                                                                attention_mask, input_features)
        experts = self._experts(pixel_values, input_ids, attention_mask, input_features)
        mean, logvar = self._fuse(list(experts.values()))
        image, text, audio = (experts.get(m, (None, None)) for m in ("image", "text", "audio"))
        output = MultimodalVAEEncoderOutput(latent_mean=mean, latent_logvar=logvar, image_mean=image[0],
                                            image_logvar=image[1], text_mean=text[0], text_logvar=text[1],
                                            audio_mean=audio[0], audio_logvar=audio[1])
        return output if return_dict else output.to_tuple()

    # ---- decoders ------------------------------------------------------------------------------------------------
    def _image_nll(self, pixel_values: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """−log N(x; μ, σ²) per image in nats (Kingma & Welling 2014, Eq. 12), summed over pixel values."""
        log_scale = self.log_scale.float()
        nll = 0.5 * math.log(2 * math.pi) + log_scale + 0.5 * ((pixel_values.float() - mean.float()) * torch.exp(-log_scale)) ** 2
        return nll.flatten(1).sum(1)

    def _audio_nll(self, input_features: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """−log N(x; μ, σ²) per clip in nats, summed over its log-mel values (σ learned per mel bin)."""
        log_scale = self.audio_log_scale.float()
        nll = 0.5 * math.log(2 * math.pi) + log_scale + 0.5 * ((input_features.float() - mean.float()) * torch.exp(-log_scale)) ** 2
        return nll.flatten(1).sum(1)

    def _caption_teacher_forcing(self, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder input `<bos> w_1 … w_n` and labels `w_1 … w_n <eos>` (−100 after), from caption ids and mask."""
        batch = len(input_ids)
        real = attention_mask.bool()
        bos = input_ids.new_full((batch, 1), self.config.bos_token_id)
        decoder_input = torch.cat([bos, input_ids.masked_fill(~real, self.config.pad_token_id)], dim=1)
        labels = torch.cat([input_ids.masked_fill(~real, IGNORE_INDEX), input_ids.new_full((batch, 1), IGNORE_INDEX)], 1)
        labels[torch.arange(batch, device=labels.device), real.sum(1)] = self.config.eos_token_id
        return decoder_input, labels

    def _text_nll(self, latents, decoder_input, labels) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.text_decoder(decoder_input, latents=latents, use_cache=False).logits
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none").sum(1)
        return nll, logits

    def decode_image(self, latents: torch.Tensor) -> torch.Tensor:
        """Decoder means of finite (batch, latent_dim) latents as images in [0, 1], shape (batch, channels, side,
        side); a latent of another shape or with NaN/inf raises a `ValueError`."""
        latents = self._check_latents(latents)
        return ((self.image_decoder(latents) + 1) / 2).clamp(0, 1)

    def decode_audio(self, latents: torch.Tensor) -> torch.Tensor:
        """Decoder means of finite (batch, latent_dim) latents as log-mel frames (batch, mel bins, frames), in the
        processor's feature scale. A model without audio, or a latent of another shape or with NaN/inf, raises a
        `ValueError`."""
        if not self.config.audio_modality:
            raise ValueError("This model has no audio modality (config.audio_modality=False): it cannot decode audio.")
        return self.audio_decoder(self._check_latents(latents))

    @torch.no_grad()
    def generate_text(self, latents: torch.Tensor, **generate_kwargs) -> torch.LongTensor:
        """Captions of finite (batch, latent_dim) latents as token ids (batch, length) starting with <bos>, through
        transformers' `generate` (greedy by default; `num_beams=`, `max_new_tokens=` and other generation settings
        pass through). The processor's `batch_decode` turns them into text."""
        latents = self._check_latents(latents)
        start = torch.full((len(latents), 1), self.config.bos_token_id, dtype=torch.long, device=latents.device)
        return self.text_decoder.generate(input_ids=start, latents=latents, **generate_kwargs)

    def arithmetic(self, source, minus, plus) -> torch.Tensor:
        """Latent arithmetic z(source) − z(minus) + z(plus). Each argument is either latents (a float (batch or 1,
        latent_dim) tensor) or the processor's output for some modalities (a mapping with `pixel_values`,
        `input_ids` + `attention_mask` and/or `input_features`), encoded to its posterior mean. Batches of 1 broadcast against the others;
        other differing batch sizes raise a `ValueError`. Decode the result with `decode_image` and `generate_text`."""
        vectors = []
        for name, value in (("source", source), ("minus", minus), ("plus", plus)):
            if isinstance(value, torch.Tensor):
                vectors.append(self._check_latents(value, name))
            elif hasattr(value, "keys") and ({"pixel_values", "input_ids", "input_features"} & set(value.keys())):
                known = {key: value[key] for key in ("pixel_values", "input_ids", "attention_mask", "input_features")
                         if key in value}
                with torch.no_grad():
                    vectors.append(self.encode(**known).latent_mean.to(self.dtype))
            else:
                raise TypeError(f"{name} must be latents (a (batch, latent_dim) float tensor) or the processor's output "
                                f"(with pixel_values, input_ids and/or input_features), got {type(value).__name__}.")
        sizes = {len(v) for v in vectors} - {1}
        if len(sizes) > 1:
            raise ValueError(f"source, minus and plus hold {[len(v) for v in vectors]} rows: give them equal batch sizes "
                             "or batches of 1 (which apply to every row).")
        return vectors[0] - vectors[1] + vectors[2]

    # ---- the objective -------------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ) -> MultimodalVAEOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch, channels, side, side)`, *optional*): Images in [-1, 1].
        input_ids (`torch.LongTensor` of shape `(batch, tokens)`, *optional*): Caption word ids without <bos>/<eos>
            (the processor's), at most `max_text_length`; with `attention_mask` (1 = word, 0 = padding).
        input_features (`torch.FloatTensor` of shape `(batch, audio_num_mel_bins, audio_num_frames)`, *optional*):
            Log-mel frames of spoken captions (the processor's `audio=` output); audio models only.
        sample_posterior (`bool`, *optional*): Reparameterised samples z = μ + σ⊙ε (default in training) rather than
            posterior means (default in eval mode, for deterministic outputs).
        generator (`torch.Generator`, *optional*): Source of ε.
        return_loss (`bool`): Compute the objective (on by default: it needs only the inputs).

        Any modality may be missing; those given must hold the same number of examples. NaN, infinite or
        out-of-range or integer pixels, images of another size, ids outside the vocabulary, too many tokens, a mask
        of another shape, audio features of another shape or with NaN/inf, or audio for a model without audio raise
        a `ValueError`/`TypeError` naming the input.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        sample_posterior = self.training if sample_posterior is None else sample_posterior
        pixel_values, input_ids, attention_mask, input_features = self._checked(pixel_values, input_ids,
                                                                                attention_mask, input_features)
        experts = self._experts(pixel_values, input_ids, attention_mask, input_features)
        decoder_input = labels = None
        if input_ids is not None:
            decoder_input, labels = self._caption_teacher_forcing(input_ids, attention_mask)
        weights = {"image": self.config.image_weight, "text": self.config.text_weight, "audio": self.config.audio_weight}
        kl_weight = self.current_kl_weight()

        def draw(mean, logvar):
            if not sample_posterior:
                return mean
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            return mean + torch.exp(0.5 * logvar) * noise

        def reconstruct(latents, modalities):
            """−log p(x_m|z) for each modality of `modalities`, and the decoded image / caption logits."""
            nll, decoded = {}, {}
            latents = latents.to(self.dtype)
            if "image" in modalities:
                mean = self.image_decoder(latents)
                nll["image"], decoded["image"] = self._image_nll(pixel_values, mean), mean
            if "text" in modalities:
                nll["text"], decoded["text"] = self._text_nll(latents, decoder_input, labels)
            if "audio" in modalities:
                mean = self.audio_decoder(latents)
                nll["audio"], decoded["audio"] = self._audio_nll(input_features, mean), mean
            return nll, decoded

        joint_mean, joint_logvar = self._fuse(list(experts.values()))
        present = tuple(experts)
        total = 0.0
        if self.config.fusion == "poe":
            subsets = [present]
            if self.config.subsampled_elbo:
                # Every other non-empty subset, smallest first (two modalities: the two unimodal terms, as MVAE).
                subsets += [subset for size in range(1, len(present)) for subset in itertools.combinations(present, size)]
            for index, subset in enumerate(subsets):
                mean, logvar = (joint_mean, joint_logvar) if index == 0 else product_of_experts(
                    [experts[m][0] for m in subset], [experts[m][1] for m in subset])
                latents = draw(mean, logvar)
                nll, decoded = reconstruct(latents, subset)
                kl = kl_to_standard_normal(mean, logvar)
                total = total + sum(weights[m] * nll[m] for m in subset) + kl_weight * kl
                if index == 0:
                    joint = dict(latents=latents, nll=nll, decoded=decoded, kl=kl)
        else:
            means = [experts[m][0].float() for m in present]
            logvars = [experts[m][1].float() for m in present]
            sums = {m: 0.0 for m in present}
            kls = 0.0
            for index, m in enumerate(present):
                latents = draw(means[index], logvars[index])
                nll, decoded = reconstruct(latents, present)
                # log q(z|x) of the mixture minus log p(z): the one-sample KL estimate of MMVAE Eq. 3.
                log_q = torch.logsumexp(torch.stack([gaussian_log_density(latents, mu, lv)
                                                     for mu, lv in zip(means, logvars)]), 0) - math.log(len(present))
                log_p = gaussian_log_density(latents, torch.zeros_like(latents), torch.zeros_like(latents))
                kl = log_q - log_p
                total = total + (sum(weights[n] * nll[n] for n in present) + kl_weight * kl) / len(present)
                sums = {n: sums[n] + nll[n] / len(present) for n in present}
                kls = kls + kl / len(present)
                if index == 0:
                    joint = dict(latents=latents, decoded=decoded)
            joint |= dict(nll=sums, kl=kls)

        image_values = self.config.in_channels * self.config.image_size**2
        loss = (total / image_values).mean() if return_loss else None
        image = joint["decoded"].get("image")
        output = MultimodalVAEOutput(
            loss=loss,
            image_reconstruction=((image + 1) / 2).clamp(0, 1) if image is not None else None,
            text_logits=joint["decoded"].get("text"),
            audio_reconstruction=joint["decoded"].get("audio"),
            latents=joint["latents"],
            latent_mean=joint_mean,
            latent_logvar=joint_logvar,
            image_nll=joint["nll"].get("image"),
            text_nll=joint["nll"].get("text"),
            audio_nll=joint["nll"].get("audio"),
            kl=joint["kl"],
            kl_weight=torch.tensor(kl_weight),
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "MULTIMODAL_VAE_LORA_TARGET_MODULES",
    "MultimodalVAEAudioDecoder",
    "MultimodalVAEAudioEncoder",
    "MultimodalVAECaptionDecoder",
    "MultimodalVAEEncoderOutput",
    "MultimodalVAEModel",
    "MultimodalVAEOutput",
    "MultimodalVAEPreTrainedModel",
    "kl_to_standard_normal",
    "mixture_moments",
    "product_of_experts",
]
