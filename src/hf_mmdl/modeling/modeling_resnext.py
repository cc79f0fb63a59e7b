"""A ResNeXt backbone (Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017) in
transformers' Backbone API, with torchvision's parameter names (`conv1`, `bn1`, `layer1`..`layer4`, each block's
`conv1/2/3`, `bn1/2/3` and `downsample.0/.1`), so that a torchvision `resnext*` state dict (without `fc`) loads
unrenamed. transformers' ResNet has no grouped convolutions, hence this model."""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput
from transformers.utils.generic import can_return_tuple

from .configuration_resnext import ResNeXtConfig
from .inputs import check_float_tensor, check_values
from .loading import CheckedSaveLoadMixin


class FrozenBatchNorm2d(nn.Module):
    """Batch normalisation with fixed statistics and affine parameters, all four stored as buffers (so no optimiser
    or `requires_grad_` ever changes them, and `train()` does not either): y = (x − mean) / √(var + eps) · w + b."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def batch_norm(config: ResNeXtConfig, channels: int) -> nn.Module:
    if config.frozen_batch_norm:
        return FrozenBatchNorm2d(channels, eps=config.batch_norm_eps)
    return nn.BatchNorm2d(channels, eps=config.batch_norm_eps)


class ResNeXtBottleneck(GradientCheckpointingLayer):
    """1x1 → grouped 3x3 (with the block's stride) → 1x1, each followed by BN; ReLU; identity or 1x1 + BN shortcut."""

    def __init__(self, config: ResNeXtConfig, in_channels: int, width: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = batch_norm(config, width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=config.groups, bias=False)
        self.bn2 = batch_norm(config, width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = batch_norm(config, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            batch_norm(config, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNeXtPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    config: ResNeXtConfig
    base_model_prefix = "resnext"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ResNeXtBottleneck"]

    @torch.no_grad()
    def _init_weights(self, module):
        # torchvision's init: Kaiming-normal (fan_out) convolutions, unit BN scale, zero BN shift.
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            module.weight.fill_(1)
            module.bias.zero_()
            module.running_mean.zero_()
            module.running_var.fill_(1)
            if getattr(module, "num_batches_tracked", None) is not None:
                module.num_batches_tracked.zero_()


class ResNeXtBackbone(BackboneMixin, ResNeXtPreTrainedModel):
    """The ResNeXt feature extractor: `forward(pixel_values)` returns a `BackboneOutput` whose `feature_maps` are the
    configured `out_features` among `stem` (after the max pool, stride 4) and `stage1`..`stageN` (strides 4, 8, 16,
    32), each (batch, channels, height, width). `pixel_values` must be a finite float (batch, num_channels, H, W)
    tensor, else a `ValueError`/`TypeError` naming it."""

    has_attentions = False

    def __init__(self, config: ResNeXtConfig):
        super().__init__(config)
        self.num_features = [config.embedding_size, *config.hidden_sizes]
        self.conv1 = nn.Conv2d(config.num_channels, config.embedding_size, 7, stride=2, padding=3, bias=False)
        self.bn1 = batch_norm(config, config.embedding_size)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = config.embedding_size
        for stage, (width, out_channels, depth) in enumerate(zip(config.inner_widths, config.hidden_sizes, config.depths)):
            blocks = [ResNeXtBottleneck(config, in_channels if block == 0 else out_channels, width, out_channels,
                                        stride=2 if stage > 0 and block == 0 else 1) for block in range(depth)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            in_channels = out_channels
        self.post_init()

    @can_return_tuple
    @filter_output_hidden_states
    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> BackboneOutput:
        check_float_tensor(pixel_values, "pixel_values", ndim=4)
        if pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} channels but this backbone reads "
                             f"{self.config.num_channels}.")
        check_values(pixel_values, "pixel_values")
        hidden = self.maxpool(self.relu(self.bn1(self.conv1(pixel_values))))
        hidden_states = [hidden]
        for stage in range(1, len(self.config.depths) + 1):
            hidden = getattr(self, f"layer{stage}")(hidden)
            hidden_states.append(hidden)
        feature_maps = tuple(h for h, name in zip(hidden_states, self.stage_names) if name in self.out_features)
        return BackboneOutput(feature_maps=feature_maps, hidden_states=tuple(hidden_states), attentions=None)


__all__ = ["FrozenBatchNorm2d", "ResNeXtBackbone", "ResNeXtPreTrainedModel"]
