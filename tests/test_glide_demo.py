"""The GLIDE Gradio demo through gradio_client and a headless browser, on tiny pipelines saved by the tests."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_mmdl import M2Config
from hf_mmdl.demos import MAX_SEED, QUEUE_SIZE
from hf_mmdl.demos.autoencoders import GAP, TILE
from hf_mmdl.demos.glide import build_demo
from hf_mmdl.pipelines import GlideInpaintPipeline, GlidePipeline

from browser import headless_chromium, requires_chromium
from demo_load import (assert_all_identical_images, concurrent_results, launch_on_loopback,
                       assert_space_folder_is_ready)
from test_glide_pipeline import variant_pipeline

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "glide"
SIDE = 16  # the tiny models' image side
FACTOR = TILE // SIDE  # each image is enlarged by this whole factor
SHOWN = FACTOR * SIDE
STEPS = "3"  # respaced sampling steps: enough to run every part of the loop, few enough to take well under a second


@pytest.fixture(scope="module")
def glide_folder(tmp_path_factory):
    """Laid out as `hf-mmdl text-to-image` saves it: the text-to-image pipeline, the inpainting one in inpaint/."""
    folder = tmp_path_factory.mktemp("glide")
    # variant_pipeline's tiny models have a noisy output convolution, so samples are not all one blank image.
    variant_pipeline(GlidePipeline).save_pretrained(folder)
    variant_pipeline(GlideInpaintPipeline, inpaint=True).save_pretrained(folder / "inpaint")
    return folder


@pytest.fixture(scope="module")
def text_only_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glide-text-only")
    variant_pipeline(GlidePipeline).save_pretrained(folder)
    return folder


def launch(folder: Path):
    return launch_on_loopback(build_demo(str(folder)))


@pytest.fixture(scope="module")
def glide_demo(glide_folder):
    demo = launch(glide_folder)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(glide_demo):
    return Client(glide_demo.local_url, verbose=False)


def pixels(path) -> np.ndarray:
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def tiles(sheet: np.ndarray, count: int) -> list[np.ndarray]:
    """A row of `count` tiles cut out of a sheet and shrunk back to the model's pixels (each was a FACTOR² block)."""
    assert sheet.shape[:2] == (SHOWN, count * SHOWN + (count - 1) * GAP)
    return [sheet[:, i * (SHOWN + GAP):i * (SHOWN + GAP) + SHOWN][::FACTOR, ::FACTOR] for i in range(count)]


def generate(client, prompt="a red circle", seed=0, num_images=2, guidance=3.0, steps=STEPS, sampler="ancestral",
             negative_prompt=""):
    return pixels(client.predict(prompt, negative_prompt, guidance, steps, sampler, seed, num_images, api_name="/generate"))


@pytest.fixture(scope="module")
def edit_inputs(tmp_path_factory):
    """A random 16×16 image and, as the editor's brush leaves it, a transparent layer with a painted square."""
    folder = tmp_path_factory.mktemp("edit")
    image = PIL.Image.fromarray((np.random.default_rng(0).random((SIDE, SIDE, 3)) * 255).astype(np.uint8))
    image.save(folder / "image.png")
    painted = np.zeros((SIDE, SIDE), dtype=bool)
    painted[4:12, 6:14] = True
    layer = np.zeros((SIDE, SIDE, 4), dtype=np.uint8)
    layer[painted] = (255, 255, 255, 153)  # the brush's translucent white
    PIL.Image.fromarray(layer, mode="RGBA").save(folder / "stroke.png")
    PIL.Image.fromarray(painted.astype(np.uint8) * 255, mode="L").save(folder / "mask.png")
    return {"image": str(folder / "image.png"), "stroke": str(folder / "stroke.png"), "mask": str(folder / "mask.png"),
            "painted": painted, "folder": folder}


def editor(image, *layers):
    return {"background": handle_file(image), "layers": [handle_file(layer) for layer in layers], "composite": None}


def edit(client, image_editor, prompt="a blue square", seed=0, guidance=5.0, steps=STEPS, sampler="ancestral"):
    return pixels(client.predict(image_editor, prompt, guidance, steps, sampler, seed, api_name="/edit"))


