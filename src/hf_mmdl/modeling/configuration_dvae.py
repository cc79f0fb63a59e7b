"""Configuration of the DALL-E discrete VAE (Ramesh et al. 2021, §2.1 and Appendix A)."""

from transformers import PretrainedConfig

from .loading import ModelTypeCheckedConfig

# DALL-E's stage-1 geometry: 256×256×3 values per 32×32 token positions (App. A.2 divides the KL by this).
DALLE_VALUES_PER_POSITION = 192


class DiscreteVAEConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`DiscreteVAEModel`]. Defaults are the released openai/DALL-E encoder and decoder (4 groups of
    2 blocks, 256 hidden channels, 8192 codes, 128-d code embeddings: 97.6 M parameters, 256×256 → 32×32 tokens);
    every size can be shrunk for small images.

    Args:
        group_count (`int`): Resolution groups; each but the last is followed by a 2× max-pool (encoder) or nearest
            2× upsampling (decoder), so tokens are 2^(group_count−1) times smaller than the image.
        n_blk_per_group (`int`): Residual blocks per group.
        n_hid (`int`): Width of the first encoder group (doubled per group).
        vocab_size (`int`): K, the number of discrete codes.
        n_init (`int`): Width of the decoder's first 1×1 convolution — the size of each code's embedding.
        in_channels (`int`): Image channels; the decoder emits 2× as many (logit-Laplace μ and ln b).
        logit_laplace_eps (`float`): ε of the pixel map φ(x) = (1 − 2ε)x + ε (App. A.3, Eq. 3).
        kl_weight (`float`): Final β of the KL to the uniform prior (6.6 in the paper).
        scale_kl_weight_with_geometry (`bool`): Multiply β by (values per token position)/192 so that the effective
            per-position KL weight equals DALL-E's 6.6/192 at any downsampling factor (β = 1.65 for 4× tokens on RGB).
            At the released geometry this is exactly 1.
        kl_warmup_steps (`int`): Updates over which β rises 0 → kl_weight on the cosine schedule (5,000).
        temperature_start / temperature_end (`float`): The gumbel-softmax temperature τ falls from start to end
            (1 → 1/16) ...
        temperature_anneal_steps (`int`): ... over this many updates on the cosine schedule (150,000).
    """

    model_type = "dvae"

    group_count: int = 4
    n_blk_per_group: int = 2
    n_hid: int = 256
    vocab_size: int = 8192
    n_init: int = 128
    in_channels: int = 3
    logit_laplace_eps: float = 0.1
    kl_weight: float = 6.6
    scale_kl_weight_with_geometry: bool = True
    kl_warmup_steps: int = 5000
    temperature_start: float = 1.0
    temperature_end: float = 1 / 16
    temperature_anneal_steps: int = 150000

    def __post_init__(self, **kwargs):
        for name in ("group_count", "n_blk_per_group", "n_hid", "vocab_size", "n_init", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}.")
        if self.n_hid % 4:
            raise ValueError(f"n_hid ({self.n_hid}) must be divisible by 4: residual paths are n_out/4 wide.")
        if not 0 < self.logit_laplace_eps < 0.5:
            raise ValueError(f"logit_laplace_eps must lie in (0, 0.5), got {self.logit_laplace_eps}.")
        if not 0 < self.temperature_end <= self.temperature_start:
            raise ValueError(
                f"Need 0 < temperature_end ≤ temperature_start, got {self.temperature_end} and {self.temperature_start}."
            )
        super().__post_init__(**kwargs)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (self.group_count - 1)

    @property
    def num_layers(self) -> int:
        return self.group_count * self.n_blk_per_group

    @property
    def effective_kl_weight(self) -> float:
        if not self.scale_kl_weight_with_geometry:
            return self.kl_weight
        values_per_position = self.in_channels * self.downsampling_factor**2
        return self.kl_weight * values_per_position / DALLE_VALUES_PER_POSITION


DVAE_SIZES = {
    "tiny": dict(group_count=2, n_blk_per_group=1, n_hid=16, vocab_size=64, n_init=16),
    "small": dict(group_count=3, n_blk_per_group=1, n_hid=32, vocab_size=512, n_init=64),
    "released": {},
}


def dvae_config_for(size: str, **overrides) -> DiscreteVAEConfig:
    """Size presets: 'released' (DALL-E's 97.6M-parameter dVAE), 'small' (3 groups, 512 codes: CPU minutes) and
    'tiny' (tests). `overrides` set any other field (channels, KL weight, schedules)."""
    if size not in DVAE_SIZES:
        raise ValueError(f"dVAE model_size must be one of {sorted(DVAE_SIZES)}, got {size!r}.")
    return DiscreteVAEConfig(**(DVAE_SIZES[size] | overrides))
