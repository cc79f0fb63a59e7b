"""GLIDE (Nichol et al., "GLIDE: Towards Photorealistic Image Generation and Editing with Text-Guided Diffusion
Models", ICML 2022): a caption transformer and a text-conditional ADM UNet trained with iDDPM's hybrid loss.

The caption transformer is GLIDE's own (a learned embedding per padded position, no causal mask, the last slot
pooled). The UNet is diffusers' `UNet2DConditionModel` configured as GLIDE's ADM (GLIDE §2.2; Dhariwal & Nichol
2021): the caption tokens are projected into the keys/values of every attention layer (`add_k_proj`/`add_v_proj`,
text first) and the pooled caption is added to the timestep embedding (`class_embedding`). What is GLIDE's or
iDDPM's own is written here: the hybrid objective with learned variance (iDDPM Eq. 15-16), caption dropout for
classifier-free guidance (§4.2), and the inputs of the inpainting and upsampling variants (§4.3)."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DConditionModel
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ModelOutput

from .configuration_glide import GlideConfig, GlideTextConfig
from .inputs import check_float_tensor, check_values, to_model_dtype
from .layers import MultiHeadAttention
from .loading import CheckedSaveLoadMixin


class GlideTextBlock(GradientCheckpointingLayer):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x)) with an exact-GELU MLP 4× wide."""

    def __init__(self, config: GlideTextConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = MultiHeadAttention(config.width, config.num_attention_heads)
        self.ln_2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(nn.Linear(config.width, 4 * config.width), nn.GELU(), nn.Linear(4 * config.width, config.width))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.ln_1(hidden_states))
        return hidden_states + self.mlp(self.ln_2(hidden_states))


def _init_linear(module: nn.Linear | nn.Embedding, std: float) -> None:
    init.normal_(module.weight, std=std)
    if getattr(module, "bias", None) is not None:
        init.zeros_(module.bias)


def _init_layer_norm(module: nn.LayerNorm | None) -> None:
    if module is not None:
        init.ones_(module.weight)
        init.zeros_(module.bias)


def init_text_weights(module: nn.Module, std: float) -> None:
    """Normal(0, std) linear/embedding weights, zero biases, unit LayerNorms, for the caption transformer's own
    modules only (a UNet sharing the model keeps diffusers' init)."""
    if isinstance(module, GlideTextBlock):
        for layer in (module.attn.q_proj, module.attn.k_proj, module.attn.v_proj, module.attn.o_proj, module.mlp[0], module.mlp[2]):
            _init_linear(layer, std)
        _init_layer_norm(module.ln_1)
        _init_layer_norm(module.ln_2)
    elif isinstance(module, GlideTextModel):
        _init_linear(module.token_embedding, std)
        init.normal_(module.positional_embedding, std=std)
        if module.padding_embedding is not None:
            init.normal_(module.padding_embedding, std=std)
        _init_layer_norm(module.final_ln)


class GlideTextPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    config: GlideTextConfig
    base_model_prefix = "text_model"
    input_modalities = ("text",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["GlideTextBlock"]

    @torch.no_grad()
    def _init_weights(self, module):
        init_text_weights(module, self.config.initializer_range)


class GlideTextModel(GlideTextPreTrainedModel):
    """GLIDE's caption encoder (§4.1): K caption tokens → K hidden states, all positions attending to all (no causal
    mask). Where `attention_mask` is 0 the token + position embedding is replaced by a learned per-position padding
    embedding, so the empty caption is a fixed learned sequence. `pooler_output` is the last slot, which replaces
    ADM's class embedding."""

    def __init__(self, config: GlideTextConfig):
        super().__init__(config)
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.text_ctx, config.width))
        self.padding_embedding = nn.Parameter(torch.empty(config.text_ctx, config.width)) if config.padding_embedding else None
        self.blocks = nn.ModuleList(GlideTextBlock(config) for _ in range(config.num_layers))
        self.final_ln = nn.LayerNorm(config.width, eps=config.layer_norm_eps) if config.final_layer_norm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.token_embedding

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.token_embedding = embeddings

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs) -> BaseModelOutputWithPooling:
        if input_ids.ndim != 2 or input_ids.shape[1] != self.config.text_ctx:
            raise ValueError(
                f"input_ids must have shape (batch, {self.config.text_ctx}): GLIDE captions are padded to a fixed "
                f"length (use the processor), got {tuple(input_ids.shape)}."
            )
        hidden = self.token_embedding(input_ids) + self.positional_embedding
        if self.padding_embedding is not None and attention_mask is not None:
            hidden = torch.where(attention_mask.bool()[..., None], hidden, self.padding_embedding.to(hidden.dtype))
        for block in self.blocks:
            hidden = block(hidden)
        if self.final_ln is not None:
            hidden = self.final_ln(hidden)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden[:, -1])


