"""The multimodal VAE Gradio demo through gradio_client on a tiny random model saved by the tests: the image ±
attribute tab returns the decoded image and a caption, the other tabs draw and describe, bad inputs give clear
errors, and concurrent requests all come back intact."""

from pathlib import Path

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from hf_mmdl import M2Config, MultimodalVAEModel, MultimodalVAEProcessor
from hf_mmdl.data.attribute_scenes import COMBINATIONS
from hf_mmdl.data.text_to_image import render_prompt_scene, scene_caption
from hf_mmdl.demos.autoencoders import GAP, TILE
from hf_mmdl.demos.multimodal_vae import MultimodalVAEDemo, build_demo
from hf_mmdl.modeling.configuration_multimodal_vae import multimodal_vae_config_for

from demo_load import (concurrent_results, launch_on_loopback, pixels,
                       assert_space_folder_is_ready)

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "multimodal_vae"
SIDE = 16
SHOWN = TILE // SIDE * SIDE


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mvae-demo")
    processor = MultimodalVAEProcessor.for_captions([scene_caption(s, c, p) for c, s, p in COMBINATIONS], image_size=SIDE)
    torch.manual_seed(0)
    MultimodalVAEModel(multimodal_vae_config_for("tiny", **processor.config_kwargs())).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def client(model_folder):
    demo = launch_on_loopback(build_demo(str(model_folder)))
    yield Client(demo.local_url, verbose=False)
    demo.close()


@pytest.fixture
def scene(tmp_path):
    path = tmp_path / "scene.png"
    render_prompt_scene("circle", "red", "top left", SIDE).save(path)
    return handle_file(str(path))


def test_image_plus_minus_attribute_returns_the_input_the_decoded_result_and_its_caption(client, model_folder, scene):
    sheet, caption = client.predict(scene, "red", "blue", api_name="/edit")
    assert pixels(sheet).shape == (SHOWN, 2 * SHOWN + GAP, 3)  # input | result, enlarged
    # The same arithmetic done here gives the same caption.
    expected = MultimodalVAEDemo(str(model_folder)).edit(render_prompt_scene("circle", "red", "top left", SIDE),
                                                         "red", "blue")[1]
    assert caption == expected


def test_caption_to_image_and_image_to_caption(client, scene):
    image, back = client.predict("a green square in the bottom right", api_name="/draw")
    assert pixels(image).shape == (SHOWN, SHOWN, 3) and isinstance(back, str)
    assert isinstance(client.predict(scene, 2, api_name="/describe"), str)


def test_bad_inputs_get_clear_messages(client, scene, model_folder):
    with pytest.raises(AppError, match="giraffe is not in the list of choices"):  # Gradio's dropdown check
        client.predict(scene, "red", "giraffe", api_name="/edit")
    with pytest.raises(ValueError, match="Choose the word to add"):  # the same from Python
        MultimodalVAEDemo(str(model_folder)).edit(render_prompt_scene("circle", "red", "top left", SIDE), "red", "giraffe")
    with pytest.raises(AppError, match="outside this model's vocabulary"):
        client.predict("a pink elephant", api_name="/draw")
    with pytest.raises(AppError, match="is empty"):
        client.predict("", api_name="/draw")


def test_a_folder_of_another_architecture_is_refused(tmp_path):
    M2Config().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="this demo shows a 'multimodal_vae' model"):
        MultimodalVAEDemo(str(tmp_path))


def test_concurrent_requests_all_come_back_intact(client, scene):
    results = concurrent_results(client.src, scene, "red", "blue", api_name="/edit", count=20)
    assert len({caption for _, caption in results}) == 1
    paths = [sheet for sheet, _ in results]
    first = pixels(paths[0])
    assert all((pixels(path) == first).all() for path in paths)


def test_space_folder_is_ready_to_upload():
    assert_space_folder_is_ready(SPACE, "MULTIMODAL_VAE_MODEL")
