"""Built-in data that needs no download: generated captioned scenes, Twemoji images with their names, MNIST digits,
and tri-modal (image, caption, spoken caption) sets of both."""

from .captioning import load_caption_dataset, load_caption_dataset_with_origins
from .images import BUILTIN_IMAGE_SETS, load_image_dataset, mnist_images
from .regions import RegionCaptionCollator, RegionFeatureFile
from .scenes import SceneObject, describe_scene, generate_scene, load_scene_captions, render_scene
from .speech import SAMPLING_RATE, synthesize_speech
from .trimodal import (
    BUILTIN_TRIMODAL_SETS,
    SCENE_CONCEPTS,
    load_trimodal_dataset,
    load_trimodal_scenes,
    load_trimodal_twemoji,
    load_user_trimodal_dataset,
)
from .twemoji import TWEMOJI_CREDIT, load_twemoji_captions
from .user import HELD_OUT_HELP, UserData, load_user_dataset

__all__ = [
    "BUILTIN_IMAGE_SETS",
    "BUILTIN_TRIMODAL_SETS",
    "HELD_OUT_HELP",
    "RegionCaptionCollator",
    "RegionFeatureFile",
    "SAMPLING_RATE",
    "SCENE_CONCEPTS",
    "SceneObject",
    "TWEMOJI_CREDIT",
    "UserData",
    "describe_scene",
    "generate_scene",
    "load_caption_dataset",
    "load_caption_dataset_with_origins",
    "load_image_dataset",
    "load_scene_captions",
    "load_trimodal_dataset",
    "load_trimodal_scenes",
    "load_trimodal_twemoji",
    "load_twemoji_captions",
    "load_user_dataset",
    "load_user_trimodal_dataset",
    "mnist_images",
    "render_scene",
    "synthesize_speech",
]
