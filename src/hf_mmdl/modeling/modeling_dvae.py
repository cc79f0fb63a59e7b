"""The DALL-E discrete VAE (Ramesh et al., "Zero-Shot Text-to-Image Generation", ICML 2021, §2.1 and Appendix A).

An encoder turns an image into a grid of logits over K codes; during training a gumbel-softmax relaxation (soft in
both passes, not straight-through) of those logits feeds the decoder, whose 1×1 input convolution is the codebook; at
test time the tokens are the argmax. The objective is DALL-E's Eq. 1 for stage 1: a logit-Laplace likelihood
(App. A.3, Eq. 2) on pixels mapped into (ε, 1 − ε) (Eq. 3) minus β times the KL to a uniform prior over codes, with
τ and β on cosine schedules driven by the training step (App. A.2). The architecture is the released one
(openai/DALL-E `dall_e/encoder.py`, `decoder.py`), sizes configurable.
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput
from transformers.utils import logging

from .configuration_dvae import DiscreteVAEConfig
from .inputs import check_image_batch, map_pixels, to_model_dtype, unmap_pixels
from .loading import CheckedSaveLoadMixin
from .schedules import cosine_ramp

logger = logging.get_logger(__name__)

# LoRA targets for peft (a regex): the four convolutions of every residual path, encoder and decoder. The codebook
# (decoder input) and the logit convolutions stay frozen, so adapted models keep the same token vocabulary.
DVAE_LORA_TARGET_MODULES = r".*res_path\.conv_\d"


def logit_laplace_nll(target: torch.Tensor, mu: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Eq. 2 as a negative log-density per value: ln 2 + ln b + ln x + ln(1 − x) + |logit x − μ| / b."""
    target, mu, log_b = target.float(), mu.float(), log_b.float()
    return (
        math.log(2) + log_b + torch.log(target) + torch.log1p(-target)
        + (torch.logit(target) - mu).abs() * torch.exp(-log_b)
    )


def kl_to_uniform_prior(logits: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ uniform over K) per position, Σ_k q_k ln q_k + ln K, from the noise-free softmax over dim 1."""
    log_q = F.log_softmax(logits.float(), dim=1)
    return (log_q.exp() * log_q).sum(1) + math.log(logits.shape[1])


def gumbel_softmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """softmax((ℓ + g)/τ) over dim 1 with g = −ln(−ln u), u ~ U(0, 1): the relaxed one-hot, soft in both passes."""
    # Drawn on the generator's device, so a CPU generator gives the same noise on any device.
    device = generator.device if generator is not None else logits.device
    uniform = torch.rand(logits.shape, generator=generator, device=device, dtype=torch.float32).to(logits.device)
    gumbel = -torch.log((-torch.log(uniform.clamp_min(1e-10))).clamp_min(1e-10))
    return F.softmax((logits.float() + gumbel) / temperature, dim=1).to(logits.dtype)


@dataclass
class DiscreteVAEOutput(ModelOutput):
    """Output of [`DiscreteVAEModel`].

    Args:
        loss (`torch.FloatTensor`): (NLL + β·KL) / D, the negative stage-1 objective per pixel value (App. A.2),
            mean over the batch.
        reconstruction (`torch.FloatTensor` of shape `(batch, channels, height, width)`): unmap(sigmoid(μ)) in [0, 1].
        logits (`torch.FloatTensor` of shape `(batch, vocab_size, height/f, width/f)`): The encoder's code logits.
        codebook_indices (`torch.LongTensor` of shape `(batch, height/f, width/f)`): argmax tokens.
        decoder_output (`torch.FloatTensor` of shape `(batch, 2·channels, height, width)`): μ and ln b of the
            logit-Laplace likelihood.
        reconstruction_nll (`torch.FloatTensor` of shape `(batch,)`): −ln p(x|z) in nats, summed over values.
        kl (`torch.FloatTensor` of shape `(batch,)`): KL to the uniform prior in nats, summed over positions.
        kl_weight (`torch.FloatTensor`): β used for this batch.
        temperature (`torch.FloatTensor`): τ used for this batch.
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    codebook_indices: torch.LongTensor | None = None
    decoder_output: torch.FloatTensor | None = None
    reconstruction_nll: torch.FloatTensor | None = None
    kl: torch.FloatTensor | None = None
    kl_weight: torch.FloatTensor | None = None
    temperature: torch.FloatTensor | None = None


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)


