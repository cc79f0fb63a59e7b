"""Attribute scenes for cross-modal latent arithmetic: every combination of colour, shape and position of the
text-to-image scenes (`hf_mmdl.data.text_to_image`: 6 colours x 3 shapes x 4 quadrants = 72), each drawn one way and
captioned "a red circle in the top left", with some combinations held out of training, and optionally spoken by
espeak-ng (`hf_mmdl.data.speech`). A deterministic reader gets all three attributes back from an image
(`analyse_attribute_scene`) and from a caption (`caption_attributes`), so that generated images and captions are
scored without a network.
"""

import itertools
import random

import datasets
import numpy as np
import PIL.Image

from ..processing.tokenization import words_of
from .scenes import COLOURS
from .speech import SAMPLING_RATE, random_voice, synthesize_speech
from .text_to_image import FOREGROUND_DISTANCE, POSITIONS, PROMPT_SHAPES, analyse_scene, render_prompt_scene, scene_caption

ATTRIBUTES = ("colour", "shape", "position")
COMBINATIONS = tuple(itertools.product(COLOURS, PROMPT_SHAPES, POSITIONS))  # (colour, shape, position)
# Spoken captions: each combination is spoken by this many seeded voices (voice, rate, pitch) for training, and by
# one more for test, so that test clips are voices the model never heard say that caption.
TRAIN_VOICES_PER_COMBINATION = 4
# Share of the object's bounding box it fills: a triangle ½, a disc π/4 ≈ 0.79, a square 1. The thresholds sit
# halfway between, measured on the drawn shapes at 16-64 px (triangle 0.52-0.56, circle 0.77-0.81, square 1.0).
TRIANGLE_BELOW, SQUARE_ABOVE = 0.66, 0.9


def chance_scores() -> dict:
    """The score of a uniformly random guess of each attribute (and of all three at once)."""
    colours, shapes, positions = len(COLOURS), len(PROMPT_SHAPES), len(POSITIONS)
    return {"colour": 1 / colours, "shape": 1 / shapes, "position": 1 / positions, "all": 1 / (colours * shapes * positions)}


def held_out_combinations(count: int, seed: int = 0) -> set[tuple[str, str, str]]:
    """`count` combinations left out of training, drawn with `seed` so that every colour, shape and position still
    appears in training in at least two combinations (so that attribute vectors can be averaged). Raises ValueError
    for a count that leaves fewer."""
    if not 0 <= count <= len(COMBINATIONS) // 2:
        raise ValueError(f"num_held_out_combinations must lie in [0, {len(COMBINATIONS) // 2}], got {count}.")
    held = set(random.Random(f"{seed}-held-out").sample(COMBINATIONS, count))
    kept = [c for c in COMBINATIONS if c not in held]
    for index, values in enumerate((COLOURS, PROMPT_SHAPES, POSITIONS)):
        for value in values:
            if sum(c[index] == value for c in kept) < 2:
                raise ValueError(f"Holding out {count} combinations leaves {value!r} in fewer than two training "
                                 "combinations; hold out fewer.")
    return held


