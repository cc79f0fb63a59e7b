"""Configuration of the continuous image VAE (Kingma & Welling 2014; β-VAE, Higgins et al. 2017)."""

from transformers import PretrainedConfig

from .loading import ModelTypeCheckedConfig

LATENT_TYPES = ("spatial", "vector")
LIKELIHOODS = ("gaussian", "bernoulli")
GAUSSIAN_SCALES = ("per_channel", "scalar", "fixed")


class ImageVAEConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`ImageVAEModel`]. The encoder and decoder are diffusers' VAE `Encoder`/`Decoder` with
    `AutoencoderKL`'s arguments, so an `AutoencoderKL` config maps field by field (`convert_autoencoder_kl`); the
    defaults are a small 32×32 model.

    Args:
        in_channels (`int`): Image channels (3 for RGB, 1 for grey images such as MNIST).
        down_block_types / up_block_types (`tuple[str]`): diffusers block names, one per resolution level.
        block_out_channels (`tuple[int]`): Width of each level; every level but the last halves the resolution.
        layers_per_block (`int`): ResNet blocks per level (the decoder uses one more, as in `AutoencoderKL`).
        act_fn (`str`): Activation of the ResNet blocks.
        latent_channels (`int`): Channels of the spatial latent (`AutoencoderKL`'s C_z).
        norm_num_groups (`int`): GroupNorm groups; must divide every entry of `block_out_channels`.
        sample_size (`int`): Training image side; fixes the flattened size of a vector latent.
        mid_block_add_attention (`bool`): Self-attention in the middle block, as `AutoencoderKL`.
        use_quant_conv / use_post_quant_conv (`bool`): The 1×1 convolutions around the latent.
        scaling_factor (`float`): `AutoencoderKL`'s latent scale for diffusion models (stored, not used here).
        latent_type (`str`): `"spatial"` — z has shape (C_z, H/f, W/f) like `AutoencoderKL`; `"vector"` — the spatial
            moments are flattened into a Linear layer giving a z of `latent_dim` numbers (better for sampling and
            interpolation at small sizes).
        latent_dim (`int`): Size of a vector latent.
        likelihood (`str`): p(x|z): `"gaussian"` (KW Eq. 12, mean from the decoder, learned log σ) or `"bernoulli"`
            (KW Eq. 11, decoder logits; a true likelihood only for binary images).
        gaussian_scale (`str`): σ of the Gaussian likelihood: learned `"per_channel"`, learned `"scalar"`, or
            `"fixed"` at `init_log_scale`.
        init_log_scale (`float`): Initial (or fixed) ln σ, in the model's [-1, 1] pixel units.
        beta (`float`): Weight of the KL term (β-VAE); 1 gives the ELBO.
        kl_warmup_steps (`int`): Training steps over which the KL weight rises from 0 to `beta` on a cosine ramp
            (KL annealing, Bowman et al. 2016); 0 disables warm-up.
        dequantize (`bool`): Add uniform noise u/256 (in pixel units) to training images under the Gaussian likelihood,
            so that the ELBO bounds the likelihood of 8-bit data and bits/dim are meaningful.
    """

    model_type = "image_vae"

    in_channels: int = 3
    down_block_types: tuple[str, ...] | list[str] = ("DownEncoderBlock2D",) * 3
    up_block_types: tuple[str, ...] | list[str] = ("UpDecoderBlock2D",) * 3
    block_out_channels: tuple[int, ...] | list[int] = (32, 64, 64)
    layers_per_block: int = 1
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 16
    sample_size: int = 32
    mid_block_add_attention: bool = False
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    scaling_factor: float = 0.18215
    latent_type: str = "vector"
    latent_dim: int = 32
    likelihood: str = "gaussian"
    gaussian_scale: str = "per_channel"
    init_log_scale: float = -2.0
    beta: float = 1.0
    kl_warmup_steps: int = 0
    dequantize: bool = True

    def __post_init__(self, **kwargs):
        self.down_block_types, self.up_block_types = tuple(self.down_block_types), tuple(self.up_block_types)
        self.block_out_channels = tuple(self.block_out_channels)
        if not len(self.down_block_types) == len(self.up_block_types) == len(self.block_out_channels):
            raise ValueError(
                "down_block_types, up_block_types and block_out_channels need one entry per resolution level; got "
                f"{len(self.down_block_types)}, {len(self.up_block_types)} and {len(self.block_out_channels)}."
            )
        if self.layers_per_block < 1:
            raise ValueError(f"layers_per_block must be ≥ 1 (diffusers' blocks need one ResNet), got {self.layers_per_block}.")
        if any(width % self.norm_num_groups for width in self.block_out_channels):
            raise ValueError(
                f"norm_num_groups ({self.norm_num_groups}) must divide every block_out_channels entry "
                f"{self.block_out_channels}."
            )
        for name, value, allowed in (
            ("latent_type", self.latent_type, LATENT_TYPES),
            ("likelihood", self.likelihood, LIKELIHOODS),
            ("gaussian_scale", self.gaussian_scale, GAUSSIAN_SCALES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if self.sample_size % self.downsampling_factor:
            raise ValueError(
                f"sample_size ({self.sample_size}) must be divisible by the downsampling factor "
                f"{self.downsampling_factor} (2 per level after the first)."
            )
        if self.beta < 0 or self.kl_warmup_steps < 0:
            raise ValueError(f"beta and kl_warmup_steps must be ≥ 0, got {self.beta} and {self.kl_warmup_steps}.")
        super().__post_init__(**kwargs)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the spatial latent for a `sample_size` image."""
        return self.sample_size // self.downsampling_factor


# (encoder/decoder block widths, GroupNorm groups) of the size presets.
IMAGE_VAE_SIZES = {"tiny": ((8, 16), 8), "small": ((16, 32, 64), 8)}


def image_vae_config_for(size: str, **overrides) -> ImageVAEConfig:
    """Size presets: 'small' (3 levels, 16-64 channels: learns 32 px digits on 2 CPU cores in minutes) and 'tiny'
    (tests). `overrides` set any other field (channels, image size, latent, likelihood, β, warm-up)."""
    if size not in IMAGE_VAE_SIZES:
        raise ValueError(f"VAE model_size must be one of {sorted(IMAGE_VAE_SIZES)}, got {size!r}.")
    blocks, groups = IMAGE_VAE_SIZES[size]
    return ImageVAEConfig(
        block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        norm_num_groups=groups,
        **overrides,
    )