@dataclass
class GlideOutput(ModelOutput):
    """Output of [`GlideModel`].

    Args:
        loss (`torch.FloatTensor`): The hybrid loss L_simple + λ·L_vlb (iDDPM Eq. 16) on sampled timesteps.
        model_output (`torch.FloatTensor` of shape `(batch, 6, height, width)`): ε (channels 0-2) and the variance
            interpolation v = (r + 1)/2 logits r (channels 3-5).
        mse (`torch.FloatTensor`): L_simple, the per-pixel mean squared error of the prediction (ε or v).
        vlb (`torch.FloatTensor`): The sampled step's variational bound term in bits per dimension.
        timesteps (`torch.LongTensor` of shape `(batch,)`): The timesteps the loss was taken at.
    """

    loss: torch.FloatTensor | None = None
    model_output: torch.FloatTensor | None = None
    mse: torch.FloatTensor | None = None
    vlb: torch.FloatTensor | None = None
    timesteps: torch.LongTensor | None = None


def glide_unet(config: GlideConfig) -> UNet2DConditionModel:
    """ADM's UNet as diffusers blocks (GLIDE §2.2): attention levels get the Simple cross-attention blocks whose
    added K/V projections carry the caption; the pooled caption enters through a projection class embedding."""
    down, up, resolution = [], [], config.image_size
    for level in range(len(config.channel_mult)):
        attends = resolution in config.attention_resolutions
        down.append("SimpleCrossAttnDownBlock2D" if attends else "ResnetDownsampleBlock2D")
        if level < len(config.channel_mult) - 1:
            resolution //= 2
    for level in reversed(range(len(config.channel_mult))):
        attends = (config.image_size // 2**level) in config.attention_resolutions
        up.append("SimpleCrossAttnUpBlock2D" if attends else "ResnetUpsampleBlock2D")
    width = config.text_config.width
    return UNet2DConditionModel(
        sample_size=config.image_size,
        in_channels=config.in_channels,
        out_channels=6,
        down_block_types=tuple(down),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=tuple(up),
        block_out_channels=tuple(config.model_channels * mult for mult in config.channel_mult),
        layers_per_block=config.num_res_blocks,
        dropout=config.dropout,
        norm_num_groups=32 if config.model_channels % 32 == 0 else math.gcd(32, config.model_channels),
        norm_eps=1e-5,
        cross_attention_dim=width,
        attention_head_dim=config.num_head_channels,
        resnet_time_scale_shift="scale_shift",
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=width,
        flip_sin_to_cos=True,
        freq_shift=0,
        act_fn="silu",
    )


def random_erase_masks(batch: int, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """GLIDE §4.3's inpainting training: one random rectangle erased per image, its sides uniform between a quarter
    of the image and the whole of it. Returns (batch, 1, H, W) with 1 where the pixel stays known."""
    def span(size):
        length = torch.randint(max(1, size // 4), size + 1, (batch,), device=device)
        start = (torch.rand(batch, device=device) * (size - length + 1)).long()
        coords = torch.arange(size, device=device)
        return (coords >= start[:, None]) & (coords < (start + length)[:, None])

    erased = span(height)[:, :, None] & span(width)[:, None, :]
    return (~erased).float()[:, None]


def normal_kl(mean_1, log_var_1, mean_2, log_var_2) -> torch.Tensor:
    """KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²)) elementwise, in nats."""
    return 0.5 * (-1.0 + log_var_2 - log_var_1 + torch.exp(log_var_1 - log_var_2) + (mean_1 - mean_2) ** 2 * torch.exp(-log_var_2))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit pixels in [-1, 1] under N(mean, exp(log_scale)²) integrated over each pixel's bin (DDPM §3.3)."""
    def cdf(v):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))

    inv_std = torch.exp(-log_scale)
    cdf_plus, cdf_min = cdf(inv_std * (x - mean + 1 / 255)), cdf(inv_std * (x - mean - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


class GlideDiffusion:
    """The quantities of the forward process q that the hybrid loss needs, from diffusers' `DDPMScheduler` betas:
    marginals (DDPM Eq. 4), the posterior q(x_{t−1}|x_t, x_0) and the learned-range variance (iDDPM Eq. 15).
    Fixed tables derived from the config, so they are neither parameters nor saved."""

    def __init__(self, num_train_timesteps: int, noise_schedule: str, prediction_type: str = "epsilon"):
        self.prediction_type = prediction_type
        with torch.device("cpu"):  # real numbers even when the model is built on the meta device by from_pretrained
            self._build_tables(num_train_timesteps, noise_schedule)

    def _build_tables(self, num_train_timesteps: int, noise_schedule: str) -> None:
        scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=noise_schedule)
        betas = scheduler.betas.double()
        alphas_cumprod = torch.cumprod(1 - betas, 0)
        previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_variance = betas * (1 - previous) / (1 - alphas_cumprod)
        tables = {
            "alphas_cumprod": alphas_cumprod,
            "log_betas": torch.log(betas),
            # β̃₀ = 0: use β̃₁ in the log, as iDDPM does.
            "posterior_log_variance": torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])),
            "posterior_mean_coef_x0": betas * torch.sqrt(previous) / (1 - alphas_cumprod),
            "posterior_mean_coef_xt": (1 - previous) * torch.sqrt(1 - betas) / (1 - alphas_cumprod),
        }
        for name, table in tables.items():
            setattr(self, name, table.float())
        self.num_train_timesteps = num_train_timesteps

    def _at(self, table: torch.Tensor, timesteps: torch.LongTensor) -> torch.Tensor:
        return table.to(timesteps.device)[timesteps][:, None, None, None]

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.LongTensor) -> torch.Tensor:
        abar = self._at(self.alphas_cumprod, timesteps)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.LongTensor) -> torch.Tensor:
        """What L_simple regresses the UNet's first three channels on: ε, or v = √ᾱ·ε − √(1−ᾱ)·x₀."""
        if self.prediction_type == "epsilon":
            return noise
        abar = self._at(self.alphas_cumprod, timesteps)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def predicted_x0(self, prediction: torch.Tensor, x_t: torch.Tensor, timesteps: torch.LongTensor) -> torch.Tensor:
        """x̂₀ from the UNet's prediction: (x_t − √(1−ᾱ)·ε̂)/√ᾱ (DDPM Eq. 4 solved for x₀), or √ᾱ·x_t − √(1−ᾱ)·v̂."""
        abar = self._at(self.alphas_cumprod, timesteps)
        if self.prediction_type == "epsilon":
            return (x_t - (1 - abar).sqrt() * prediction) / abar.sqrt()
        return abar.sqrt() * x_t - (1 - abar).sqrt() * prediction

    def prediction_for(self, x0: torch.Tensor, x_t: torch.Tensor, timesteps: torch.LongTensor) -> torch.Tensor:
        """The prediction that `predicted_x0` turns back into `x0` for this x_t (the inverse of `predicted_x0`)."""
        abar = self._at(self.alphas_cumprod, timesteps)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        return eps if self.prediction_type == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * x0

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, timesteps: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self._at(self.posterior_mean_coef_x0, timesteps) * x0 + self._at(self.posterior_mean_coef_xt, timesteps) * x_t
        return mean, self._at(self.posterior_log_variance, timesteps)

    def vlb_bits(self, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, timesteps: torch.LongTensor) -> torch.Tensor:
        """The sampled step's term of L_vlb per image, in bits per dimension: KL(q(x_{t−1}|x_t,x_0) ‖ p(x_{t−1}|x_t))
        for t > 0 and the discretised decoder NLL at t = 0. The mean enters with a stop-gradient (iDDPM §3.1), so
        this term trains only the variance."""
        prediction, v_logits = model_output.float().chunk(2, dim=1)
        x0_pred = self.predicted_x0(prediction.detach(), x_t, timesteps)
        model_mean, _ = self.posterior(x0_pred, x_t, timesteps)
        fraction = (v_logits + 1) / 2  # iDDPM Eq. 15: log Σ = v log β + (1 − v) log β̃
        model_log_variance = fraction * self._at(self.log_betas, timesteps) + (1 - fraction) * self._at(self.posterior_log_variance, timesteps)
        true_mean, true_log_variance = self.posterior(x0, x_t, timesteps)
        kl = normal_kl(true_mean, true_log_variance, model_mean, model_log_variance).flatten(1).mean(1) / math.log(2)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_variance).flatten(1).mean(1) / math.log(2)
        return torch.where(timesteps == 0, nll, kl)


