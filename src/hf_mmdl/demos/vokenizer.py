"""Gradio demo of a Vokenizer: type a sentence, see every token with the image the matcher retrieved for it in its
context (its voken) and the relevance score."""

import PIL.Image
import PIL.ImageDraw

from ..visualization import load_font
from ..vokenization import IGNORE, VokenizedSentence, Vokenizer
from . import DELETE_CACHE, image_file, shown_to_user

EXAMPLE = "a small red circle to the left of a blue square"
# A request is answered in one pass of the matcher; text beyond this (a few paragraphs) is refused rather than queued
# for seconds, and the sheet of thumbnails would be too long to read anyway.
MAX_CHARACTERS = 1000
TILE, COLUMNS = 96, 8
HEADERS = ["position", "token", "voken", "image id", "score"]


def voken_rows(result: VokenizedSentence, vokenizer: Vokenizer) -> list[list]:
    """One row per token that got a voken ([CLS]/[SEP] have none): position, token, voken, image id, score."""
    return [[position, token, int(voken), vokenizer.image_ids[voken], round(float(score), 4)]
            for position, (token, voken, score) in enumerate(zip(result.tokens, result.vokens, result.scores))
            if voken != IGNORE]


def voken_sheet(rows: list[list], vokenizer: Vokenizer, tile: int = TILE, columns: int = COLUMNS) -> PIL.Image.Image:
    """A grid of tokens in sentence order: each token above its voken's thumbnail (enlarged with hard pixel edges),
    the score below; a grey tile with the image id where the key store kept no thumbnails."""
    font = load_font(12)
    cell_height = tile + 36
    lines = max(1, -(-len(rows) // columns))
    sheet = PIL.Image.new("RGB", (columns * (tile + 8) + 8, lines * (cell_height + 8) + 8), "white")
    draw = PIL.ImageDraw.Draw(sheet)
    for i, (_, token, voken, image_id, score) in enumerate(rows):
        x, y = 8 + (i % columns) * (tile + 8), 8 + (i // columns) * (cell_height + 8)
        draw.text((x, y), token[:14], fill="black", font=font)
        thumbnail = vokenizer.thumbnail(voken)
        if thumbnail is None:
            draw.rectangle((x, y + 16, x + tile - 1, y + 16 + tile - 1), fill=(210, 210, 210))
            draw.text((x + 4, y + 16 + tile // 2 - 6), image_id[:14], fill="black", font=font)
        else:
            sheet.paste(thumbnail.resize((tile, tile), PIL.Image.Resampling.NEAREST), (x, y + 16))
        draw.text((x, y + 20 + tile), f"{score:.3f}", fill=(60, 60, 60), font=font)
    return sheet


def build_demo(model_path: str):
    """The Blocks app on a Vokenizer folder (or Hub id) that `Vokenizer.save_pretrained` wrote, queued;
    `api_name="vokenize"` is its one endpoint: a sentence in, the sheet of vokens (an image file) and a table with one
    row per token out."""
    import gradio as gr

    from .widgets import image_output, queued

    vokenizer = Vokenizer.from_pretrained(model_path)

    def run(sentence):
        if not isinstance(sentence, str) or not sentence.strip():
            raise gr.Error("Type a sentence first: every token of it gets the image the matcher finds most related.")
        if len(sentence) > MAX_CHARACTERS:
            raise gr.Error(f"The text has {len(sentence)} characters; the demo takes at most {MAX_CHARACTERS}. "
                           "Vokenize longer texts with Vokenizer.vokenize in Python.")
        with shown_to_user():
            result = vokenizer.vokenize(sentence)[0]
        rows = voken_rows(result, vokenizer)
        return image_file(voken_sheet(rows, vokenizer)), rows

    with gr.Blocks(title="Vokenizer", delete_cache=DELETE_CACHE) as demo:
        shown = "thumbnails of the images" if vokenizer.thumbnails is not None else (
            "the image ids (this key store kept no thumbnails: build it with `thumbnail_size=`)")
        gr.Markdown(
            "# Vokenizer: a related image for every token\nThe matcher reads the sentence and, for every word piece "
            f"in its context, retrieves the most relevant of the key store's {vokenizer.num_images} images (its "
            f"*voken*), with the relevance score (cosine, −1 to 1). Shown: {shown}. Model: `{model_path}`.")
        sentence = gr.Textbox(value=EXAMPLE, label="sentence", lines=2, max_length=MAX_CHARACTERS, elem_id="sentence")
        button = gr.Button("Vokenize", variant="primary")
        sheet = image_output("each token with its voken and score", elem_id="sheet")
        table = gr.Dataframe(headers=HEADERS, label="vokens", elem_id="vokens")
        button.click(run, [sentence], [sheet, table], api_name="vokenize")
        sentence.submit(run, [sentence], [sheet, table], api_visibility="private")
        # The page opens vokenized; the load event is no API endpoint (gradio would name it "/run").
        demo.load(run, [sentence], [sheet, table], api_visibility="private")
    return queued(demo)
