"""Built-in data that needs no download: generated captioned scenes and Twemoji images with their names."""

from .captioning import load_caption_dataset
from .regions import RegionCaptionCollator, RegionFeatureFile
from .scenes import SceneObject, describe_scene, generate_scene, load_scene_captions, render_scene
from .twemoji import TWEMOJI_CREDIT, load_twemoji_captions

__all__ = [
    "RegionCaptionCollator",
    "RegionFeatureFile",
    "SceneObject",
    "TWEMOJI_CREDIT",
    "describe_scene",
    "generate_scene",
    "load_caption_dataset",
    "load_scene_captions",
    "load_twemoji_captions",
    "render_scene",
]
