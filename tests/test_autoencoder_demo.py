import random
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_mmdl import (
    DiscreteVAEConfig,
    DiscreteVAEImageProcessor,
    DiscreteVAEModel,
    ImageVAEConfig,
    ImageVAEImageProcessor,
    ImageVAEModel,
    M2Config,
)
from hf_mmdl.data.scenes import generate_scene
from hf_mmdl.demos import MAX_SEED, QUEUE_SIZE
from hf_mmdl.demos.autoencoders import GAP, TILE, TOKEN_GRID_SIDE, build_demo

from browser import headless_chromium, requires_chromium
from demo_load import (assert_all_identical_images, concurrent_results, launch_on_loopback,
                       assert_space_folder_is_ready)

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "autoencoders"
SIDE = 16  # the tiny models' image side
SHOWN = TILE // SIDE * SIDE  # each image is enlarged by a whole factor
TOKENS = SIDE // 2  # the tiny dVAE has two groups: one 2× downsampling


def save(model, processor, folder: Path) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = ImageVAEConfig(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, latent_dim=8, sample_size=SIDE,
    )
    processor = ImageVAEImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    return save(ImageVAEModel(config), processor, tmp_path_factory.mktemp("vae"))


@pytest.fixture(scope="module")
def dvae_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = DiscreteVAEConfig(group_count=2, n_blk_per_group=1, n_hid=16, vocab_size=64, n_init=16)
    processor = DiscreteVAEImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    return save(DiscreteVAEModel(config), processor, tmp_path_factory.mktemp("dvae"))


def launch(folder: Path):
    return launch_on_loopback(build_demo(str(folder)))


@pytest.fixture(scope="module")
def vae_demo(vae_folder):
    demo = launch(vae_folder)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def dvae_demo(dvae_folder):
    demo = launch(dvae_folder)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def scene_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    paths = []
    for seed in (3, 4):
        paths.append(folder / f"scene_{seed}.png")
        generate_scene(random.Random(seed))["image"].save(paths[-1])
    return [str(p) for p in paths]


def image_size(path) -> tuple[int, int]:
    with PIL.Image.open(path) as image:
        return image.size


def test_space_folder_is_ready_to_upload():
    assert_space_folder_is_ready(SPACE, "AUTOENCODER_MODEL")


def test_demo_refuses_a_model_that_is_not_an_autoencoder(tmp_path):
    M2Config().save_pretrained(tmp_path)  # the config alone: the demo refuses before loading any weights
    with pytest.raises(ValueError, match="'m2_transformer' model; this demo shows image autoencoders"):
        build_demo(str(tmp_path))


def test_vae_demo_offers_exactly_its_three_endpoints(vae_demo):
    endpoints = Client(vae_demo.local_url, verbose=False).view_api(return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/reconstruct", "/sample", "/interpolate"}


def test_vae_demo_reconstructs_samples_and_interpolates(vae_demo, scene_paths):
    client = Client(vae_demo.local_url, verbose=False)
    pair = client.predict(handle_file(scene_paths[0]), api_name="/reconstruct")
    assert image_size(pair) == (2 * SHOWN + GAP, SHOWN)

    samples = client.predict(5, 0.8, 1, api_name="/sample")  # 5 samples: rows of 4 → 4 × 2 tiles
    assert image_size(samples) == (4 * SHOWN + 3 * GAP, 2 * SHOWN + GAP)
    again = client.predict(5, 0.8, 1, api_name="/sample")
    assert list(PIL.Image.open(samples).getdata()) == list(PIL.Image.open(again).getdata())  # the seed fixes them

    strip = client.predict(handle_file(scene_paths[0]), handle_file(scene_paths[1]), 3, True, api_name="/interpolate")
    assert image_size(strip) == (3 * SHOWN + 2 * GAP, SHOWN)


def test_dvae_demo_shows_the_token_grid_and_counts_distinct_tokens(dvae_demo, dvae_folder, scene_paths):
    client = Client(dvae_demo.local_url, verbose=False)
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/reconstruct"}
    pair, grid, summary = client.predict(handle_file(scene_paths[0]), api_name="/reconstruct")
    assert image_size(pair) == (2 * SHOWN + GAP, SHOWN)
    cell = TOKEN_GRID_SIDE // TOKENS
    assert image_size(grid) == (TOKENS * cell, TOKENS * cell)

    model = DiscreteVAEModel.from_pretrained(dvae_folder)
    processor = DiscreteVAEImageProcessor.from_pretrained(dvae_folder)
    token_ids = model.get_codebook_indices(processor(images=PIL.Image.open(scene_paths[0]))["pixel_values"])
    assert summary == f"{token_ids.unique().numel()} distinct tokens of 64 in the {TOKENS}×{TOKENS} grid"


def test_missing_images_reach_the_client_as_clear_errors(vae_demo, scene_paths):
    client = Client(vae_demo.local_url, verbose=False)
    with pytest.raises(AppError, match="Upload an image first"):
        client.predict(None, api_name="/reconstruct")
    with pytest.raises(AppError, match="Upload two images"):
        client.predict(handle_file(scene_paths[0]), None, 4, False, api_name="/interpolate")


def test_an_image_the_processor_refuses_reaches_the_client_as_its_message(vae_demo, tmp_path):
    path = tmp_path / "depth.png"
    PIL.Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).save(path)  # 16-bit: no implied range
    with pytest.raises(AppError, match="cannot be converted to RGB"):
        Client(vae_demo.local_url, verbose=False).predict(handle_file(str(path)), api_name="/reconstruct")