INPAINT_CHANNELS = 4  # the masked image (3) and the mask (1), last among the UNet's inputs

# peft targets for LoRA on the UNet's attention: queries, keys, values and output of the image tokens, and the
# projections that bring the caption into every attention layer.
GLIDE_LORA_TARGET_MODULES = r"unet\..*attentions\.\d+\.(to_q|to_k|to_v|to_out\.0|add_k_proj|add_v_proj)"


class GlidePreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    """Weight init and loading for GLIDE. The UNet keeps diffusers' init; the caption transformer its own."""

    config: GlideConfig
    base_model_prefix = "glide"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["GlideTextBlock"]
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        init_text_weights(module, self.config.text_config.initializer_range)
        if not hasattr(self, "unet"):
            return
        if module is self.unet.conv_out:
            # ADM zero-initialises the output convolution: a fresh model predicts ε = 0 and v = 1/2.
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif module is self.unet.conv_in and self.config.inpaint:
            # §4.3: the masked-image and mask channels start with zero weights, so they begin as no-ops.
            weight = module.weight.clone()
            weight[:, -INPAINT_CHANNELS:] = 0
            init.copy_(module.weight, weight)


class GlideModel(GlidePreTrainedModel):
    """GLIDE's text-conditional diffusion model: `forward(pixel_values, input_ids, attention_mask)` returns the hybrid
    training loss on random timesteps (with caption dropout in training); `denoise(sample, timesteps, ...)` is the
    network a sampling loop calls. Variants by config: base, inpainting (`inpaint=True`: masked image + mask as extra
    input channels), upsampler (`super_res=True`: the upsampled low-resolution image as extra channels)."""

    def __init__(self, config: GlideConfig):
        super().__init__(config)
        self.text_model = GlideTextModel(config.text_config)
        self.unet = glide_unet(config)
        self.diffusion = GlideDiffusion(config.num_train_timesteps, config.noise_schedule, config.prediction_type)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.get_input_embeddings()

    def encode_text(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> BaseModelOutputWithPooling:
        return self.text_model(input_ids, attention_mask)

    def extra_inputs(self, sample: torch.Tensor, low_res: torch.Tensor | None, inpaint_image: torch.Tensor | None,
                     inpaint_mask: torch.Tensor | None) -> torch.Tensor:
        """x_t concatenated with what the variant reads: the low-res image bilinearly upsampled to the sample size
        (upsampler), then the known pixels and the mask (1 = known). The released upsample-inpaint model puts the
        low-res image last; its converter permutes the input convolution's channels to this order."""
        parts = [sample]
        if self.config.super_res:
            if low_res is None:
                raise ValueError("This GLIDE upsampler needs `low_res` images (batch, 3, h, w) in [-1, 1].")
            parts.append(F.interpolate(low_res.to(sample.dtype), size=sample.shape[-2:], mode="bilinear", align_corners=False))
        if self.config.inpaint:
            if inpaint_image is None or inpaint_mask is None:
                raise ValueError("This GLIDE inpainting model needs `inpaint_image` and `inpaint_mask` (1 = known pixel).")
            mask = inpaint_mask.to(sample.dtype)
            parts += [inpaint_image.to(sample.dtype) * mask, mask]
        return torch.cat(parts, dim=1)

    def denoise(self, sample: torch.Tensor, timesteps: torch.Tensor, input_ids: torch.LongTensor,
                attention_mask: torch.Tensor | None = None, low_res: torch.Tensor | None = None,
                inpaint_image: torch.Tensor | None = None, inpaint_mask: torch.Tensor | None = None,
                text_outputs: BaseModelOutputWithPooling | None = None) -> torch.Tensor:
        """The prediction (ε or v, per `config.prediction_type`) and variance logits (batch, 6, H, W) for x_t at
        `timesteps` given the caption (pass `text_outputs` to reuse an encoded caption across sampling steps)."""
        text = text_outputs if text_outputs is not None else self.encode_text(input_ids, attention_mask)
        dtype = self.unet.conv_in.weight.dtype  # not unet.dtype, which walks every module
        hidden = text.last_hidden_state.to(dtype)
        return self.unet(
            self.extra_inputs(to_model_dtype(sample, dtype), low_res, inpaint_image, inpaint_mask),
            timesteps,
            encoder_hidden_states=hidden,
            class_labels=text.pooler_output.to(hidden.dtype),
        ).sample

    def drop_captions(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor) -> tuple[torch.LongTensor, torch.Tensor]:
        """§4.2: replace a `caption_dropout` share of the captions with the empty caption (all padding)."""
        dropped = torch.rand(input_ids.shape[0], device=input_ids.device) < self.config.caption_dropout
        pad = self.config.text_config.pad_token_id
        input_ids = torch.where(dropped[:, None], torch.full_like(input_ids, pad), input_ids)
        return input_ids, attention_mask * ~dropped[:, None]

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        low_res: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
        timesteps: torch.LongTensor | None = None,
        noise: torch.Tensor | None = None,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ) -> GlideOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch, 3, H, W)`): Training images x₀ in [-1, 1]. Here and in
            `low_res` / `inpaint_mask`, NaN, infinite or out-of-range values raise a `ValueError`.
        input_ids / attention_mask (`(batch, text_ctx)`): Captions from the processor (padded, mask 0 where padded).
        low_res (`torch.FloatTensor`, *optional*): Upsampler only: the low-resolution images in [-1, 1].
        inpaint_mask (`torch.FloatTensor` of shape `(batch, 1, H, W)`, *optional*): Inpainting only: 1 where pixels
            are known; the known pixels of `pixel_values` are the model's context. Left out, a random rectangle is
            erased from each image (`random_erase_masks`), as GLIDE trains its inpainting model (§4.3).
        timesteps / noise (*optional*): Fix t and ε instead of sampling them uniformly / from N(0, I).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must have shape (batch, 3, H, W), got {tuple(pixel_values.shape)}.")
        if input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(f"Got {pixel_values.shape[0]} images but {input_ids.shape[0]} captions (batch mismatch): pass one per example.")
        scale = "scale [0, 1] images by x * 2 − 1 (the processor's `images` / `low_res_images` do this)."
        check_float_tensor(pixel_values, "pixel_values")
        check_values(pixel_values, "pixel_values", (-1.0, 1.0), scale)
        if low_res is not None:
            check_values(low_res, "low_res", (-1.0, 1.0), scale)
        if inpaint_mask is not None:
            check_values(inpaint_mask, "inpaint_mask", (0.0, 1.0), "1 marks a known pixel, 0 one to repaint (the "
                         "processor's `mask_images` builds it).")
        batch = pixel_values.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.training and self.config.caption_dropout:
            input_ids, attention_mask = self.drop_captions(input_ids, attention_mask)
        if timesteps is None:
            timesteps = torch.randint(0, self.config.num_train_timesteps, (batch,), device=pixel_values.device)
        noise = torch.randn_like(pixel_values) if noise is None else noise
        if self.config.inpaint and inpaint_mask is None:
            inpaint_mask = random_erase_masks(batch, *pixel_values.shape[-2:], device=pixel_values.device)
        x_t = self.diffusion.add_noise(pixel_values, noise, timesteps)
        model_output = self.denoise(x_t, timesteps, input_ids, attention_mask, low_res, pixel_values, inpaint_mask)
        loss = mse = vlb = None
        if return_loss:
            target = self.diffusion.training_target(pixel_values.float(), noise.float(), timesteps)
            mse = ((model_output[:, :3].float() - target) ** 2).flatten(1).mean(1)
            vlb = self.diffusion.vlb_bits(model_output, pixel_values.float(), x_t.float(), timesteps)
            # iDDPM Eq. 16: L_vlb sums T step terms, so one sampled term enters as λ·T·L_t.
            loss = (mse + self.config.vlb_weight * self.config.num_train_timesteps * vlb).mean()
            mse, vlb = mse.mean(), vlb.mean()
        output = GlideOutput(loss=loss, model_output=model_output, mse=mse, vlb=vlb, timesteps=timesteps)
        return output if return_dict else output.to_tuple()


def inpainting_model_from(base: GlideModel) -> GlideModel:
    """GLIDE §4.3's starting point for inpainting fine-tuning: a copy of a trained text-to-image model with four
    extra input channels (masked image, mask) whose weights are zero, so it first behaves exactly as `base`."""
    if base.config.inpaint:
        raise ValueError("This model already is an inpainting model.")
    model = GlideModel(GlideConfig(**{**base.config.to_dict(), "inpaint": True}))
    state = base.state_dict()
    new_input = model.unet.conv_in.weight.detach().clone()
    new_input[:, :-INPAINT_CHANNELS] = state["unet.conv_in.weight"]
    state["unet.conv_in.weight"] = new_input
    model.load_state_dict(state)
    return model.to(device=base.device, dtype=base.dtype)
