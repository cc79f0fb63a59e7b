"""Continuous image VAE (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) with β weighting
(Higgins et al. 2017) and KL warm-up (Bowman et al. 2016).

The encoder and decoder are diffusers' VAE blocks under `AutoencoderKL`'s submodule names (`encoder`, `quant_conv`,
`post_quant_conv`, `decoder`), so `AutoencoderKL` checkpoints load 1:1; what is added here is the paper's part: the
ELBO with reparameterisation, a proper likelihood (Gaussian with learned scale, or Bernoulli), an optional vector
latent for sampling and interpolation, and the β / warm-up schedule. "KW n" cites Kingma & Welling's equation n.

Pixel conventions: the model reads images in [-1, 1] (as `AutoencoderKL`, and as the processor prepares them);
everything it hands back as an *image* (`reconstruction`, `reconstruct`, `sample`, `interpolate`) is in [0, 1], ready
for `processor.postprocess`. `decode` returns the raw decoder mean in [-1, 1] like `AutoencoderKL.decode`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import Decoder, DiagonalGaussianDistribution, Encoder
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .configuration_vae import ImageVAEConfig
from .inputs import check_image_batch, check_values, to_model_dtype
from .layers import torch_default_init_
from .loading import CheckedSaveLoadMixin
from .schedules import cosine_ramp

logger = logging.get_logger(__name__)

# LoRA targets for peft: the two 3×3 convolutions of every diffusers ResNet block, encoder and decoder.
VAE_LORA_TARGET_MODULES = ["conv1", "conv2"]

# Images in [-1, 1] hold 256 levels in a width of 2: a density there converts to bits per 8-bit value with +log2(128).
BITS_PER_DIM_OFFSET = math.log2(128)


@dataclass
class ImageVAEEncoderOutput(ModelOutput):
    """q(z|x) for a batch: `latent_dist` is a diffusers `DiagonalGaussianDistribution` (mean/logvar of shape
    (batch, C_z, h, w), or (batch, latent_dim, 1, 1) for a vector latent), as `AutoencoderKL.encode` returns."""

    latent_dist: DiagonalGaussianDistribution | None = None


@dataclass
class ImageVAEDecoderOutput(ModelOutput):
    """p(x|z): `sample` is the decoder's mean image in [-1, 1] (for the Bernoulli likelihood, 2·sigmoid(logits) − 1);
    `logits` the raw decoder output (the Gaussian mean itself, or Bernoulli logits)."""

    sample: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


@dataclass
class ImageVAEOutput(ModelOutput):
    """Output of [`ImageVAEModel`].

    Args:
        loss (`torch.FloatTensor`): Negative β-ELBO per data dimension, mean over the batch: (NLL + β·KL) / D.
        reconstruction (`torch.FloatTensor` of shape `(batch, channels, height, width)`): The decoded image in [0, 1].
        latents (`torch.FloatTensor`): z, the reparameterised sample (KW Eq. 4) or the posterior mean in eval mode.
        latent_mean / latent_logvar (`torch.FloatTensor`): Parameters of q(z|x) = N(μ, diag σ²).
        reconstruction_nll (`torch.FloatTensor` of shape `(batch,)`): −log p(x|z) in nats, summed over pixels.
        kl (`torch.FloatTensor` of shape `(batch,)`): KL(q(z|x) ‖ N(0, I)) in nats (KW Eq. 10).
        kl_weight (`torch.FloatTensor`): β used for this batch (after warm-up).
        bits_per_dim (`torch.FloatTensor` of shape `(batch,)`): −ELBO (at β = 1) in bits per pixel value.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    latent_mean: torch.FloatTensor | None = None
    latent_logvar: torch.FloatTensor | None = None
    reconstruction_nll: torch.FloatTensor | None = None
    kl: torch.FloatTensor | None = None
    kl_weight: torch.FloatTensor | None = None
    bits_per_dim: torch.FloatTensor | None = None


class ImageVAEPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    """Weight init and loading for the image VAE: PyTorch's default init for every layer, as diffusers'
    `AutoencoderKL` gets, so a fresh model matches a fresh `AutoencoderKL` in distribution."""

    config: ImageVAEConfig
    base_model_prefix = "vae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        if torch_default_init_(module):
            return
        if isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ImageVAEModel) and module.log_scale is not None:
            init.constant_(module.log_scale, self.config.init_log_scale)