@requires_chromium
def test_dvae_page_counts_the_example_scene_tokens_in_headless_chromium(dvae_demo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        driver.get(dvae_demo.local_url)
        # The page reconstructs and tokenizes its example scene when it loads.
        summary = WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#token-count textarea").get_attribute("value")
        )
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#token-grid img"))
        screenshot = tmp_path / "autoencoder_demo.png"
        driver.save_screenshot(str(screenshot))
    assert summary.endswith(f"distinct tokens of 64 in the {TOKENS}×{TOKENS} grid"), summary
    assert screenshot.stat().st_size > 20_000


def test_vae_demo_answers_50_concurrent_requests_with_identical_outputs_intact(vae_demo, scene_paths):
    # Identical inputs give identical outputs: before each response had a file of its own, they shared one
    # content-hashed file that a later response rewrote while an earlier one was being downloaded.
    assert vae_demo._queue.max_size == QUEUE_SIZE and vae_demo.show_error
    # The upload components are drawn by Gradio's own image component (they only add a check on the server).
    types = {component["type"] for component in vae_demo.config["components"]}
    assert "image" in types and not {"imageinput", "imageeditorinput"} & types
    samples = concurrent_results(vae_demo.local_url, 4, 0.8, 3, api_name="/sample")
    assert_all_identical_images(samples)
    pairs = concurrent_results(vae_demo.local_url, handle_file(scene_paths[0]), api_name="/reconstruct")
    assert_all_identical_images(pairs)


def test_dvae_demo_answers_50_concurrent_requests_intact(dvae_demo, scene_paths):
    results = concurrent_results(dvae_demo.local_url, handle_file(scene_paths[1]), api_name="/reconstruct")
    assert_all_identical_images([pair for pair, _, _ in results])
    assert_all_identical_images([grid for _, grid, _ in results])
    assert len({summary for _, _, summary in results}) == 1


def test_bad_seeds_and_uploads_reach_the_client_as_clear_errors(vae_demo, tmp_path):
    client = Client(vae_demo.local_url, verbose=False)
    with pytest.raises(AppError, match="Enter a seed"):
        client.predict(4, 0.8, None, api_name="/sample")  # a cleared seed field
    for seed in (MAX_SEED + 1, 2**64, -1):  # torch alone: "Overflow when unpacking long long"
        with pytest.raises(AppError, match=str(MAX_SEED) if seed > 0 else "less than minimum"):
            client.predict(4, 0.8, seed, api_name="/sample")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AppError, match="not an image that can be read"):
        client.predict(handle_file(str(text)), api_name="/reconstruct")


def test_the_command_and_the_space_launch_with_errors_shown_on_gradios_default_server(vae_folder, monkeypatch):
    import runpy
    import sys

    import gradio as gr

    from hf_mmdl.cli import main

    launches = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launches.append((self._queue.max_size, kwargs)))
    main(["demo", str(vae_folder)])
    monkeypatch.setattr(sys, "argv", ["app.py", str(vae_folder)])
    runpy.run_path(str(SPACE / "app.py"), run_name="__main__")
    # No server name or port: Gradio's defaults (127.0.0.1 locally; a Space sets GRADIO_SERVER_NAME itself).
    assert launches == [(QUEUE_SIZE, {"show_error": True})] * 2
