"""Figures saved as PNG: results people would rather see than read."""

import textwrap
from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont


def load_font(size: int) -> PIL.ImageFont.ImageFont:
    try:
        return PIL.ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed-size bitmap font
        return PIL.ImageFont.load_default()


def captioned_image_grid(
    images: Sequence[PIL.Image.Image],
    captions: Sequence[Sequence[tuple[str, str]]],
    path: str | Path,
    columns: int = 4,
    tile: int = 192,
    title: str | None = None,
) -> Path:
    """Save a grid of images, each above its labelled captions, e.g. [("M²", "a red circle"), ("ref", "...")]."""
    font, bold = load_font(12), load_font(14)
    wrap = max(20, tile // 7)
    blocks = [
        [
            (label, ("" if j else f"{label}: ") + line)
            for label, text in entry
            for j, line in enumerate(textwrap.wrap(text, wrap, subsequent_indent="  ") or [""])
        ]
        for entry in captions
    ]
    text_height = 16 * max(len(b) for b in blocks) + 8
    rows = -(-len(images) // columns)
    header = 28 if title else 0
    sheet = PIL.Image.new("RGB", (columns * (tile + 10) + 10, header + rows * (tile + text_height + 10) + 10), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    if title:
        draw.text((10, 6), title, fill="black", font=bold)
    for i, (image, block) in enumerate(zip(images, blocks)):
        x = 10 + (i % columns) * (tile + 10)
        y = header + 10 + (i // columns) * (tile + text_height + 10)
        sheet.paste(image.convert("RGB").resize((tile, tile), PIL.Image.Resampling.NEAREST), (x, y))
        first_label = block[0][0]
        for j, (label, line) in enumerate(block):
            colour = "darkgreen" if label == first_label else "dimgray"
            draw.text((x, y + tile + 4 + 16 * j), line, fill=colour, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
