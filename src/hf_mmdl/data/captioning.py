"""One entry point for image-caption data: the built-in sources or any `datasets` dataset."""

import datasets

from .scenes import load_scene_captions
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
    `datasets.load_dataset` accepts (a Hub name, or a local folder / saved `DatasetDict`). A dataset with one caption
    string per row gets it wrapped as a one-reference list. Without a validation or test split, 5% of train each is
    held out (seed 0)."""
    if name in BUILTIN_CAPTION_SOURCES:
        return BUILTIN_CAPTION_SOURCES[name](**builtin_kwargs)
    try:
        data = datasets.load_from_disk(name)
    except (FileNotFoundError, ValueError):
        data = datasets.load_dataset(name)
    if isinstance(data, datasets.Dataset):
        data = datasets.DatasetDict({"train": data})
    missing = {image_column, captions_column} - set(data["train"].column_names)
    if missing:
        raise ValueError(
            f"Dataset {name!r} lacks the column(s) {sorted(missing)} (it has {data['train'].column_names}); "
            "pass --image_column / --captions_column naming its image and caption columns."
        )
    data = data.rename_columns({c: t for c, t in ((image_column, "image"), (captions_column, "captions")) if c != t})
    if isinstance(data["train"].features["captions"], datasets.Value):
        data = data.map(lambda row: {"captions": [row["captions"]]})
    if "test" not in data:
        held_out = data["train"].train_test_split(test_size=0.05, seed=0)
        data["train"], data["test"] = held_out["train"], held_out["test"]
    if "validation" not in data:
        held_out = data["train"].train_test_split(test_size=0.05, seed=0)
        data["train"], data["validation"] = held_out["train"], held_out["test"]
    return data