def test_space_folder_is_ready_to_upload():
    assert_space_folder_is_ready(SPACE, "GLIDE_MODEL")


def test_demo_refuses_a_folder_that_is_not_a_glide_pipeline(tmp_path, glide_folder):
    M2Config().save_pretrained(tmp_path)  # the config alone: the demo refuses before loading any weights
    with pytest.raises(ValueError, match="holds no diffusers pipeline .no model_index.json.; this demo runs GLIDE"):
        build_demo(str(tmp_path))
    with pytest.raises(ValueError, match="holds a 'GlideInpaintPipeline'; this demo needs a 'GlidePipeline'"):
        build_demo(str(glide_folder / "inpaint"))
    with pytest.raises(ValueError, match="holds a 'GlidePipeline'; this demo needs a 'GlideInpaintPipeline'"):
        build_demo(str(glide_folder), inpaint_path=str(glide_folder))


def test_demo_offers_exactly_generate_and_edit_and_edit_only_with_an_inpainting_pipeline(client, text_only_folder):
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/generate", "/edit"}
    demo = launch(text_only_folder)
    try:
        endpoints = Client(demo.local_url, verbose=False).view_api(return_format="dict")["named_endpoints"]
    finally:
        demo.close()
    assert set(endpoints) == {"/generate"}


def test_generate_is_reproducible_for_a_seed_and_differs_by_seed(client):
    first = generate(client, seed=1, num_images=5)  # 5 images: rows of 4 → 4 × 2 tiles
    assert first.shape == (2 * SHOWN + GAP, 4 * SHOWN + 3 * GAP, 3)
    np.testing.assert_array_equal(first, generate(client, seed=1, num_images=5))
    assert not np.array_equal(first, generate(client, seed=2, num_images=5))
    one, two = tiles(first[:SHOWN], 4)[:2]
    assert not np.array_equal(one, two)  # the images of one request are different samples


def test_guidance_steps_and_sampler_are_each_used(client):
    reference = generate(client)
    assert not np.array_equal(reference, generate(client, guidance=0.0))
    assert not np.array_equal(reference, generate(client, negative_prompt="a blue square"))
    assert not np.array_equal(reference, generate(client, steps="2"))
    fast = generate(client, sampler="fast")
    assert not np.array_equal(reference, fast)
    np.testing.assert_array_equal(fast, generate(client, sampler="fast"))
    assert generate(client, steps="2,1", num_images=1).shape == (SHOWN, SHOWN, 3)  # counts per segment are accepted
    defaults = client.predict(prompt="a red circle", steps=STEPS, num_images=1, api_name="/generate")
    assert pixels(defaults).shape == (SHOWN, SHOWN, 3)  # API clients may leave out every other setting


def test_edit_keeps_every_pixel_outside_the_painted_region(client, edit_inputs):
    sheet = edit(client, editor(edit_inputs["image"], edit_inputs["stroke"]))
    source, mask, edited = tiles(sheet, 3)
    painted = edit_inputs["painted"]
    np.testing.assert_array_equal(mask[..., 0] == 255, painted)
    np.testing.assert_array_equal(edited[~painted], source[~painted])
    assert np.abs(source.astype(int) - pixels(edit_inputs["image"])).max() <= 1  # the source as uploaded, 8-bit rounding
    assert np.abs(edited[painted].astype(int) - source[painted]).mean() > 10
    np.testing.assert_array_equal(sheet, edit(client, editor(edit_inputs["image"], edit_inputs["stroke"])))
    assert not np.array_equal(sheet, edit(client, editor(edit_inputs["image"], edit_inputs["stroke"]), seed=1))


def test_an_opaque_black_and_white_layer_is_read_as_a_mask(client, edit_inputs):
    with_stroke = edit(client, editor(edit_inputs["image"], edit_inputs["stroke"]))
    np.testing.assert_array_equal(with_stroke, edit(client, editor(edit_inputs["image"], edit_inputs["mask"])))


