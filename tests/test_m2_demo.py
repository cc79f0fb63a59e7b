from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from transformers import AutoProcessor

from hf_mmdl import M2ForConditionalGeneration
from hf_mmdl.demos import EXAMPLE_SIDE, QUEUE_SIZE
from hf_mmdl.demos.m2 import EMPTY_CAPTION, build_demo, example_scene
from hf_mmdl.modeling.configuration_m2 import m2_config_for

from browser import headless_chromium, requires_chromium
from demo_load import (assert_all_identical_images, concurrent_results, launch_on_loopback,
                       assert_space_folder_is_ready)

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "m2"


@pytest.fixture(scope="module")
def captioner_folder(trained_captioner):
    return trained_captioner[0]


@pytest.fixture(scope="module")
def running_demo(captioner_folder):
    demo = launch_on_loopback(build_demo(str(captioner_folder)))
    yield demo
    demo.close()


def test_space_folder_is_ready_to_upload():
    assert_space_folder_is_ready(SPACE, "M2_MODEL")


def test_demo_captions_an_uploaded_image_with_the_chosen_beam_size(running_demo, tmp_path):
    client = Client(running_demo.local_url, verbose=False)
    # /caption is the one endpoint: the page's load event is not offered as a stray "/run"
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/caption"}
    image_path = tmp_path / "scene.png"
    example_scene(3).save(image_path)
    best, others, heatmap = client.predict(handle_file(str(image_path)), 3, api_name="/caption")
    assert isinstance(best, str) and best
    assert len(others.splitlines()) == 2  # beams 2 and 3
    assert Path(heatmap).exists()


@requires_chromium
def test_demo_page_shows_a_caption_in_headless_chromium(running_demo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        driver.get(running_demo.local_url)
        # The page captions its example scene when it loads.
        caption = WebDriverWait(driver, 120).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#caption textarea").get_attribute("value")
        )
        screenshot = tmp_path / "m2_demo.png"
        driver.save_screenshot(str(screenshot))
    assert any(word in caption for word in ("circle", "square", "triangle", "star", "cross")), caption
    assert screenshot.stat().st_size > 20_000


@pytest.fixture(scope="module")
def untrained_folder(tmp_path_factory, image_processor_m2):
    """A tiny untrained captioner: fast, and it ends every caption at once (an empty caption) under greedy search."""
    folder = tmp_path_factory.mktemp("m2-untrained")
    tokenizer = image_processor_m2.tokenizer
    torch.manual_seed(0)
    model = M2ForConditionalGeneration(m2_config_for("tiny", len(tokenizer), 32, tokenizer))
    model.generation_config.max_new_tokens = 3
    model.save_pretrained(folder)
    image_processor_m2.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def untrained_demo(untrained_folder):
    demo = launch_on_loopback(build_demo(str(untrained_folder)))
    yield demo
    demo.close()


def test_demo_answers_50_concurrent_requests_intact(untrained_demo, tmp_path):
    assert untrained_demo._queue.max_size == QUEUE_SIZE and untrained_demo.show_error
    endpoints = Client(untrained_demo.local_url, verbose=False).view_api(return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/caption"}  # the page's load event is no stray "/run"
    image_path = tmp_path / "scene.png"
    example_scene(3).save(image_path)
    results = concurrent_results(untrained_demo.local_url, handle_file(str(image_path)), 2, api_name="/caption")
    assert len({(best, others) for best, others, _ in results}) == 1
    assert_all_identical_images([heatmap for _, _, heatmap in results])


def test_an_empty_caption_is_shown_as_such_not_as_a_blank_box(untrained_folder, tmp_path):
    model = M2ForConditionalGeneration.from_pretrained(untrained_folder)
    # Every caption ends at its first token: the decoder's first word is forced to be <eos>.
    model.generation_config.forced_bos_token_id = model.generation_config.eos_token_id
    model.save_pretrained(tmp_path / "silent")
    AutoProcessor.from_pretrained(untrained_folder).save_pretrained(tmp_path / "silent")
    demo = launch_on_loopback(build_demo(str(tmp_path / "silent")))
    try:
        example_scene(3).save(tmp_path / "scene.png")
        best, others, _ = Client(demo.local_url, verbose=False).predict(handle_file(str(tmp_path / "scene.png")), 2,
                                                                        api_name="/caption")
    finally:
        demo.close()
    assert best == EMPTY_CAPTION
    assert others == f"2. {EMPTY_CAPTION}"


def test_bad_uploads_reach_the_client_as_clear_errors(untrained_demo, tmp_path):
    client = Client(untrained_demo.local_url, verbose=False)
    text = tmp_path / "caption.jpg"
    text.write_text("a red circle")
    with pytest.raises(AppError, match="not an image that can be read"):
        client.predict(handle_file(str(text)), 3, api_name="/caption")
    with pytest.raises(AppError, match="Upload an image first"):
        client.predict(None, 3, api_name="/caption")


def test_the_example_scene_is_shown_enlarged_not_as_a_thumbnail():
    image = example_scene()
    assert EXAMPLE_SIDE // 2 < max(image.size) <= EXAMPLE_SIDE
