"""The Vokenizer demo on a tiny random Vokenizer folder the package saved itself, through gradio_client on
loopback: tokens with their vokens, images and scores; refusals; 50 concurrent requests; the Space folder."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from hf_mmdl import VokenizerModel, VokenizerProcessor
from hf_mmdl.demos import QUEUE_SIZE, build_demo_for
from hf_mmdl.demos.vokenizer import EXAMPLE, HEADERS, MAX_CHARACTERS, TILE, build_demo
from hf_mmdl.processing import VokenizerImageProcessor, train_bert_wordpiece
from hf_mmdl.vokenization import INDEX_FILE, Vokenizer

from browser import headless_chromium, requires_chromium
from demo_load import (assert_all_identical_images, concurrent_results, launch_on_loopback, pixels,
                       assert_space_folder_is_ready)
from test_vokenizer_modeling import tiny_config, tiny_text_config

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "vokenizer"
# Ten images of one flat colour each: a voken's thumbnail tells which image it is.
COLOURS = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (240, 240, 30), (200, 30, 200), (30, 220, 220),
           (250, 150, 30), (120, 60, 20), (250, 250, 250), (90, 90, 90)]


def tiny_vokenizer(thumbnail_size):
    tokenizer = train_bert_wordpiece([EXAMPLE, "a green star above a white cross", "three yellow triangles"] * 3,
                                     vocab_size=120, model_max_length=64)
    processor = VokenizerProcessor(VokenizerImageProcessor.for_size(32), tokenizer)
    torch.manual_seed(0)
    model = VokenizerModel(tiny_config(text_config=tiny_text_config(vocab_size=len(tokenizer))))
    images = [PIL.Image.new("RGB", (40, 36), colour) for colour in COLOURS]
    return Vokenizer.build(model, processor, images, image_ids=[f"colour{i}.png" for i in range(10)],
                           show_progress=False, thumbnail_size=thumbnail_size)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vokenizer")
    tiny_vokenizer(thumbnail_size=8).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def running_demo(folder):
    demo = launch_on_loopback(build_demo(str(folder)))
    yield demo
    demo.close()


def test_space_folder_is_ready_to_upload():
    assert_space_folder_is_ready(SPACE, "VOKENIZER_MODEL")


def test_every_token_gets_its_voken_image_and_score(running_demo, folder):
    client = Client(running_demo.local_url, verbose=False)
    # /vokenize is the one endpoint: the page's load and submit events are not offered as stray ones
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/vokenize"}
    sheet, table = client.predict("a red circle above a blue square", api_name="/vokenize")
    expected = Vokenizer.from_pretrained(folder).vokenize("a red circle above a blue square")[0]
    assert table["headers"] == HEADERS
    real = [p for p, v in enumerate(expected.vokens) if v != -100]
    assert [row[0] for row in table["data"]] == real  # [CLS] and [SEP] have no voken
    for position, token, voken, image_id, score in table["data"]:
        assert token == expected.tokens[position] and voken == expected.vokens[position]
        assert image_id == f"colour{voken}.png" and score == pytest.approx(expected.scores[position], abs=1e-4)
    # The sheet shows each token's voken: the first tile is the flat colour of the first token's image.
    tile = pixels(sheet)[8 + 16 + TILE // 2, 8 + TILE // 2]
    assert np.abs(tile.astype(int) - COLOURS[table["data"][0][2]]).max() <= 8


def test_empty_and_over_long_sentences_reach_the_client_as_clear_errors(running_demo):
    client = Client(running_demo.local_url, verbose=False)
    with pytest.raises(AppError, match="Type a sentence first"):
        client.predict("   ", api_name="/vokenize")
    with pytest.raises(AppError, match=f"takes at most {MAX_CHARACTERS}"):
        client.predict("a red circle " * 100, api_name="/vokenize")


def test_demo_answers_50_concurrent_requests_intact(running_demo):
    assert running_demo._queue.max_size == QUEUE_SIZE and running_demo.show_error
    results = concurrent_results(running_demo.local_url, EXAMPLE, api_name="/vokenize")
    assert len({str(table["data"]) for _, table in results}) == 1
    assert_all_identical_images([sheet for sheet, _ in results])


def test_a_key_store_without_thumbnails_shows_image_ids_and_the_cli_lookup_finds_the_demo(tmp_path):
    tiny_vokenizer(thumbnail_size=None).save_pretrained(tmp_path)
    demo = launch_on_loopback(build_demo_for(str(tmp_path)))  # what `hf-mmdl demo FOLDER` builds
    try:
        sheet, table = Client(demo.local_url, verbose=False).predict(EXAMPLE, api_name="/vokenize")
    finally:
        demo.close()
    assert len(table["data"]) > 3
    assert tuple(pixels(sheet)[8 + 16 + 4, 8 + 4]) == (210, 210, 210)  # the grey tile that names the image


def test_a_folder_without_its_key_store_is_refused_naming_the_file(folder, tmp_path):
    import shutil

    shutil.copytree(folder, tmp_path / "copy")
    (tmp_path / "copy" / INDEX_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=INDEX_FILE):
        build_demo(str(tmp_path / "copy"))


@requires_chromium
def test_demo_page_shows_the_vokens_in_headless_chromium(running_demo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        driver.get(running_demo.local_url)
        # The page vokenizes its example sentence when it loads.
        WebDriverWait(driver, 120).until(lambda d: "colour" in d.find_element(By.ID, "vokens").text)
        screenshot = tmp_path / "vokenizer_demo.png"
        driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 20_000
