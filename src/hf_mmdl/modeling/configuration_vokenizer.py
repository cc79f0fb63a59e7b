"""Configuration of the Vokenizer matcher (Tan & Bansal, "Vokenization: Improving Language Understanding with
Contextualized, Visual-Grounded Supervision", EMNLP 2020)."""

from transformers import AutoConfig, BertConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .configuration_resnext import ResNeXtConfig
from .loading import ModelTypeCheckedConfig

LOSS_TYPES = ("paired", "batchwise")


class VokenizerConfig(ModelTypeCheckedConfig, PretrainedConfig):
    r"""
    Configuration of [`VokenizerModel`], the contextual token-to-image matcher. Defaults are the released matcher
    (`coco_hinge05_dim64_resxt101_bertl4`): a frozen `bert-base-uncased`, its last 4 layers concatenated, a frozen
    torchvision ResNeXt-101 32x8d with frozen batch norm, 256-wide MLPs into a 64-d joint space, margin 0.5.

    Args:
        text_config (`BertConfig` or `dict`): The token encoder (a BERT).
        vision_config (`PretrainedConfig` or `dict`): Any transformers backbone config (`ResNetConfig`,
            `ConvNextConfig`, the package's `ResNeXtConfig` = model_type `hf_mmdl_resnext`, ...); the image feature is
            the global average of its last feature map. Default: ResNeXt-101 32x8d with frozen batch norm.
        lang_layers (`list[int]`): Which hidden states of the BERT are concatenated per token, as indices into its
            `num_hidden_layers + 1` hidden states (0 = embeddings, -1 = last layer); the released matcher uses
            [-4, -3, -2, -1].
        mlp_hidden_size (`int`): Width of both MLPs' hidden layer (Linear, ReLU, Dropout, Linear).
        joint_dim (`int`): Size of the unit-length keys of tokens and images.
        dropout (`float`): Dropout of both MLPs.
        margin (`float`): M of the hinge loss, > 0.
        loss_type (`str`): `"paired"` (the released code's negatives: the other half of the batch; even batches) or
            `"batchwise"` (every other image of the batch).
        freeze_text_backbone, freeze_vision_backbone (`bool`): Keep that encoder fixed (no gradients, always in eval
            mode: no dropout, batch-norm statistics untouched), as the released matcher does.
        initializer_range (`float`): Std of the MLPs' initial weights.

    Raises `ValueError` for an unknown `loss_type`, a margin ≤ 0, a dropout outside [0, 1), non-positive sizes,
    `lang_layers` that are empty, repeated or outside the BERT's hidden states, and a `vision_config` that is not a
    backbone config.
    """

    model_type = "vokenizer"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=BertConfig),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type=ResNeXtConfig.model_type),
    }

    text_config: dict | PretrainedConfig | None = None
    vision_config: dict | PretrainedConfig | None = None
    lang_layers: list[int] | tuple[int, ...] = (-4, -3, -2, -1)
    mlp_hidden_size: int = 256
    joint_dim: int = 64
    dropout: float = 0.3
    margin: float = 0.5
    loss_type: str = "paired"
    freeze_text_backbone: bool = True
    freeze_vision_backbone: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.vision_config is None:
            self.vision_config = ResNeXtConfig(frozen_batch_norm=True)
        self.lang_layers = list(self.lang_layers)
        super().__post_init__(**kwargs)
        self._check()

    def _check(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0 (the released matcher uses 0.5), got {self.margin}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}.")
        for name in ("mlp_hidden_size", "joint_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")
        states = self.text_config.num_hidden_layers + 1
        if not self.lang_layers or any(isinstance(i, bool) or not isinstance(i, int) or not -states <= i < states
                                       for i in self.lang_layers):
            raise ValueError(f"lang_layers must be a non-empty list of indices into the BERT's {states} hidden states "
                             f"(-{states}..{states - 1}; -1 = last layer), got {self.lang_layers}.")
        if len({i % states for i in self.lang_layers}) != len(self.lang_layers):
            raise ValueError(f"lang_layers name one hidden state twice: {self.lang_layers}.")
        if not hasattr(self.vision_config, "out_features") or not getattr(self.vision_config, "stage_names", None):
            raise ValueError(f"vision_config must be a transformers backbone config (ResNetConfig, ConvNextConfig, "
                             f"ResNeXtConfig, ...), got a {type(self.vision_config).__name__}.")


__all__ = ["VokenizerConfig"]
