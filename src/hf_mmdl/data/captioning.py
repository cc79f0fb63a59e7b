"""One entry point for image-caption data: the built-in sources or any `datasets` dataset."""

import datasets

from .scenes import load_scene_captions
from .user import UserData, load_user_dataset
from .twemoji import load_twemoji_captions

BUILTIN_CAPTION_SOURCES = {"scenes": load_scene_captions, "twemoji": load_twemoji_captions}


def load_caption_dataset(
    name: str = "scenes",
    image_column: str = "image",
    captions_column: str = "captions",
    **builtin_kwargs,
) -> datasets.DatasetDict:
    """Load image-caption data with `image` and `captions` (a list of references per image) columns.

    `name` is a built-in source (`"scenes"`, `"twemoji"`; `builtin_kwargs` go to its loader), or anything
    `datasets.load_dataset` accepts (a Hub name, or a local `imagefolder` / saved `DatasetDict`), read by the shared
    user-data loader (`load_user_dataset`: val/valid/dev read as validation, nothing written into the folder). A
    dataset with one caption string per row gets it wrapped as a one-reference list. Without a validation or test
    split, 5% of train each is held out (seed 0). Where each split came from: `load_caption_dataset_with_origins`."""
    return load_caption_dataset_with_origins(name, image_column, captions_column, **builtin_kwargs).data


def load_caption_dataset_with_origins(name: str = "scenes", image_column: str = "image", captions_column: str = "captions",
                                      **builtin_kwargs) -> UserData:
    """`load_caption_dataset` and where each split came from (split → text, for results.json)."""
    if name in BUILTIN_CAPTION_SOURCES:
        data = BUILTIN_CAPTION_SOURCES[name](**builtin_kwargs)
        return UserData(data, {split: f"the built-in {name} {split} split" for split in data})
    data, origins = load_user_dataset(name, {image_column: "image", captions_column: "captions"})
    if isinstance(data["train"].features["captions"], datasets.Value):
        # In memory: a map over a save_to_disk folder would write its cache file into the user's folder.
        data = data.map(lambda row: {"captions": [row["captions"]]}, keep_in_memory=True)
    return UserData(data, origins)
