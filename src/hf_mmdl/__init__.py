"""hf_mmdl: landmark multimodal architectures as first-class HuggingFace models.

Importing the package registers every configuration, model and processor with transformers' Auto classes, so
`AutoConfig`, `AutoModel`, the task Auto classes (`AutoModelForImageTextToText`, `AutoModelForImageToImage`),
`AutoImageProcessor`, `AutoProcessor` and `pipeline(...)` load saved folders.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoModelForImageToImage,
    AutoProcessor,
)

from .modeling import (
    DiscreteVAEConfig,
    DiscreteVAEModel,
    GlideConfig,
    GlideModel,
    GlideTextConfig,
    GlideTextModel,
    ImageVAEConfig,
    ImageVAEModel,
    M2Config,
    M2ForConditionalGeneration,
    M2Model,
)
from .processing import (
    DiscreteVAEImageProcessor,
    GlideImageProcessor,
    GlideProcessor,
    ImageVAEImageProcessor,
    M2ImageProcessor,
    M2Processor,
)

__version__ = "0.1.0"

# (config, bare model, {Auto task class: head model}, image processor, processor); later architectures add a row.
# The autoencoders' processor *is* their image processor, which AutoProcessor finds on its own.
_REGISTRY = [
    (M2Config, M2Model, {AutoModelForImageTextToText: M2ForConditionalGeneration}, M2ImageProcessor, M2Processor),
    (ImageVAEConfig, ImageVAEModel, {AutoModelForImageToImage: ImageVAEModel}, ImageVAEImageProcessor, None),
    (DiscreteVAEConfig, DiscreteVAEModel, {AutoModelForImageToImage: DiscreteVAEModel}, DiscreteVAEImageProcessor, None),
    (GlideTextConfig, GlideTextModel, {}, None, None),
    (GlideConfig, GlideModel, {}, GlideImageProcessor, GlideProcessor),
]


def _register_with_auto_classes() -> None:
    for config, base_model, task_models, image_processor, processor in _REGISTRY:
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModel.register(config, base_model, exist_ok=True)
        for auto_class, model in task_models.items():
            auto_class.register(config, model, exist_ok=True)
        if image_processor is not None:
            AutoImageProcessor.register(config, image_processor_classes={"pil": image_processor}, exist_ok=True)
        if processor is not None:
            AutoProcessor.register(config, processor, exist_ok=True)


_register_with_auto_classes()

MODEL_TYPES = tuple(row[0].model_type for row in _REGISTRY)

__all__ = [
    "DiscreteVAEConfig",
    "DiscreteVAEImageProcessor",
    "DiscreteVAEModel",
    "GlideConfig",
    "GlideImageProcessor",
    "GlideModel",
    "GlideProcessor",
    "GlideTextConfig",
    "GlideTextModel",
    "ImageVAEConfig",
    "ImageVAEImageProcessor",
    "ImageVAEModel",
    "M2Config",
    "M2ForConditionalGeneration",
    "M2ImageProcessor",
    "M2Model",
    "M2Processor",
    "MODEL_TYPES",
]
