"""Figures saved as PNG: results people would rather see than read. Images are shown as the models see them
(transparency on white: `processing.image_processing.to_rgb`)."""

import colorsys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch

from .processing.image_processing import to_rgb


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
        sheet.paste(to_rgb(image).resize((tile, tile), PIL.Image.Resampling.NEAREST), (x, y))
        first_label = block[0][0]
        for j, (label, line) in enumerate(block):
            colour = "darkgreen" if label == first_label else "dimgray"
            draw.text((x, y + tile + 4 + 16 * j), line, fill=colour, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def image_grid(
    rows: Sequence[Sequence[PIL.Image.Image]],
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    tile: int = 64,
    title: str | None = None,
) -> Path:
    """Save rows of images (e.g. inputs above reconstructions) as one PNG, each image upscaled to `tile` pixels
    without smoothing so that small images stay legible, with an optional label left of each row."""
    font, bold = load_font(12), load_font(14)
    label_width = 8 + max((int(font.getlength(label)) for label in row_labels or []), default=0)
    header = 28 if title else 0
    columns = max(len(row) for row in rows)
    sheet = PIL.Image.new("RGB", (label_width + columns * (tile + 4) + 6, header + len(rows) * (tile + 4) + 6), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    if title:
        draw.text((6, 6), title, fill="black", font=bold)
    for r, row in enumerate(rows):
        y = header + 4 + r * (tile + 4)
        if row_labels:
            draw.text((4, y + tile // 2 - 7), row_labels[r], fill="black", font=font)
        for c, image in enumerate(row):
            sheet.paste(to_rgb(image).resize((tile, tile), PIL.Image.Resampling.NEAREST), (label_width + c * (tile + 4), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    path: str | Path,
    title: str,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Save a small line chart of named (x, y) series as PNG (drawn with Pillow: no plotting dependency)."""
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
    font = load_font(12)
    width, height = size
    left, right, top, bottom = 64, 16, 36, 48
    points = [p for values in series.values() for p in values]
    if not points:
        raise ValueError("line_chart needs at least one point.")
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(0.0, min(p[1] for p in points)), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (width - left - right), height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

    chart = PIL.Image.new("RGB", size, "white")
    draw = PIL.ImageDraw.Draw(chart)
    draw.text((left, 10), title, fill="black", font=load_font(14))
    draw.line([to_pixel(x0, y0), to_pixel(x1, y0)], fill="black")
    draw.line([to_pixel(x0, y0), to_pixel(x0, y1)], fill="black")
    for fraction in (0, 0.5, 1):
        y = y0 + fraction * (y1 - y0)
        draw.text((4, to_pixel(x0, y)[1] - 7), f"{y:.3g}", fill="black", font=font)
        x = x0 + fraction * (x1 - x0)
        draw.text((to_pixel(x, y0)[0] - 10, height - bottom + 6), f"{x:.3g}", fill="black", font=font)
    draw.text((width // 2 - 40, height - 20), x_label, fill="black", font=font)
    draw.text((4, top - 16), y_label, fill="black", font=font)
    for i, (name, values) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        if len(values) > 1:
            draw.line([to_pixel(*p) for p in values], fill=colour, width=2)
        for p in values:
            cx, cy = to_pixel(*p)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=colour)
        draw.text((width - right - 200, top + 16 * i), name, fill=colour, font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(path)
    return path


MODALITY_MARKERS = ("circle", "square", "triangle", "diamond")


def _marker(draw: PIL.ImageDraw.ImageDraw, kind: str, x: float, y: float, r: float, colour) -> None:
    if kind == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline="black")
    elif kind == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), fill=colour, outline="black")
    elif kind == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour, outline="black")
    else:
        draw.polygon([(x, y - r), (x - r, y), (x, y + r), (x + r, y)], fill=colour, outline="black")


def embedding_scatter(embeddings: dict, labels: Sequence[int], path: str | Path, title: str,
                      concept_names: Sequence[str] | None = None, size: tuple[int, int] = (720, 560)) -> Path:
    """Save a 2-D PCA projection of several groups of embeddings (e.g. one per modality: {"text": (N, D), ...},
    row i of each group being concept `labels[i]`) as PNG: colour = concept, marker = group. One PCA is fitted to
    all groups together, so distances between groups are comparable."""
    groups = list(embeddings)
    stacked = torch.cat([embeddings[g].float() for g in groups])
    centred = stacked - stacked.mean(0)
    _, _, basis = torch.linalg.svd(centred, full_matrices=False)
    points = (centred @ basis[:2].T).tolist()
    width, height = size
    margin, legend = 40, 150
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    span_x, span_y = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    chart = PIL.Image.new("RGB", size, "white")
    draw = PIL.ImageDraw.Draw(chart)
    font = load_font(12)
    draw.text((margin, 10), title, fill="black", font=load_font(14))
    num_concepts = max(labels) + 1 if len(labels) else 1
    palette = [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / num_concepts, 0.75, 0.9)) for i in range(num_concepts)]
    per_group = len(labels)
    for index, (x, y) in enumerate(points):
        group, row = divmod(index, per_group)
        px = margin + (x - x0) / span_x * (width - 2 * margin - legend)
        py = height - margin - (y - y0) / span_y * (height - 2 * margin - 20)
        _marker(draw, MODALITY_MARKERS[group % len(MODALITY_MARKERS)], px, py, 4, palette[labels[row]])
    for i, group in enumerate(groups):
        y = 40 + 18 * i
        _marker(draw, MODALITY_MARKERS[i % len(MODALITY_MARKERS)], width - legend + 8, y + 7, 5, (160, 160, 160))
        draw.text((width - legend + 20, y), group, fill="black", font=font)
    if concept_names:
        for i, name in enumerate(concept_names[: (height - 120) // 14]):
            draw.text((width - legend + 8, 40 + 18 * len(groups) + 8 + 14 * i), name, fill=palette[i], font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chart.save(path)
    return path
