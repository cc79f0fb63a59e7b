"""Write a captioned clip-art folder in the format users bring: an `imagefolder` with `metadata.jsonl` (one
`{"file_name": ..., "text": ...}` line per image), images in RGBA, LA or P mode (transparent backgrounds) of mixed
sizes (17–400 px), one caption of 1–31 words each. The README's recipe for a user's own captioned images is measured
on it:

    python examples/make_clipart_folder.py clipart --num_images 950
    hf-mmdl captioning --dataset_name clipart --captions_column text ...
"""

import argparse
import json
import random
from pathlib import Path

import PIL.Image
import PIL.ImageDraw

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (240, 210, 40),
           "purple": (140, 60, 190), "orange": (245, 140, 30), "black": (20, 20, 20), "pink": (240, 120, 180)}
SUBJECTS = ("circle", "square", "triangle", "star", "heart", "arrow", "cross", "diamond")
STYLES = ("flat", "simple", "bold", "cartoon")
ENDINGS = ("on a transparent background", "for a web page", "used as an icon in presentations and documents",
           "drawn with a thin outline", "in the middle of the picture")


def _polygon(subject: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = box
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if subject == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if subject == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if subject == "arrow":
        return [(x0, cy - h / 8), (cx, cy - h / 8), (cx, y0), (x1, cy), (cx, y1), (cx, cy + h / 8), (x0, cy + h / 8)]
    if subject == "cross":
        a, b = w / 6, h / 6
        return [(cx - a, y0), (cx + a, y0), (cx + a, cy - b), (x1, cy - b), (x1, cy + b), (cx + a, cy + b), (cx + a, y1),
                (cx - a, y1), (cx - a, cy + b), (x0, cy + b), (x0, cy - b), (cx - a, cy - b)]
    if subject == "heart":
        return [(cx, y1), (x0, cy - h / 10), (x0 + w / 8, y0 + h / 8), (cx - w / 4, y0), (cx, y0 + h / 5),
                (cx + w / 4, y0), (x1 - w / 8, y0 + h / 8), (x1, cy - h / 10)]
    import math  # star: 5 outer and 5 inner points

    return [(cx + (w / 2 if i % 2 == 0 else w / 5) * math.sin(i * math.pi / 5),
             cy - (h / 2 if i % 2 == 0 else h / 5) * math.cos(i * math.pi / 5)) for i in range(10)]


def clipart(subject: str, colour: str, size: int, mode: str, rng: random.Random) -> PIL.Image.Image:
    """One `colour` `subject` on a transparent canvas of side `size`, stored in `mode` (RGBA, LA or P)."""
    image = PIL.Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = PIL.ImageDraw.Draw(image)
    margin = size * rng.uniform(0.05, 0.2)
    box = (margin, margin, size - margin, size - margin)
    fill = (*COLOURS[colour], 255)
    if subject == "circle":
        draw.ellipse(box, fill=fill)
    elif subject == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon(_polygon(subject, box), fill=fill)
    if mode == "LA":
        return image.convert("LA")
    if mode == "P":
        return image.quantize(method=PIL.Image.Quantize.FASTOCTREE)  # keeps the transparency
    return image


def caption(subject: str, colour: str, rng: random.Random) -> str:
    """1–31 words, from a bare noun to a long description, as captions users write vary."""
    kind = rng.random()
    if kind < 0.1:
        return subject
    words = f"a {colour} {subject}"
    if kind < 0.45:
        return words
    words = f"a {rng.choice(STYLES)} {colour} {subject} clip art"
    if kind < 0.8:
        return words
    return f"{words} {rng.choice(ENDINGS)}" + ("" if rng.random() < 0.5 else f", with a {colour} fill, "
                                                 "the kind of small picture people paste into slides and letters")


def write_clipart_folder(folder: Path, num_images: int = 950, seed: int = 0) -> Path:
    """`num_images` captioned clip-art images and their `metadata.jsonl` in `folder`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metadata.jsonl").open("w") as metadata:
        for index in range(num_images):
            subject, colour = rng.choice(SUBJECTS), rng.choice(list(COLOURS))
            size, mode = rng.randint(17, 400), rng.choice(("RGBA", "LA", "P"))
            name = f"{index:04d}.png"
            clipart(subject, colour, size, mode, rng).save(folder / name)
            metadata.write(json.dumps({"file_name": name, "text": caption(subject, colour, rng)}) + "\n")
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--num_images", type=int, default=950)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    print(f"Wrote {write_clipart_folder(options.folder, options.num_images, options.seed)}")
