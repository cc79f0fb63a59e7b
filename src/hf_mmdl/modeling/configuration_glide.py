"""Configuration of GLIDE (Nichol et al., "GLIDE: Towards Photorealistic Image Generation and Editing with
Text-Guided Diffusion Models", ICML 2022): its caption transformer and its text-conditional ADM UNet."""

from transformers import PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .loading import ModelTypeCheckedConfig

NOISE_SCHEDULES = ("squaredcos_cap_v2", "linear")
PREDICTION_TYPES = ("epsilon", "v_prediction")


class GlideTextConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`GlideTextModel`], GLIDE's caption encoder. Defaults are the released (filtered) model: GPT-2
    BPE vocabulary, 128 tokens, 16 pre-LN blocks of width 512 with 8 heads.

    Args:
        vocab_size (`int`): Token vocabulary (50,257 for GPT-2 BPE).
        text_ctx (`int`): K, the fixed number of caption positions; shorter captions are padded.
        width (`int`): Width of the transformer (`xf_width`).
        num_layers (`int`): Transformer blocks (`xf_layers`).
        num_attention_heads (`int`): Heads of every block (`xf_heads`).
        final_layer_norm (`bool`): A LayerNorm after the last block (`xf_final_ln`).
        padding_embedding (`bool`): Replace padded positions with a learned per-position embedding (`xf_padding`).
        layer_norm_eps (`float`): LayerNorm epsilon.
        initializer_range (`float`): Std of the normal init of embeddings and linear layers.
    """

    model_type = "glide_text"
    base_config_key = "text_config"

    vocab_size: int = 50257
    text_ctx: int = 128
    width: int = 512
    num_layers: int = 16
    num_attention_heads: int = 8
    final_layer_norm: bool = True
    padding_embedding: bool = True
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    pad_token_id: int | None = 50256

    def __post_init__(self, **kwargs):
        if self.width % self.num_attention_heads:
            raise ValueError(f"width ({self.width}) must be divisible by num_attention_heads ({self.num_attention_heads}).")
        super().__post_init__(**kwargs)


class GlideConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`GlideModel`]: a caption transformer (`text_config`) and an ADM UNet (built from diffusers'
    `UNet2DConditionModel` blocks) that predicts ε and a learned variance for x_t given the caption. Defaults are the
    released 64×64 base model (192 channels, multipliers 1,2,3,4, 3 res blocks, attention at 32/16/8, 64 channels per
    head, cosine schedule over 1,000 steps).

    Args:
        text_config (`GlideTextConfig` or `dict`): The caption transformer.
        image_size (`int`): Side of the generated images.
        model_channels (`int`): C, the width of the first UNet level.
        channel_mult (`tuple[int]`): Width multiplier of each level.
        num_res_blocks (`int`): ResBlocks per level.
        attention_resolutions (`tuple[int]`): Feature-map sides at which blocks attend to themselves and the caption.
        num_head_channels (`int`): Width of each attention head.
        dropout (`float`): Dropout inside the ResBlocks.
        inpaint (`bool`): Add 4 input channels (masked image, mask) for editing (§4.3).
        super_res (`bool`): Add 3 input channels (the upsampled low-resolution image) for the upsampler.
        upsample_factor (`int`): Upsampler only: the low-resolution input is `image_size / upsample_factor` wide
            (GLIDE: 64 → 256, factor 4).
        num_train_timesteps (`int`): T of the diffusion.
        noise_schedule (`str`): `"squaredcos_cap_v2"` (cosine, iDDPM Eq. 17; base) or `"linear"` (upsampler).
        prediction_type (`str`): What the UNet's first three output channels predict: `"epsilon"`, the noise ε
            (GLIDE, and every released checkpoint), or `"v_prediction"`, v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022,
            §4). L_simple is the MSE of that prediction. With ε, an x₀ error δ costs SNR·δ², next to nothing at high
            noise, where the cosine schedule's first sampling steps decide background and layout; v weighs it by
            SNR + 1, which a small model trained briefly needs (README: GLIDE, measured).
        vlb_weight (`float`): λ of the hybrid loss L_simple + λ·L_vlb (iDDPM Eq. 16).
        caption_dropout (`float`): Share of training captions replaced by the empty caption, for classifier-free
            guidance (§4.2).
    """

    model_type = "glide"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=GlideTextConfig)}

    text_config: dict | PretrainedConfig | None = None
    image_size: int = 64
    model_channels: int = 192
    channel_mult: tuple[int, ...] | list[int] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] | list[int] = (32, 16, 8)
    num_head_channels: int = 64
    dropout: float = 0.1
    inpaint: bool = False
    super_res: bool = False
    upsample_factor: int = 4
    num_train_timesteps: int = 1000
    noise_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    vlb_weight: float = 0.001
    caption_dropout: float = 0.2

    def __post_init__(self, **kwargs):
        self.channel_mult = tuple(self.channel_mult)
        self.attention_resolutions = tuple(self.attention_resolutions)
        if self.noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {self.noise_schedule!r}.")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}.")
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(
                f"image_size ({self.image_size}) must be divisible by 2^{len(self.channel_mult) - 1} for "
                f"{len(self.channel_mult)} levels."
            )
        if any((self.model_channels * mult) % self.num_head_channels for mult in self.channel_mult):
            raise ValueError(
                f"Every level width (model_channels × channel_mult) must be divisible by num_head_channels "
                f"({self.num_head_channels})."
            )
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"caption_dropout must lie in [0, 1), got {self.caption_dropout}.")
        super().__post_init__(**kwargs)

    @property
    def in_channels(self) -> int:
        """x_t, plus the upsampled low-resolution image (upsampler), plus masked image and mask (inpainting)."""
        return 3 + 3 * self.super_res + 4 * self.inpaint


# (text transformer, UNet widths, attention at image_size / d for d in ...) of the size presets.
GLIDE_SIZES = {
    "small": (dict(width=128, num_layers=2, num_attention_heads=4), dict(model_channels=32, channel_mult=(1, 2, 2)), (4,)),
    "small-deep": (dict(width=128, num_layers=2, num_attention_heads=4), dict(model_channels=32, channel_mult=(1, 2, 2, 2)),
                   (4, 8)),
    "tiny": (dict(width=32, num_layers=1, num_attention_heads=2), dict(model_channels=32, channel_mult=(1, 2)), (2,)),
}


def glide_config_for(size: str, vocab_size: int, pad_token_id: int, image_size: int, text_ctx: int = 12,
                     prediction_type: str = "epsilon") -> GlideConfig:
    """Size presets for small captions and images: 'small' (C 32, channel mult (1, 2, 2), one res block, attention at
    image_size / 4 and the middle, a 128-wide 2-layer caption transformer: learns the built-in scenes on CPU),
    'small-deep' (one more level: attention at image_size / 4 and / 8 as well; with ε it did not learn position
    either, which v-prediction, not depth, fixed — README: GLIDE, measured) and 'tiny' (tests). The released sizes
    come with their checkpoints (`hf-mmdl convert glide`)."""
    if size not in GLIDE_SIZES:
        raise ValueError(f"model_size must be one of {sorted(GLIDE_SIZES)}, got {size!r}.")
    text, unet, attention_downsampling = GLIDE_SIZES[size]
    text_config = GlideTextConfig(vocab_size=vocab_size, text_ctx=text_ctx, pad_token_id=pad_token_id, **text)
    return GlideConfig(text_config=text_config, image_size=image_size, num_res_blocks=1,
                       attention_resolutions=tuple(image_size // d for d in attention_downsampling),
                       num_head_channels=32, dropout=0.0, prediction_type=prediction_type, **unet)