class ImageVAEModel(ImageVAEPreTrainedModel):
    """A variational autoencoder for images: q(z|x) = N(μ(x), diag σ²(x)) from a convolutional encoder, p(z) = N(0, I),
    and p(x|z) from a convolutional decoder, trained by maximising the (β-weighted) ELBO (KW Eq. 3) with the
    reparameterisation trick (KW Eq. 4) and the analytic Gaussian KL (KW Eq. 10).

    `forward(pixel_values)` returns the loss and reconstruction; `encode`/`decode` follow `AutoencoderKL`;
    `reconstruct`, `sample(n)` and `interpolate(a, b, steps)` return images in [0, 1]. The KL warm-up reads the
    training step set by `set_schedule_step` (a [`StepScheduled`]: the package's `ScheduleStepCallback` does this every
    Trainer step).
    """

    def __init__(self, config: ImageVAEConfig):
        super().__init__(config)
        self.encoder = Encoder(
            in_channels=config.in_channels,
            out_channels=config.latent_channels,
            down_block_types=config.down_block_types,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            act_fn=config.act_fn,
            norm_num_groups=config.norm_num_groups,
            double_z=True,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        self.decoder = Decoder(
            in_channels=config.latent_channels,
            out_channels=config.in_channels,
            up_block_types=config.up_block_types,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=config.norm_num_groups,
            act_fn=config.act_fn,
            mid_block_add_attention=config.mid_block_add_attention,
        )
        moments = 2 * config.latent_channels
        self.quant_conv = nn.Conv2d(moments, moments, 1) if config.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1) if config.use_post_quant_conv else None
        if config.latent_type == "vector":
            spatial = config.latent_channels * config.latent_size**2
            self.to_latent_vector = nn.Linear(2 * spatial, 2 * config.latent_dim)
            self.from_latent_vector = nn.Linear(config.latent_dim, spatial)
        if config.likelihood == "gaussian" and config.gaussian_scale != "fixed":
            shape = (config.in_channels, 1, 1) if config.gaussian_scale == "per_channel" else (1, 1, 1)
            self.log_scale = nn.Parameter(torch.full(shape, config.init_log_scale))
        else:
            self.log_scale = None
        self.schedule_step: int | None = None
        self.post_init()

    def set_schedule_step(self, step: int | None) -> None:
        """Set the training step that drives the KL warm-up (`None`: the end of every schedule, for inference)."""
        self.schedule_step = step

    def current_kl_weight(self) -> float:
        """β after warm-up: a cosine ramp 0 → β over `kl_warmup_steps` (Bowman et al. 2016)."""
        if self.schedule_step is None:
            if self.training and self.config.kl_warmup_steps:
                logger.warning_once(
                    "Training an ImageVAEModel with kl_warmup_steps > 0 but no schedule step: the full β is used. "
                    "Add hf_mmdl.training.ScheduleStepCallback to the Trainer (or call model.set_schedule_step)."
                )
            return self.config.beta
        return cosine_ramp(self.schedule_step, self.config.kl_warmup_steps, 0.0, self.config.beta)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one z: (latent_dim,) or (C_z, h, w) for `sample_size` images."""
        if self.config.latent_type == "vector":
            return (self.config.latent_dim,)
        return (self.config.latent_channels, self.config.latent_size, self.config.latent_size)

    def _check(self, pixel_values: torch.Tensor) -> None:
        """Every pixel entry point reads finite [-1, 1] images of the model's channels (and size, for a vector
        latent): 0–255 floats would give a loss of ~1e6 and meaningless latents."""
        side = self.config.sample_size if self.config.latent_type == "vector" else None
        check_image_batch(
            pixel_values, self.config.in_channels, self.config.downsampling_factor, side, value_range=(-1.0, 1.0),
            hint="scale [0, 1] images by x * 2 − 1 and 0–255 images by x / 127.5 − 1 (the processor does this).",
        )

    def encode(self, pixel_values: torch.Tensor, return_dict: bool = True):
        """q(z|x) as a `DiagonalGaussianDistribution` (KW Eq. 9: the encoder emits μ and log σ²) of finite
        (batch, channels, H, W) images in [-1, 1]; other inputs raise a `ValueError`."""
        self._check(pixel_values)
        dist = self._posterior(pixel_values)
        return ImageVAEEncoderOutput(latent_dist=dist) if return_dict else (dist,)

    def _posterior(self, pixel_values: torch.Tensor) -> DiagonalGaussianDistribution:
        """`encode` without the input check, for `forward`'s dequantised targets (checked before the noise)."""
        moments = self.encoder(to_model_dtype(pixel_values, self.dtype))
        if self.quant_conv is not None:
            moments = self.quant_conv(moments)
        if self.config.latent_type == "vector":
            moments = self.to_latent_vector(moments.flatten(1))[:, :, None, None]
        return DiagonalGaussianDistribution(moments)

    def decode(self, latents: torch.Tensor, return_dict: bool = True):
        """p(x|z): the decoder mean on the [-1, 1] pixel scale (`sample`) and the raw decoder output (`logits`).
        With the Gaussian likelihood the mean is unbounded and can leave [-1, 1]; `reconstruct` maps it to [0, 1] and
        clamps. With the Bernoulli likelihood it is 2·sigmoid(logits) − 1, inside (-1, 1). Latents of the wrong
        shape, NaN or infinite latents raise a `ValueError`."""
        check_values(latents, "latents")
        return self._decode(latents, return_dict)

    def _decode(self, latents: torch.Tensor, return_dict: bool = True):
        """`decode` without the finiteness check, for the latents the model drew or encoded itself."""
        latents = to_model_dtype(latents, self.dtype)
        if self.config.latent_type == "vector":
            latents = latents.reshape(latents.shape[0], -1)
            if latents.shape[1] != self.config.latent_dim:
                raise ValueError(f"Expected latents with {self.config.latent_dim} numbers each, got {latents.shape[1]}.")
            side = self.config.latent_size
            latents = self.from_latent_vector(latents).view(-1, self.config.latent_channels, side, side)
        elif latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"Expected spatial latents of shape (batch, {self.config.latent_channels}, h, w), got {tuple(latents.shape)}."
            )
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        logits = self.decoder(latents)
        sample = 2 * torch.sigmoid(logits) - 1 if self.config.likelihood == "bernoulli" else logits
        return ImageVAEDecoderOutput(sample=sample, logits=logits) if return_dict else (sample, logits)

    def reconstruction_nll(self, pixel_values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """−log p(x|z) per image in nats, summed over every pixel value."""
        if self.config.likelihood == "bernoulli":
            # KW Eq. 11 with targets in [0, 1].
            nll = F.binary_cross_entropy_with_logits(logits.float(), (pixel_values.float() + 1) / 2, reduction="none")
        else:
            # KW Eq. 12: −log N(x; μ, σ²) = ½ log 2π + log σ + (x − μ)² / 2σ².
            log_scale = self.log_scale if self.log_scale is not None else torch.tensor(self.config.init_log_scale)
            log_scale = log_scale.float().to(logits.device)
            nll = 0.5 * math.log(2 * math.pi) + log_scale + 0.5 * ((pixel_values.float() - logits.float()) * torch.exp(-log_scale)) ** 2
        return nll.flatten(1).sum(1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        sample_posterior: bool | None = None,
        generator: torch.Generator | None = None,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ) -> ImageVAEOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch, channels, height, width)`): Images in [-1, 1]; NaN,
            infinite or out-of-range values (e.g. 0–255) raise a `ValueError`.
        sample_posterior (`bool`, *optional*): Decode a reparameterised sample z = μ + σ⊙ε (KW Eq. 4) rather than μ.
            Defaults to `True` in training and `False` in eval mode (deterministic reconstructions); pass `True` in
            eval mode for an unbiased ELBO estimate.
        generator (`torch.Generator`, *optional*): Source of ε.
        return_loss (`bool`): Compute the negative β-ELBO (on by default: it needs only the images).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        sample_posterior = self.training if sample_posterior is None else sample_posterior
        self._check(pixel_values)
        target = pixel_values
        if self.training and self.config.dequantize and self.config.likelihood == "gaussian":
            # Uniform dequantisation of 8-bit data: one level is 2/256 wide in [-1, 1].
            target = pixel_values + torch.rand_like(pixel_values) * (2 / 256)
        posterior = self._posterior(target)
        latents = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        decoded = self._decode(latents)
        reconstruction = ((decoded.sample + 1) / 2).clamp(0, 1)
        loss = nll = kl = bits_per_dim = kl_weight = None
        if return_loss:
            dims = pixel_values[0].numel()
            nll = self.reconstruction_nll(target, decoded.logits)
            kl = posterior.kl().float()  # KW Eq. 10, summed over latent dimensions
            kl_weight = self.current_kl_weight()
            loss = ((nll + kl_weight * kl) / dims).mean()
            offset = BITS_PER_DIM_OFFSET if self.config.likelihood == "gaussian" else 0.0
            bits_per_dim = (nll + kl) / (dims * math.log(2)) + offset
            kl_weight = torch.tensor(kl_weight)
        latents = latents.flatten(1) if self.config.latent_type == "vector" else latents
        mean = posterior.mean.flatten(1) if self.config.latent_type == "vector" else posterior.mean
        logvar = posterior.logvar.flatten(1) if self.config.latent_type == "vector" else posterior.logvar
        output = ImageVAEOutput(
            loss=loss,
            reconstruction=reconstruction,
            latents=latents,
            latent_mean=mean,
            latent_logvar=logvar,
            reconstruction_nll=nll,
            kl=kl,
            kl_weight=kl_weight,
            bits_per_dim=bits_per_dim,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each image (finite, in [-1, 1], as `encode` reads them): reconstructions in
        [0, 1]."""
        decoded = self._decode(self.encode(pixel_values).latent_dist.mode()).sample
        return ((decoded + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def sample(self, num_images: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw z ~ N(0, t²·I) and decode its mean (no pixel noise): `num_images` (an int ≥ 1) images in [0, 1],
        shape (num_images, channels, height, width). A non-integer count raises a `TypeError`, a count below 1 or a
        negative temperature a `ValueError`."""
        if isinstance(num_images, bool) or not isinstance(num_images, int):
            raise TypeError(f"num_images must be an int (how many images to draw), got {num_images!r}.")
        if num_images < 1:
            raise ValueError(f"num_images must be ≥ 1, got {num_images}.")
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}.")
        z = randn_tensor((num_images, *self.latent_shape), generator=generator, device=self.device, dtype=self.dtype)
        return ((self._decode(temperature * z).sample + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def interpolate(self, image_a: torch.Tensor, image_b: torch.Tensor, steps: int = 8, spherical: bool = False) -> torch.Tensor:
        """Decode `steps` points from the posterior mean of `image_a` to that of `image_b` (linearly, or along the
        great circle when `spherical`): images in [0, 1], shape (steps, channels, height, width). Both images are
        (channels, height, width) or (1, channels, height, width) tensors in [-1, 1], checked as `encode` checks."""
        if steps < 2:
            raise ValueError(f"steps must be ≥ 2 (both end points), got {steps}.")
        pair = torch.cat([image_a.reshape(1, *image_a.shape[-3:]), image_b.reshape(1, *image_b.shape[-3:])])
        means = self.encode(pair).latent_dist.mode()
        mu_a, mu_b = means.flatten(1)
        alphas = torch.linspace(0, 1, steps, device=mu_a.device, dtype=mu_a.dtype)[:, None]
        if spherical:
            cos = F.cosine_similarity(mu_a, mu_b, dim=0).clamp(-1 + 1e-7, 1 - 1e-7)
            omega = torch.acos(cos)
            path = (torch.sin((1 - alphas) * omega) * mu_a + torch.sin(alphas * omega) * mu_b) / torch.sin(omega)
        else:
            path = (1 - alphas) * mu_a + alphas * mu_b
        latents = path.view(steps, *means.shape[1:])
        return ((self._decode(latents).sample + 1) / 2).clamp(0, 1)


def convert_autoencoder_kl(autoencoder_kl) -> ImageVAEModel:
    """An `ImageVAEModel` holding the weights of a diffusers `AutoencoderKL` (same submodule names, spatial latent,
    Gaussian likelihood): `encode(x).latent_dist` and `decode(z).sample` match the original's."""
    source = autoencoder_kl.config
    config = ImageVAEConfig(
        in_channels=source.in_channels,
        down_block_types=tuple(source.down_block_types),
        up_block_types=tuple(source.up_block_types),
        block_out_channels=tuple(source.block_out_channels),
        layers_per_block=source.layers_per_block,
        act_fn=source.act_fn,
        latent_channels=source.latent_channels,
        norm_num_groups=source.norm_num_groups,
        sample_size=source.sample_size if isinstance(source.sample_size, int) else source.sample_size[0],
        mid_block_add_attention=source.mid_block_add_attention,
        use_quant_conv=source.use_quant_conv,
        use_post_quant_conv=source.use_post_quant_conv,
        scaling_factor=source.scaling_factor,
        latent_type="spatial",
        likelihood="gaussian",
    )
    if source.in_channels != source.out_channels:
        raise ValueError(
            f"AutoencoderKL with in_channels={source.in_channels} != out_channels={source.out_channels} cannot be "
            "an image autoencoder of one data space."
        )
    model = ImageVAEModel(config)
    state = dict(autoencoder_kl.state_dict())
    if model.log_scale is not None:
        state["log_scale"] = model.log_scale.detach().clone()
    model.load_state_dict(state, strict=True)
    return model.eval()
