"""Built-in data that needs no download: generated captioned scenes, Twemoji images with their names, MNIST digits."""

from .captioning import load_caption_dataset
from .images import BUILTIN_IMAGE_SETS, load_image_dataset, mnist_images
from .regions import RegionCaptionCollator, RegionFeatureFile
from .scenes import SceneObject, describe_scene, generate_scene, load_scene_captions, render_scene
from .twemoji import TWEMOJI_CREDIT, load_twemoji_captions

__all__ = [
    "BUILTIN_IMAGE_SETS",
    "RegionCaptionCollator",
    "RegionFeatureFile",
    "SceneObject",
    "TWEMOJI_CREDIT",
    "describe_scene",
    "generate_scene",
    "load_caption_dataset",
    "load_image_dataset",
    "load_scene_captions",
    "load_twemoji_captions",
    "mnist_images",
    "render_scene",
]
