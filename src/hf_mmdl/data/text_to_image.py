"""Captioned one-object scenes for text-to-image training, and the deterministic analyser that scores generated
images: which colour the object has and where it is.

Each image holds one shape (circle, square or triangle) of one of the six scene colours in one of four quadrants,
on the scenes' dark background; its caption names all three ("a red circle in the top left"). Reading a generated
image back needs no network: the background is the border's median colour, the object is every pixel far from it,
its colour the nearest palette colour of their mean, its position the quadrant of their centroid.
"""

import random

import datasets
import numpy as np
import PIL.Image
import PIL.ImageDraw

from .scenes import BACKGROUND, COLOURS, SceneObject, draw_object

PROMPT_SHAPES = ("circle", "square", "triangle")
POSITIONS = {"top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75), "bottom right": (0.75, 0.75)}
FOREGROUND_DISTANCE = 120  # L1 distance in 0-255 RGB from the background colour


def scene_caption(shape: str, colour: str, position: str) -> str:
    return f"a {colour} {shape} in the {position}"


def render_prompt_scene(shape: str, colour: str, position: str, image_size: int = 32) -> PIL.Image.Image:
    """One `colour` `shape` of side 0.4·image_size centred in the `position` quadrant."""
    image = PIL.Image.new("RGB", (image_size, image_size), BACKGROUND)
    side = round(0.4 * image_size)
    cx, cy = (round(f * image_size) for f in POSITIONS[position])
    box = (cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side)
    draw_object(PIL.ImageDraw.Draw(image), SceneObject(shape, colour, "large", box))
    return image


def load_text_to_image_scenes(num_train: int = 4000, num_validation: int = 200, image_size: int = 32,
                              seed: int = 0) -> datasets.DatasetDict:
    """`train` / `validation` rows of image, caption, shape, colour and position, drawn uniformly at random."""
    rng = random.Random(seed)

    def row():
        shape, colour, position = rng.choice(PROMPT_SHAPES), rng.choice(list(COLOURS)), rng.choice(list(POSITIONS))
        return {"image": render_prompt_scene(shape, colour, position, image_size), "caption": scene_caption(shape, colour, position),
                "shape": shape, "colour": colour, "position": position}

    return datasets.DatasetDict({
        "train": datasets.Dataset.from_list([row() for _ in range(num_train)]),
        "validation": datasets.Dataset.from_list([row() for _ in range(num_validation)]),
    })


def analyse_scene(image: PIL.Image.Image) -> dict:
    """The object's `colour` and `position` read off an image (None for both when no pixel stands out)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    foreground = np.abs(pixels - background).sum(-1) > FOREGROUND_DISTANCE
    if not foreground.any():
        return {"colour": None, "position": None}
    mean = pixels[foreground].mean(0)
    colour = min(COLOURS, key=lambda name: np.abs(np.array(COLOURS[name]) - mean).sum())
    ys, xs = np.nonzero(foreground)
    centre = (xs.mean() / pixels.shape[1], ys.mean() / pixels.shape[0])
    position = min(POSITIONS, key=lambda name: (POSITIONS[name][0] - centre[0]) ** 2 + (POSITIONS[name][1] - centre[1]) ** 2)
    return {"colour": colour, "position": position}


def load_twemoji_text_to_image(image_size: int = 32, limit: int | None = None) -> datasets.Dataset:
    """Every Twemoji image (skin-tone variants left out) captioned with its name ("grinning face with big eyes"),
    composited on white at `image_size`: a text-to-image set whose samples are scored by nearest-neighbour retrieval
    among the same images."""
    from .twemoji import load_twemoji_captions

    splits = load_twemoji_captions(image_size=image_size, limit=limit)
    emoji = datasets.concatenate_datasets([splits[name] for name in ("train", "validation", "test")])
    return datasets.Dataset.from_dict({"image": emoji["image"], "caption": emoji["name"]})