def test_missing_or_empty_inputs_reach_the_client_as_clear_errors(client, edit_inputs):
    with pytest.raises(AppError, match="Write a prompt first"):
        generate(client, prompt="  ")
    with pytest.raises(AppError, match="Enter a seed: any whole number"):
        generate(client, seed=None)
    with pytest.raises(AppError, match="Write a prompt saying what to paint"):
        edit(client, editor(edit_inputs["image"], edit_inputs["stroke"]), prompt="")
    with pytest.raises(AppError, match="Upload an image to edit first"):
        client.predict({"background": None, "layers": [], "composite": None}, "a blue square", 5.0, STEPS, "ancestral", 0,
                       api_name="/edit")
    with pytest.raises(AppError, match="No mask painted: paint over the part of the image to repaint"):
        edit(client, editor(edit_inputs["image"]))


def test_bad_settings_and_images_reach_the_client_as_their_messages(client, edit_inputs):
    folder = edit_inputs["folder"]
    with pytest.raises(AppError, match="Steps '0' is not a respacing of the model's 1000 timesteps"):
        generate(client, steps="0")
    with pytest.raises(AppError, match="Steps 'many' is not a respacing .* such as 10,10,3,2,2"):
        edit(client, editor(edit_inputs["image"], edit_inputs["stroke"]), steps="many")

    PIL.Image.new("RGBA", (SIDE // 2, SIDE // 2), (255, 255, 255, 255)).save(folder / "small_layer.png")
    with pytest.raises(AppError, match="A mask layer is 8×8 but the image is 16×16"):
        edit(client, editor(edit_inputs["image"], str(folder / "small_layer.png")))

    # A one-pixel stroke on a 64×64 upload vanishes when the mask is resized to the model's 16×16 pixels.
    PIL.Image.new("RGB", (64, 64), (90, 20, 20)).save(folder / "large.png")
    dot = PIL.Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    dot.putpixel((1, 1), (255, 255, 255, 255))
    dot.save(folder / "dot.png")
    with pytest.raises(AppError, match="covers none of the model's 16×16 pixels"):
        edit(client, editor(str(folder / "large.png"), str(folder / "dot.png")))


@requires_chromium
def test_generate_page_shows_samples_in_headless_chromium(glide_demo, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        driver.get(glide_demo.local_url)
        prompt = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea"))
        assert not driver.find_elements(By.CSS_SELECTOR, "#samples img")  # nothing is sampled before the click
        prompt.clear()
        prompt.send_keys("a blue square on the right")
        steps = driver.find_element(By.CSS_SELECTOR, "#generate-steps input")
        steps.send_keys(Keys.CONTROL, "a")
        steps.send_keys(STEPS, Keys.ENTER)
        driver.find_element(By.CSS_SELECTOR, "#generate").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples img"))
        screenshot = tmp_path / "glide_demo.png"
        driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 20_000


def test_demo_answers_50_concurrent_generate_and_edit_requests_intact(glide_demo, edit_inputs):
    assert glide_demo._queue.max_size == QUEUE_SIZE and glide_demo.show_error
    samples = concurrent_results(glide_demo.local_url, "a red circle", "", 3.0, "2", "fast", 4, 1, api_name="/generate")
    assert_all_identical_images(samples)
    edits = concurrent_results(glide_demo.local_url, editor(edit_inputs["image"], edit_inputs["stroke"]), "a blue square",
                               5.0, "2", "fast", 4, api_name="/edit")
    assert_all_identical_images(edits)


def test_out_of_range_seeds_and_unreadable_uploads_reach_the_client_as_clear_errors(client, edit_inputs, tmp_path):
    for seed in (MAX_SEED + 1, 2**64):  # torch alone: "Overflow when unpacking long long"
        with pytest.raises(AppError, match=str(MAX_SEED)):
            generate(client, seed=seed)
    text = tmp_path / "image.png"
    text.write_text("not an image")
    with pytest.raises(AppError, match="not an image that can be read"):
        edit(client, editor(str(text), edit_inputs["stroke"]))