def load_attribute_scenes(num_train: int = 2000, image_size: int = 32, num_held_out: int = 12,
                          seed: int = 0, audio: bool = False) -> datasets.DatasetDict:
    """`train`: `num_train` rows drawn uniformly from the combinations not held out; `test`: every combination once,
    with `held_out` marking those never in train. Columns: `image` (PIL RGB), `text` (the caption), `colour`,
    `shape`, `position`, `held_out`; with `audio`, also `audio` (the caption spoken by espeak-ng: a float32 16 kHz
    waveform stored as a list of floats), `sampling_rate` (16000) and `voice` (espeak-ng voice, rate and pitch).
    Training rows draw one of `TRAIN_VOICES_PER_COMBINATION` seeded voices of their combination; test rows use one
    more voice. The same arguments always give the same data. Audio needs `espeakng-loader` (ImportError without)."""
    if num_train < 1:
        raise ValueError(f"num_train must be ≥ 1, got {num_train}.")
    if image_size < 16:
        raise ValueError(f"image_size={image_size} is too small to draw recognisable shapes; use at least 16.")
    held = held_out_combinations(num_held_out, seed)
    images = {combination: render_prompt_scene(combination[1], combination[0], combination[2], image_size)
              for combination in COMBINATIONS}

    def row(combination):
        colour, shape, position = combination
        return {"image": images[combination], "text": scene_caption(shape, colour, position), "colour": colour,
                "shape": shape, "position": position, "held_out": combination in held}

    rng = random.Random(f"{seed}-train")
    trained = [c for c in COMBINATIONS if c not in held]
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string"),
                                  "colour": datasets.Value("string"), "shape": datasets.Value("string"),
                                  "position": datasets.Value("string"), "held_out": datasets.Value("bool")})
    splits = {"train": [row(rng.choice(trained)) for _ in range(num_train)], "test": [row(c) for c in COMBINATIONS]}
    if not audio:
        return datasets.DatasetDict({split: datasets.Dataset.from_list(rows, features=features)
                                     for split, rows in splits.items()})
    # Imported here: trimodal's Arrow writer, kept out of the image-only path's imports.
    from .trimodal import _dataset_dict

    voice_rng = random.Random(f"{seed}-voices")
    voices = {c: [random_voice(voice_rng) for _ in range(TRAIN_VOICES_PER_COMBINATION + 1)] for c in COMBINATIONS}
    for split, rows in splits.items():
        for r in rows:
            combination = (r["colour"], r["shape"], r["position"])
            voice = voices[combination][-1] if split == "test" else rng.choice(voices[combination][:-1])
            r |= {"audio": synthesize_speech(r["text"], **voice), "sampling_rate": SAMPLING_RATE,
                  "voice": f"{voice['voice']} rate {voice['rate']} pitch {voice['pitch']}"}
    features = datasets.Features({**features, "audio": datasets.List(datasets.Value("float32")),
                                  "sampling_rate": datasets.Value("int32"), "voice": datasets.Value("string")})
    return _dataset_dict(splits, features, "attribute scenes with spoken captions (espeak-ng, GPL-3+ voices)")


def scene_shape(image: PIL.Image.Image) -> str | None:
    """The object's shape read off an image by how much of its bounding box it fills (see `TRIANGLE_BELOW`); None
    when no pixel stands out from the background (the foreground rule of `analyse_scene`)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    foreground = np.abs(pixels - np.median(border, axis=0)).sum(-1) > FOREGROUND_DISTANCE
    if not foreground.any():
        return None
    ys, xs = np.nonzero(foreground)
    fill = foreground.sum() / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    return "triangle" if fill < TRIANGLE_BELOW else "square" if fill > SQUARE_ABOVE else "circle"


def analyse_attribute_scene(image: PIL.Image.Image) -> dict:
    """`colour`, `shape` and `position` of an image's object (None each when nothing stands out)."""
    return {**analyse_scene(image), "shape": scene_shape(image)}


def caption_attributes(caption: str) -> dict:
    """`colour`, `shape` and `position` a caption names; None for an attribute it names not exactly once (no
    colour word, or two)."""
    words = words_of(caption)
    colours = [w for w in words if w in COLOURS]
    shapes = [w for w in words if w in PROMPT_SHAPES]
    rows, sides = [w for w in words if w in ("top", "bottom")], [w for w in words if w in ("left", "right")]
    return {"colour": colours[0] if len(colours) == 1 else None, "shape": shapes[0] if len(shapes) == 1 else None,
            "position": f"{rows[0]} {sides[0]}" if len(rows) == len(sides) == 1 else None}


def score(found: list[dict], expected: list[dict]) -> dict:
    """Share of rows whose found colour, shape and position equal the expected ones, each and all three."""
    if not expected:
        return {key: float("nan") for key in (*ATTRIBUTES, "all")}
    hits = {key: [f[key] == e[key] for f, e in zip(found, expected)] for key in ATTRIBUTES}
    scores = {key: float(np.mean(values)) for key, values in hits.items()}
    scores["all"] = float(np.mean([all(hits[key][i] for key in ATTRIBUTES) for i in range(len(expected))]))
    return scores


__all__ = ["ATTRIBUTES", "COMBINATIONS", "analyse_attribute_scene", "caption_attributes", "chance_scores",
           "held_out_combinations", "load_attribute_scenes", "scene_shape", "score"]
