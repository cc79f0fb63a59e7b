"""Procedurally generated captioned scenes: the package's built-in, download-free image-caption data.

Each scene holds 1-4 non-overlapping shapes (class, colour, size, box) on a dark canvas. Captions are composed from
the objects so that getting them right requires looking: which shapes, which colours, how many, and where they are
relative to each other. The objects are kept with every image, so other tasks (detection boxes, VQA pairs,
text-to-image prompts, inpainting masks, spoken captions) derive from the same generator.
"""

import math
import random
from collections import Counter
from dataclasses import asdict, dataclass

import datasets
import PIL.Image
import PIL.ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 220),
    "white": (245, 245, 245),
}
SIZES = {"small": 0.2, "large": 0.34}  # side of the object's box as a fraction of the canvas
BACKGROUND = (35, 35, 40)
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True)
class SceneObject:
    """One shape of a scene; `box` is (x0, y0, x1, y1) in pixels."""

    shape: str
    colour: str
    size: str
    box: tuple[int, int, int, int]

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


def _overlaps(a, b, margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def sample_objects(rng: random.Random, image_size: int, max_objects: int = 4) -> list[SceneObject]:
    """1..max_objects shapes with random class, colour, size and a position that overlaps no other shape."""
    count = rng.randint(1, max_objects)
    objects: list[SceneObject] = []
    while len(objects) < count:
        size = rng.choice(list(SIZES))
        side = round(SIZES[size] * image_size)
        for _ in range(100):
            x0, y0 = rng.randint(1, image_size - side - 1), rng.randint(1, image_size - side - 1)
            box = (x0, y0, x0 + side, y0 + side)
            if not any(_overlaps(box, other.box, margin=2) for other in objects):
                objects.append(SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), size, box))
                break
        else:
            break  # the canvas is full: keep the scene with fewer objects
    return objects


def _star_points(x0, y0, x1, y1, points: int = 5):
    cx, cy, outer = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    inner = outer * 0.45
    corners = []
    for k in range(2 * points):
        radius = outer if k % 2 == 0 else inner
        angle = math.pi * k / points - math.pi / 2
        corners.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return corners


def draw_object(draw: PIL.ImageDraw.ImageDraw, obj: SceneObject) -> None:
    x0, y0, x1, y1 = obj.box
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse(obj.box, fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    elif obj.shape == "star":
        draw.polygon(_star_points(x0, y0, x1, y1), fill=fill)
    elif obj.shape == "cross":
        third = (x1 - x0) / 3
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=fill)
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=fill)
    else:
        raise ValueError(f"Unknown shape {obj.shape!r}; known shapes: {SHAPES}.")


def render_scene(objects: list[SceneObject], image_size: int) -> PIL.Image.Image:
    image = PIL.Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = PIL.ImageDraw.Draw(image)
    for obj in objects:
        draw_object(draw, obj)
    return image


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where `a` is relative to `b`, along the axis on which they are further apart."""
    (ax, ay), (bx, by) = a.centre, b.centre
    if abs(ax - bx) >= abs(ay - by):
        return "to the left of" if ax < bx else "to the right of"
    return "above" if ay < by else "below"


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith("s") else "s")


def _count_phrase(counter: Counter) -> str:
    parts = [f"a {noun}" if n == 1 else f"{NUMBER_WORDS[n]} {_plural(noun)}" for noun, n in counter.most_common()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _listing(phrases: list[str]) -> str:
    items = [f"a {p}" for p in phrases]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def describe_scene(objects: list[SceneObject]) -> list[str]:
    """Five reference captions, as COCO has: full descriptions, relations, counts and colours."""
    ordered = sorted(objects, key=lambda o: o.centre[0])
    n = len(ordered)
    by_shape = _count_phrase(Counter(o.shape for o in ordered))
    by_colour_shape = _count_phrase(Counter(f"{o.colour} {o.shape}" for o in ordered))
    if n == 1:
        (obj,) = ordered
        return [
            f"a {obj.phrase}",
            f"a {obj.colour} {obj.shape}",
            f"a single {obj.phrase} on a dark background",
            f"there is one {obj.colour} {obj.shape}",
            f"a {obj.size} {obj.shape} that is {obj.colour}",
        ]
    if n == 2:
        a, b = ordered
        rel = relation(a, b)
        inverse = relation(b, a)
        return [
            f"a {a.phrase} {rel} a {b.phrase}",
            f"a {b.colour} {b.shape} {inverse} a {a.colour} {a.shape}",
            f"two shapes {_listing([a.phrase, b.phrase])}",
            f"there are two shapes {by_colour_shape}",
            f"a {a.colour} {a.shape} and a {b.colour} {b.shape}",
        ]
    number = NUMBER_WORDS[n]
    first, last = ordered[0], ordered[-1]
    return [
        f"{number} shapes {_listing([o.phrase for o in ordered])}",
        f"{by_colour_shape}",
        f"there are {number} shapes {by_shape}",
        f"{number} shapes with a {first.colour} {first.shape} on the left and a {last.colour} {last.shape} on the right",
        f"{_listing([f'{o.colour} {o.shape}' for o in ordered])}",
    ]


def generate_scene(rng: random.Random, image_size: int = 64, max_objects: int = 4) -> dict:
    objects = sample_objects(rng, image_size, max_objects)
    return {
        "image": render_scene(objects, image_size),
        "captions": describe_scene(objects),
        "objects": [asdict(o) | {"box": list(o.box)} for o in objects],
    }


SCENE_FEATURES = datasets.Features(
    {
        "image_id": datasets.Value("int64"),
        "image": datasets.Image(),
        "captions": datasets.Sequence(datasets.Value("string")),
        "objects": datasets.List(
            {
                "shape": datasets.Value("string"),
                "colour": datasets.Value("string"),
                "size": datasets.Value("string"),
                "box": datasets.Sequence(datasets.Value("int32"), length=4),
            }
        ),
    }
)


def load_scene_captions(
    num_train: int = 4000,
    num_validation: int = 250,
    num_test: int = 250,
    image_size: int = 64,
    max_objects: int = 4,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Built-in captioned scenes as a `DatasetDict` with train/validation/test splits; the same arguments always
    give the same data. Columns: `image_id`, `image` (PIL RGB), `captions` (5 references), `objects`."""
    if image_size < 24:
        raise ValueError(f"image_size={image_size} is too small to draw recognisable shapes; use at least 24.")
    splits = {}
    for offset, (split, count) in enumerate((("train", num_train), ("validation", num_validation), ("test", num_test))):
        rng = random.Random(f"{seed}-{split}")
        rows = [generate_scene(rng, image_size, max_objects) | {"image_id": offset * 10_000_000 + i} for i in range(count)]
        splits[split] = datasets.Dataset.from_list(rows, features=SCENE_FEATURES)
    return datasets.DatasetDict(splits)