class DiscreteVAEBlock(GradientCheckpointingLayer):
    """The released residual block: id_path(x) + post_gain · res_path(x), where res_path is four (ReLU, conv) pairs
    of width n_out/4 and post_gain = 1/n_layers² (§2.1: "resblock outputs scaled by a small constant"); no
    normalisation. Encoder kernels are 3,3,3,1 and decoder kernels 1,3,3,3."""

    def __init__(self, n_in: int, n_out: int, num_layers: int, kernel_sizes: tuple[int, int, int, int]):
        super().__init__()
        hidden = n_out // 4
        self.post_gain = 1 / num_layers**2
        self.id_path = _conv(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = (n_in, hidden, hidden, hidden, n_out)
        layers = []
        for i, kernel_size in enumerate(kernel_sizes):
            layers += [(f"relu_{i + 1}", nn.ReLU()), (f"conv_{i + 1}", _conv(widths[i], widths[i + 1], kernel_size))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.id_path(hidden_states) + self.post_gain * self.res_path(hidden_states)


def _group(widths: tuple[int, int], config: DiscreteVAEConfig, kernel_sizes, resample: nn.Module | None) -> nn.Sequential:
    n_in, n_out = widths
    blocks = [
        (f"block_{i + 1}", DiscreteVAEBlock(n_in if i == 0 else n_out, n_out, config.num_layers, kernel_sizes))
        for i in range(config.n_blk_per_group)
    ]
    if resample is not None:
        blocks.append(("upsample" if isinstance(resample, nn.Upsample) else "pool", resample))
    return nn.Sequential(OrderedDict(blocks))


class DiscreteVAEEncoder(nn.Module):
    """7×7 input conv, `group_count` groups of widths n_hid·2^(g−1) with a 2× max-pool after all but the last, then
    ReLU and a 1×1 conv to the `vocab_size` code logits (the 1×1 conv next to the relaxation, §2.1)."""

    def __init__(self, config: DiscreteVAEConfig):
        super().__init__()
        widths = [config.n_hid * 2**g for g in range(config.group_count)]
        layers = [("input", _conv(config.in_channels, config.n_hid, 7))]
        for g, width in enumerate(widths):
            n_in = widths[g - 1] if g else config.n_hid
            pool = nn.MaxPool2d(kernel_size=2) if g < config.group_count - 1 else None
            layers.append((f"group_{g + 1}", _group((n_in, width), config, (3, 3, 3, 1), pool)))
        layers.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", _conv(widths[-1], config.vocab_size, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(layers))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.blocks(pixel_values)


class DiscreteVAEDecoder(nn.Module):
    """A 1×1 conv from the K-way (relaxed) one-hot to n_init channels — the codebook of K embeddings — then
    `group_count` groups of widths n_hid·2^(G−g) with nearest 2× upsampling after all but the last, then ReLU and a
    1×1 conv to 2·channels outputs: the logit-Laplace μ and ln b."""

    def __init__(self, config: DiscreteVAEConfig):
        super().__init__()
        widths = [config.n_hid * 2 ** (config.group_count - 1 - g) for g in range(config.group_count)]
        layers = [("input", _conv(config.vocab_size, config.n_init, 1))]
        for g, width in enumerate(widths):
            n_in = widths[g - 1] if g else config.n_init
            upsample = nn.Upsample(scale_factor=2, mode="nearest") if g < config.group_count - 1 else None
            layers.append((f"group_{g + 1}", _group((n_in, width), config, (1, 3, 3, 3), upsample)))
        layers.append(("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", _conv(widths[-1], 2 * config.in_channels, 1))]))))
        self.blocks = nn.Sequential(OrderedDict(layers))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """`codes`: a (relaxed) one-hot of shape (batch, vocab_size, h, w)."""
        return self.blocks(codes)

    def embed_indices(self, indices: torch.LongTensor) -> torch.Tensor:
        """The input conv applied to a one-hot of `indices`, as an embedding lookup (same numbers, no K-wide tensor)."""
        codebook = self.blocks.input.weight[:, :, 0, 0].t()
        return (F.embedding(indices, codebook) + self.blocks.input.bias).permute(0, 3, 1, 2)

    def decode_indices(self, indices: torch.LongTensor) -> torch.Tensor:
        return self.blocks[1:](self.embed_indices(indices))


class DiscreteVAEPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    """Weight init and loading for the dVAE: like the released `Conv2d`, weights ~ N(0, 1/(in·k²)) and zero biases."""

    config: DiscreteVAEConfig
    base_model_prefix = "dvae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["DiscreteVAEBlock"]
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            init.normal_(module.weight, std=1 / math.sqrt(module.weight[0].numel()))
            init.zeros_(module.bias)


class DiscreteVAEModel(DiscreteVAEPreTrainedModel):
    """The DALL-E dVAE: images → a grid of discrete tokens → images.

    Training (`forward` with `pixel_values` mapped by the processor into (ε, 1 − ε)): the relaxed stage-1 objective.
    Inference: `get_codebook_indices(pixel_values)` (argmax, no noise) and `decode_code(indices)` → images in [0, 1].
    τ and β follow the step set by `set_schedule_step` (a [`StepScheduled`]: the package's `ScheduleStepCallback` does
    this every Trainer step); with no step set, the end of both schedules is used.
    """

    def __init__(self, config: DiscreteVAEConfig):
        super().__init__(config)
        self.encoder = DiscreteVAEEncoder(config)
        self.decoder = DiscreteVAEDecoder(config)
        self.schedule_step: int | None = None
        self.post_init()

    def set_schedule_step(self, step: int | None) -> None:
        """Set the training step that drives τ and β (`None`: the end of both schedules, for inference)."""
        self.schedule_step = step

    def _warn_if_unscheduled(self) -> None:
        if self.schedule_step is None and self.training:
            logger.warning_once(
                "Training a DiscreteVAEModel without a schedule step: τ and β sit at their final values from the "
                "first update. Add hf_mmdl.training.ScheduleStepCallback to the Trainer (or call "
                "model.set_schedule_step)."
            )

    def current_temperature(self) -> float:
        """Gumbel-softmax τ: cosine from `temperature_start` to `temperature_end` over `temperature_anneal_steps`."""
        self._warn_if_unscheduled()
        config = self.config
        step = config.temperature_anneal_steps if self.schedule_step is None else self.schedule_step
        return cosine_ramp(step, config.temperature_anneal_steps, config.temperature_start, config.temperature_end)

    def current_kl_weight(self) -> float:
        """β: cosine from 0 to the (geometry-scaled) `kl_weight` over `kl_warmup_steps`."""
        step = self.config.kl_warmup_steps if self.schedule_step is None else self.schedule_step
        return cosine_ramp(step, self.config.kl_warmup_steps, 0.0, self.config.effective_kl_weight)

    def map_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return map_pixels(images, self.config.logit_laplace_eps)

    def unmap_pixels(self, mapped: torch.Tensor) -> torch.Tensor:
        return unmap_pixels(mapped, self.config.logit_laplace_eps)

    def _check(self, pixel_values: torch.Tensor) -> None:
        """Every pixel entry point reads mapped pixels in [ε, 1 − ε]: the logit-Laplace likelihood needs values
        strictly inside (0, 1), and the encoder was trained on that range only."""
        eps = self.config.logit_laplace_eps
        check_image_batch(
            pixel_values, self.config.in_channels, self.config.downsampling_factor, value_range=(eps, 1 - eps),
            hint="map [0, 1] images with `model.map_pixels` (the processor does this when do_map_pixels=True).",
        )

    def _to_image(self, decoder_output: torch.Tensor) -> torch.Tensor:
        return self.unmap_pixels(torch.sigmoid(decoder_output[:, : self.config.in_channels].float()))

    @torch.no_grad()
    def get_codebook_indices(self, pixel_values: torch.Tensor) -> torch.LongTensor:
        """Tokens of mapped images (in [ε, 1 − ε], as `forward` reads them; other values, NaN included, raise a
        `ValueError`): the argmax code at each position, no gumbel noise (§2.2). Shape (batch, h, w)."""
        self._check(pixel_values)
        return self.encoder(to_model_dtype(pixel_values, self.dtype)).argmax(1)

    @torch.no_grad()
    def decode_code(self, indices: torch.LongTensor) -> torch.Tensor:
        """Images in [0, 1] of shape (batch, channels, h·f, w·f) from a (batch, h, w) grid of token ids (f = the
        downsampling factor). Raises a `ValueError` for another shape or dtype, an empty grid, or ids outside the
        codebook."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 3 or indices.dtype not in (torch.int32, torch.int64):
            got = f"{indices.dtype} {tuple(indices.shape)}" if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"indices must be an integer tensor of shape (batch, h, w), got {got}.")
        if 0 in indices.shape:
            raise ValueError(
                f"indices has shape {tuple(indices.shape)}: decode_code needs at least one image of at least 1×1 tokens "
                "(e.g. the (batch, h, w) grid that get_codebook_indices returns)."
            )
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.config.vocab_size):
            raise ValueError(
                f"Token ids must lie in [0, {self.config.vocab_size}), got [{indices.min()}, {indices.max()}]."
            )
        return self._to_image(self.decoder.decode_indices(indices.long()))

    @torch.no_grad()
    def reconstruct(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Hard reconstruction through the argmax tokens, in [0, 1]."""
        return self.decode_code(self.get_codebook_indices(pixel_values))

    def forward(
        self,
        pixel_values: torch.Tensor,
        relaxed: bool | None = None,
        generator: torch.Generator | None = None,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ) -> DiscreteVAEOutput | tuple:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch, channels, height, width)`): Images mapped into
            [ε, 1 − ε] by `map_pixels` (the processor does this); unmapped or non-finite values raise a `ValueError`.
        relaxed (`bool`, *optional*): Decode a gumbel-softmax sample at the current τ (the training objective) rather
            than the argmax one-hot. Defaults to `True` in training and `False` in eval mode.
        generator (`torch.Generator`, *optional*): Source of the gumbel noise.
        return_loss (`bool`): Compute the objective (on by default: it needs only the images).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        relaxed = self.training if relaxed is None else relaxed
        self._check(pixel_values)
        logits = self.encoder(to_model_dtype(pixel_values, self.dtype))
        temperature = self.current_temperature()
        if relaxed:
            codes = gumbel_softmax(logits, temperature, generator)
        else:
            codes = F.one_hot(logits.argmax(1), self.config.vocab_size).permute(0, 3, 1, 2).to(logits.dtype)
        decoder_output = self.decoder(codes)
        loss = nll = kl = kl_weight = None
        if return_loss:
            channels = self.config.in_channels
            mu, log_b = decoder_output[:, :channels], decoder_output[:, channels:]
            nll = logit_laplace_nll(pixel_values, mu, log_b).flatten(1).sum(1)
            kl = kl_to_uniform_prior(logits).flatten(1).sum(1)
            kl_weight = self.current_kl_weight()
            # App. A.2: both terms summed, then divided by the number of pixel values D.
            loss = ((nll + kl_weight * kl) / pixel_values[0].numel()).mean()
            kl_weight = torch.tensor(kl_weight)
        output = DiscreteVAEOutput(
            loss=loss,
            reconstruction=self._to_image(decoder_output),
            logits=logits,
            codebook_indices=logits.argmax(1),
            decoder_output=decoder_output,
            reconstruction_nll=nll,
            kl=kl,
            kl_weight=kl_weight,
            temperature=torch.tensor(temperature),
        )
        return output if return_dict else output.to_tuple()
