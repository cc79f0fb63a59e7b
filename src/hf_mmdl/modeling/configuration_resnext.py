"""Configuration of a ResNeXt backbone (Xie et al., CVPR 2017) laid out as torchvision's `resnext*` models."""

from transformers import PretrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from .loading import ModelTypeCheckedConfig


class ResNeXtConfig(ModelTypeCheckedConfig, BackboneConfigMixin, PretrainedConfig):
    r"""
    Configuration of [`ResNeXtBackbone`]: a torchvision-style ResNeXt (ResNet v1.5: the stride of a downsampling
    block sits on its grouped 3x3 convolution) usable wherever transformers takes a backbone config
    (`AutoBackbone.from_config`). Defaults are torchvision's `resnext101_32x8d`, the vision encoder of the released
    Vokenizer matcher.

    Args:
        num_channels (`int`): Input image channels.
        embedding_size (`int`): Channels of the stem (7x7 stride-2 convolution, BN, ReLU, 3x3 stride-2 max pool).
        hidden_sizes (`list[int]`): Output channels of each stage (torchvision: 4 x 64 x 2^i).
        depths (`list[int]`): Bottleneck blocks per stage (ResNeXt-101: 3, 4, 23, 3).
        groups (`int`): Cardinality, the groups of every 3x3 convolution (32 in "32x8d").
        width_per_group (`int`): Channels per group in the first stage (8 in "32x8d"); stage i uses
            `groups * width_per_group * 2**i` inner channels (256, 512, 1024, 2048 for 32x8d).
        frozen_batch_norm (`bool`): Use frozen batch normalisation (affine weight and bias and running statistics
            all stored as buffers, never updated, no `num_batches_tracked`), as the released Vokenizer matcher does.
        batch_norm_eps (`float`): Epsilon of every batch normalisation.
        out_features / out_indices: Which of `stem`, `stage1`..`stageN` the backbone returns (default: the last).

    Raises `ValueError` when `hidden_sizes` and `depths` differ in length, or a size is not a positive integer.
    """

    model_type = "hf_mmdl_resnext"

    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list[int] | tuple[int, ...] = (256, 512, 1024, 2048)
    depths: list[int] | tuple[int, ...] = (3, 4, 23, 3)
    groups: int = 32
    width_per_group: int = 8
    frozen_batch_norm: bool = False
    batch_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        self.hidden_sizes, self.depths = list(self.hidden_sizes), list(self.depths)
        if len(self.hidden_sizes) != len(self.depths) or not self.depths:
            raise ValueError(f"hidden_sizes {self.hidden_sizes} and depths {self.depths} must name the same (at least "
                             "one) stages.")
        sizes = dict(num_channels=self.num_channels, embedding_size=self.embedding_size, groups=self.groups,
                     width_per_group=self.width_per_group)
        for name, value in sizes.items() | {f"hidden_sizes[{i}]": v for i, v in enumerate(self.hidden_sizes)}.items() | {
                f"depths[{i}]": v for i, v in enumerate(self.depths)}.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ResNeXtConfig.{name} must be a positive int, got {value!r}.")
        self.stage_names = ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]
        self.set_output_features_output_indices(out_indices=kwargs.pop("out_indices", None),
                                                out_features=kwargs.pop("out_features", None))
        super().__post_init__(**kwargs)

    @property
    def inner_widths(self) -> list[int]:
        """Channels of the grouped 3x3 convolution of each stage."""
        return [self.groups * self.width_per_group * 2**i for i in range(len(self.depths))]


__all__ = ["ResNeXtConfig"]
