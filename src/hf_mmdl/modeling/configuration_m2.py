"""Configuration of the M² meshed-memory transformer (Cornia et al., CVPR 2020)."""

from transformers import AutoConfig, PretrainedConfig, ResNetConfig
from transformers.configuration_utils import SubConfigSpec

from .loading import ModelTypeCheckedConfig

REGION_MASK_MODES = ("correct", "legacy")
POSITION_TABLE_INITS = ("sinusoidal", "xavier")


class M2Config(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`M2Model`] / [`M2ForConditionalGeneration`]. Defaults reproduce the paper's captioner
    (d=512, 8 heads, 3 encoder and 3 decoder layers, 40 memory slots, 2048-d detector regions).

    Args:
        vocab_size (`int`): Size of the word vocabulary (10,201 for the released COCO model).
        d_model (`int`): Width of every layer.
        num_attention_heads (`int`): Heads of every attention (d_k = d_v = d_model / heads).
        d_ff (`int`): Inner width of the position-wise feed-forward layers (Eq. 4).
        encoder_layers (`int`): N, the number of memory-augmented encoder layers; the meshed decoder reads all N
            levels, with one sigmoid gate each (Eq. 8).
        decoder_layers (`int`): Number of meshed decoder layers.
        memory_slots (`int`): n_m, the learnable key/value slots of each encoder attention (Eq. 3).
        dropout (`float`): Dropout on residual branches and the region projection (no attention-probability dropout).
        layer_norm_eps (`float`): LayerNorm epsilon.
        region_feature_dim (`int`): Width of precomputed region features (2048 for bottom-up-attention detectors).
        max_regions (`int`): Regions kept per image by the processor (the original code keeps 50).
        max_position_embeddings (`int`): Longest caption (in tokens, <bos> included) the position table covers.
        region_mask_mode (`str`): `"correct"` masks padded regions from the processor's mask (or all-zero raw
            features); `"legacy"` reproduces the original code, which tests the *projected* features for zero and so
            in practice masks nothing. Converted original checkpoints use `"legacy"`.
        position_table_init (`str`): How a fresh model fills its frozen word-position table: `"sinusoidal"`, or
            `"xavier"` as the original code did by accident (its global Xavier init overwrote the sinusoids). A loaded
            checkpoint always keeps the saved table.
        backbone_config (`dict` or `PretrainedConfig`, *optional*): A transformers backbone config (e.g. a
            `ResNetConfig` with `out_features=["stage4"]`) to caption raw images through grid features. `None`
            builds a region-feature-only model.
        grid_position_embeddings (`bool`): Add a learned embedding per grid cell to backbone features. Detector
            regions carry no position in M², but grid cells have no identity without one, so spatial relations
            become learnable.
        init_std (`float`): Unused by M²'s own Xavier init; kept for transformers' generic initialisers.
        use_cache (`bool`): Return a key/value cache from forward passes by default.
    """

    model_type = "m2_transformer"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="resnet", optional=True),
    }
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "decoder_layers"}

    vocab_size: int = 10201
    d_model: int = 512
    num_attention_heads: int = 8
    d_ff: int = 2048
    encoder_layers: int = 3
    decoder_layers: int = 3
    memory_slots: int = 40
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    region_feature_dim: int = 2048
    max_regions: int = 50
    max_position_embeddings: int = 54
    region_mask_mode: str = "correct"
    position_table_init: str = "sinusoidal"
    backbone_config: dict | PretrainedConfig | None = None
    grid_position_embeddings: bool = True
    init_std: float = 0.02
    unk_token_id: int = 0
    pad_token_id: int | None = 1
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    decoder_start_token_id: int | None = 2
    is_encoder_decoder: bool = True
    tie_word_embeddings: bool = False
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        if self.d_model % self.num_attention_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_attention_heads ({self.num_attention_heads})."
            )
        if self.region_mask_mode not in REGION_MASK_MODES:
            raise ValueError(f"region_mask_mode must be one of {REGION_MASK_MODES}, got {self.region_mask_mode!r}.")
        if self.position_table_init not in POSITION_TABLE_INITS:
            raise ValueError(
                f"position_table_init must be one of {POSITION_TABLE_INITS}, got {self.position_table_init!r}."
            )
        super().__post_init__(**kwargs)


M2_SIZES = ("tiny", "small", "paper")


def m2_config_for(size: str, vocab_size: int, image_size: int, tokenizer, backbone_config: PretrainedConfig | None = None,
                  grid_cells: int | None = None) -> M2Config:
    """Size presets: 'paper' (2048-d detector regions, the paper's widths), 'small' (a 3-stage ResNet grid backbone
    and d = 128: learns the built-in scenes on 2 CPU cores in minutes) and 'tiny' (tests). Vocabulary size, special
    token ids and the caption length come from `tokenizer`; grid presets read (image_size / 8)² backbone cells. A given
    `backbone_config` (a pretrained backbone's, for a grid preset) replaces the preset's ResNet, reading `grid_cells`
    cells (its last feature map's h·w at `image_size`)."""
    if size not in M2_SIZES:
        raise ValueError(f"model_size must be one of {M2_SIZES}, got {size!r}.")
    special = dict(
        vocab_size=vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        unk_token_id=tokenizer.unk_token_id,
        max_position_embeddings=tokenizer.model_max_length,
    )
    if size == "paper":
        if backbone_config is not None:
            raise ValueError("model_size 'paper' reads 2048-d detector regions; a backbone needs a grid size "
                             "('small' or 'tiny').")
        return M2Config(**special)
    widths = {"small": (32, 64, 128), "tiny": (8, 16, 32)}[size]
    if backbone_config is not None:
        if grid_cells is None:
            raise ValueError("A given backbone_config needs grid_cells, the number of cells its last feature map has.")
        backbone, cells = backbone_config, grid_cells
    else:
        backbone = ResNetConfig(
            embedding_size=widths[0], hidden_sizes=list(widths), depths=[1, 1, 1], layer_type="basic", out_features=["stage2"]
        )
        cells = (image_size // 8) ** 2  # stem /4, then stage2 /2
    dims = dict(small=dict(d_model=128, num_attention_heads=4, d_ff=512, memory_slots=16, dropout=0.1),
                tiny=dict(d_model=32, num_attention_heads=4, d_ff=64, memory_slots=4, dropout=0.0))[size]
    return M2Config(**dims, **special, backbone_config=backbone, max_regions=cells)
