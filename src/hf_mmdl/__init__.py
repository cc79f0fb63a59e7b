"""hf_mmdl: landmark multimodal architectures as first-class HuggingFace models.

Importing the package registers every architecture's configurations, models and processors (as declared in
`hf_mmdl.architectures`) with transformers' Auto classes, so `AutoConfig`, `AutoModel`, the task Auto classes
(`AutoModelForImageTextToText`, `AutoModelForImageToImage`), `AutoImageProcessor`, `AutoProcessor` and
`pipeline(...)` load saved folders, and exposes the diffusers pipelines to `DiffusionPipeline.from_pretrained`. Every declared class is importable from here (`from hf_mmdl import M2Config,
GlidePipeline`), diffusers pipelines included.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

__version__ = "0.1.0"  # setup.py reads it from here

from .architectures import ARCHITECTURES  # noqa: E402


def _register_with_auto_classes() -> None:
    for architecture in ARCHITECTURES.values():
        for entry in architecture.auto:
            AutoConfig.register(entry.config.model_type, entry.config, exist_ok=True)
            if entry.model is not None:
                AutoModel.register(entry.config, entry.model, exist_ok=True)
            for auto_class, model in entry.task_models.items():
                auto_class.register(entry.config, model, exist_ok=True)
            if entry.image_processor is not None:
                AutoImageProcessor.register(entry.config, image_processor_classes={"pil": entry.image_processor},
                                            exist_ok=True)
            if entry.processor is not None:
                AutoProcessor.register(entry.config, entry.processor, exist_ok=True)


def _register_pipelines_with_diffusers() -> None:
    # `DiffusionPipeline.from_pretrained(folder)` reads `_class_name` from model_index.json and looks the class up
    # as an attribute of the `diffusers` module (diffusers has no registry for outside pipelines); exposing the
    # package's pipelines there lets diffusers' generic loader load their folders once `hf_mmdl` is imported,
    # without `trust_remote_code` or code files in the folder.
    import diffusers

    for architecture in ARCHITECTURES.values():
        for pipeline_class in architecture.pipelines:
            existing = diffusers.__dict__.get(pipeline_class.__name__)
            if existing is not None and existing is not pipeline_class:
                raise RuntimeError(f"diffusers already defines {pipeline_class.__name__}; rename the hf_mmdl pipeline.")
            setattr(diffusers, pipeline_class.__name__, pipeline_class)


def _declared_classes() -> dict[str, type]:
    classes = {}
    for architecture in ARCHITECTURES.values():
        for entry in architecture.auto:
            declared = (entry.config, entry.model, *entry.task_models.values(), entry.image_processor, entry.processor)
            classes.update({cls.__name__: cls for cls in declared if cls is not None})
        classes.update({cls.__name__: cls for cls in architecture.pipelines})
    return classes


_register_with_auto_classes()
_register_pipelines_with_diffusers()
globals().update(_declared_classes())

MODEL_TYPES = tuple(model_type for architecture in ARCHITECTURES.values() for model_type in architecture.model_types)

__all__ = ["ARCHITECTURES", "MODEL_TYPES", *sorted(_declared_classes())]
