"""Configuration of the multimodal VAE: one Gaussian latent shared by images, captions and (optionally) spoken
captions, with per-modality
encoders fused by a product of experts (MVAE, Wu & Goodman, "Multimodal Generative Models for Scalable
Weakly-Supervised Learning", NeurIPS 2018) or a mixture of experts (MMVAE, Shi, Siddharth, Paige & Torr, "Variational
Mixture-of-Experts Autoencoders for Multi-Modal Deep Generative Models", NeurIPS 2019)."""

from transformers import PretrainedConfig

from .loading import ModelTypeCheckedConfig

FUSIONS = ("poe", "moe")
MULTIMODAL_VAE_MODALITIES = ("image", "text", "audio")


class MultimodalVAEConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`MultimodalVAEModel`]. The defaults are a small model for 32 x 32 scenes with short captions.

    Args:
        image_size (`int`): Side of the square images the model reads and writes.
        in_channels (`int`): Image channels (3 for RGB).
        image_block_out_channels (`tuple[int]`): Widths of the image encoder's levels (diffusers' VAE blocks, as in
            [`ImageVAEModel`]); every level but the last halves the resolution. The decoder mirrors them.
        image_layers_per_block (`int`): ResNet blocks per level (the decoder uses one more, as `AutoencoderKL`).
        image_norm_num_groups (`int`): GroupNorm groups; must divide every image width.
        image_latent_channels (`int`): Channels of the image encoder's spatial moments before they are flattened
            into the shared vector latent.
        act_fn (`str`): Activation of the image ResNet blocks.
        init_log_scale (`float`): Initial ln σ of the Gaussian image likelihood (learned per channel), in the
            model's [-1, 1] pixel units.
        vocab_size (`int`): Caption vocabulary (the processor's tokenizer).
        max_text_length (`int`): Most caption tokens (without <bos>/<eos>) the text encoder and decoder take.
        hidden_size, num_text_layers, num_attention_heads, intermediate_size: the caption Transformers (the encoder
            and the autoregressive decoder each have `num_text_layers` pre-LN blocks).
        pad_token_id, bos_token_id, eos_token_id (`int`): The tokenizer's special tokens (<pad>, <bos>, <eos>).
        latent_dim (`int`): Size of the shared Gaussian latent z.
        fusion (`str`): How the unimodal posteriors q(z|x_m) combine. `"poe"`: a product of Gaussian experts with
            the prior N(0, I) as one more expert (MVAE §3.1); `"moe"`: the uniform mixture (1/M) Σ_m q(z|x_m)
            (MMVAE §3).
        audio_modality (`bool`): Add the audio modality: an encoder of log-mel frames (the processor's
            `input_features`) as a third expert and a decoder of them with a Gaussian likelihood. Off by default, so
            that image + caption models (and configs saved before audio existed) load and behave as before.
        audio_num_mel_bins, audio_num_frames (`int`): Shape (mel bins, frames) of the log-mel features the audio
            encoder reads and the decoder writes (the processor's feature extractor fixes both:
            `MultimodalVAEProcessor.config_kwargs`); frames must be divisible by 2**`audio_num_layers`.
        audio_hidden_size (`int`), audio_num_layers (`int`): Width and number of the stride-2 1-D convolutions over
            time of the audio encoder (the decoder mirrors them with transposed convolutions).
        image_weight, text_weight, audio_weight (`float`): λ_m, the weights of each modality's log-likelihood in the ELBO (MVAE
            §3.2 weights its terms so that a 3,072-value image does not drown an 8-word caption).
        beta (`float`): Weight of the KL term (β-VAE, Higgins et al. 2017); 1 gives the ELBO.
        kl_warmup_steps (`int`): Training steps over which the KL weight rises 0 → β on a cosine ramp (Bowman et al.
            2016); 0 disables warm-up.
        subsampled_elbo (`bool`): With PoE fusion, add to the joint ELBO the ELBO of every other non-empty subset of
            the present modalities (each subset's posterior reconstructing its own modalities): MVAE's sub-sampled
            training (§3.2), which trains every encoder and combination to stand alone so that any modality may be
            missing at test time. With two modalities these are the two unimodal terms; with three, the three
            unimodal and three pairwise ones. (MoE fusion always reconstructs every modality from every unimodal
            sample.)
    """

    model_type = "multimodal_vae"
    # transformers' generation sizes the caption decoder's KV cache by `num_hidden_layers`.
    attribute_map = {"num_hidden_layers": "num_text_layers"}

    image_size: int = 32
    in_channels: int = 3
    image_block_out_channels: tuple[int, ...] | list[int] = (16, 32, 64)
    image_layers_per_block: int = 1
    image_norm_num_groups: int = 8
    image_latent_channels: int = 4
    act_fn: str = "silu"
    init_log_scale: float = -2.0
    vocab_size: int = 32
    max_text_length: int = 16
    hidden_size: int = 64
    num_text_layers: int = 1
    num_attention_heads: int = 4
    intermediate_size: int = 128
    pad_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    latent_dim: int = 16
    fusion: str = "poe"
    audio_modality: bool = False
    audio_num_mel_bins: int = 32
    audio_num_frames: int = 96
    audio_hidden_size: int = 64
    audio_num_layers: int = 3
    image_weight: float = 1.0
    text_weight: float = 50.0
    audio_weight: float = 0.05
    beta: float = 1.0
    kl_warmup_steps: int = 0
    subsampled_elbo: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.image_block_out_channels = tuple(self.image_block_out_channels)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS} (product or mixture of experts), got {self.fusion!r}.")
        if any(width % self.image_norm_num_groups for width in self.image_block_out_channels):
            raise ValueError(f"image_norm_num_groups ({self.image_norm_num_groups}) must divide every "
                             f"image_block_out_channels entry {self.image_block_out_channels}.")
        if self.image_layers_per_block < 1:
            raise ValueError(f"image_layers_per_block must be ≥ 1, got {self.image_layers_per_block}.")
        if self.image_size % self.downsampling_factor:
            raise ValueError(f"image_size ({self.image_size}) must be divisible by the downsampling factor "
                             f"{self.downsampling_factor} (2 per image level after the first).")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads}).")
        for name in ("latent_dim", "vocab_size", "max_text_length", "num_text_layers", "audio_num_mel_bins",
                     "audio_num_frames", "audio_hidden_size", "audio_num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is None or not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} must be a token id in [0, vocab_size={self.vocab_size}), got {value}: build "
                                 "the config from the processor's tokenizer (`MultimodalVAEProcessor.config_kwargs`).")
        if self.audio_num_frames % 2**self.audio_num_layers:
            raise ValueError(f"audio_num_frames ({self.audio_num_frames}) must be divisible by 2**audio_num_layers "
                             f"({2**self.audio_num_layers}): each audio layer halves the frames.")
        if min(self.image_weight, self.text_weight, self.audio_weight, self.beta) < 0 or self.kl_warmup_steps < 0:
            raise ValueError("image_weight, text_weight, audio_weight, beta and kl_warmup_steps must be ≥ 0, got "
                             f"{self.image_weight}, {self.text_weight}, {self.audio_weight}, {self.beta} and "
                             f"{self.kl_warmup_steps}.")
        super().__post_init__(**kwargs)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.image_block_out_channels) - 1)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this model reads and writes, in the order of its experts."""
        return MULTIMODAL_VAE_MODALITIES if self.audio_modality else MULTIMODAL_VAE_MODALITIES[:2]

    @property
    def latent_side(self) -> int:
        """Side of the image encoder's spatial moments for an `image_size` image."""
        return self.image_size // self.downsampling_factor


# (image widths, GroupNorm groups, text width, text blocks, latent size) of the size presets.
MULTIMODAL_VAE_SIZES = {"tiny": ((8, 16), 8, 32, 1, 8), "small": ((16, 32), 8, 64, 1, 16)}


def multimodal_vae_config_for(size: str, **overrides) -> MultimodalVAEConfig:
    """Size presets: 'small' (two image levels of 16 and 32 channels, a 64-wide caption Transformer, a 16-number
    latent: learns the built-in 16 px attribute scenes and captions on one CPU core in about two minutes) and 'tiny'
    (tests). `overrides` set any other field (image side, vocabulary, fusion, weights)."""
    if size not in MULTIMODAL_VAE_SIZES:
        raise ValueError(f"multimodal VAE model_size must be one of {sorted(MULTIMODAL_VAE_SIZES)}, got {size!r}.")
    widths, groups, hidden, layers, latent = MULTIMODAL_VAE_SIZES[size]
    settings = dict(image_block_out_channels=widths, image_norm_num_groups=groups, hidden_size=hidden,
                    intermediate_size=2 * hidden, num_text_layers=layers, latent_dim=latent)
    return MultimodalVAEConfig(**(settings | overrides))
