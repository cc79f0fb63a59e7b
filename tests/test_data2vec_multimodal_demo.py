"""The data2vec-multimodal Gradio demo through gradio_client and a headless browser, on a tiny random model saved by
the tests: each kind of query finds neighbours in all three modalities, bad inputs give clear errors, and 50
concurrent requests all come back intact."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from scipy.io import wavfile

from hf_mmdl import Data2VecMultimodalModel, M2Config
from hf_mmdl.data.speech import resample
from hf_mmdl.demos import QUEUE_SIZE
from hf_mmdl.demos.data2vec_multimodal import (
    EXAMPLE_TEXT, GAP, LABEL, NEIGHBOURS, TILE, TrimodalSearch, build_demo, mono_waveform,
)

from browser import headless_chromium, requires_chromium
from demo_load import (CONCURRENT_REQUESTS, assert_all_identical_images, concurrent_results, launch_on_loopback,
                       pixels, assert_space_folder_is_ready)
from test_data2vec_multimodal_pipeline import IMAGE_SIZE, save_tiny_model

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "data2vec_multimodal"
FACTOR = TILE // IMAGE_SIZE  # each neighbour image is enlarged by this whole factor
SHOWN = FACTOR * IMAGE_SIZE


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("d2v-demo"))


@pytest.fixture(scope="module")
def search(model_folder):
    """The demo's search over its gallery, built again here to know what each query should find."""
    return TrimodalSearch(str(model_folder))


@pytest.fixture(scope="module")
def running_demo(model_folder):
    demo = launch_on_loopback(build_demo(str(model_folder)))
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(running_demo):
    return Client(running_demo.local_url, verbose=False)


def write_wav(path, rate, samples) -> str:
    wavfile.write(path, rate, samples)
    return str(path)


def ranked(lines: str) -> list[tuple[str, float]]:
    """The neighbour lines "1. cos 0.912  caption ..." as (caption part, cosine), best first."""
    result = []
    for i, line in enumerate(lines.splitlines()):
        rank, _, cosine, rest = line.split(" ", 3)
        assert rank == f"{i + 1}." and _ == "cos"
        result.append((rest.strip(), float(cosine)))
    return result


def assert_shows(results, search, query: torch.Tensor):
    """The demo's four outputs are the gallery rows `search` ranks nearest to `query` in each modality."""
    sheet, captions, spoken, nearest_audio = results
    found = search.neighbours(query)
    for modality, rows in found.items():  # the most similar rows by cosine, best first
        cosines = (search.embeddings[modality] @ query[0]).numpy()
        assert [row for row, _ in rows] == list(np.argsort(-cosines, kind="stable")[:NEIGHBOURS])
    assert ranked(captions) == [(search.captions[row], pytest.approx(score, abs=1e-3)) for row, score in found["text"]]
    assert [(caption, cosine) for caption, cosine in ranked(spoken)] == [
        (f"“{search.captions[row]}” ({search.voices[row]})", pytest.approx(score, abs=1e-3))
        for row, score in found["audio"]]
    shown = pixels(sheet)
    assert shown.shape == (SHOWN + LABEL, NEIGHBOURS * (SHOWN + GAP) - GAP, 3)
    for i, (row, _) in enumerate(found["image"]):  # each tile is its gallery image, enlarged with hard edges
        tile = shown[:SHOWN, i * (SHOWN + GAP):i * (SHOWN + GAP) + SHOWN][::FACTOR, ::FACTOR]
        np.testing.assert_array_equal(tile, np.asarray(search.images[row].convert("RGB")))
    rate, samples = wavfile.read(nearest_audio)
    expected = search.clips[found["audio"][0][0]]
    assert rate == 16000 and samples.dtype == np.int16 and len(samples) == len(expected)
    np.testing.assert_allclose(samples / 32767, expected, atol=1 / 32767)


def test_space_folder_is_ready_to_upload():
    # The gallery's spoken captions need espeak-ng and scipy: the `data` extra.
    assert_space_folder_is_ready(SPACE, "DATA2VEC_MODEL", extras=("demo", "data"))


def test_demo_refuses_a_model_that_is_not_data2vec_multimodal(tmp_path):
    M2Config().save_pretrained(tmp_path)  # the config alone: the demo refuses before loading any weights
    with pytest.raises(ValueError, match="'m2_transformer' model; this demo shows 'data2vec_multimodal' models"):
        build_demo(str(tmp_path))


def test_the_gallery_holds_the_encoders_features_of_the_scenes_test_split(search, model_folder):
    model = Data2VecMultimodalModel.from_pretrained(model_folder).eval()
    assert len(search.captions) == 60 and search.images[0].size == (IMAGE_SIZE, IMAGE_SIZE)
    rows = [0, 17, 59]
    with torch.no_grad():
        expected = {
            "text": model.get_text_features(**search.processor(text=[search.captions[r] for r in rows])),
            "image": model.get_image_features(**search.processor(images=[search.images[r] for r in rows])),
            "audio": torch.cat([model.get_audio_features(**search.processor(audio=search.clips[r], sampling_rate=16000))
                                for r in rows]),
        }
    for modality, features in expected.items():
        torch.testing.assert_close(search.embeddings[modality][rows], features, atol=1e-5, rtol=1e-4)


def test_demo_offers_exactly_its_three_searches(running_demo, client):
    # The upload components are drawn by Gradio's own components (they only add a check on the server).
    types = {component["type"] for component in running_demo.config["components"]}
    assert {"image", "audio"} <= types and not {"imageinput", "audioinput"} & types
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {
        "/search_text", "/search_image", "/search_audio"}


def test_a_caption_finds_neighbours_in_all_three_modalities(client, search):
    results = client.predict("a large blue square at the top", api_name="/search_text")
    assert_shows(results, search, search.embed_texts(["a large blue square at the top"]))


def test_an_image_finds_neighbours_in_all_three_modalities(client, search, tmp_path):
    path = tmp_path / "query.png"
    search.images[7].save(path)
    results = client.predict(handle_file(str(path)), api_name="/search_image")
    assert_shows(results, search, search.embed_images([search.images[7]]))
    # The gallery holds the uploaded image itself: it is the nearest image.
    assert pixels(results[0])[:SHOWN, :SHOWN][::FACTOR, ::FACTOR].tolist() == np.asarray(search.images[7]).tolist()


def test_stereo_audio_at_another_rate_is_mixed_and_resampled(client, search, tmp_path):
    clip = search.clips[3]
    low = resample(clip, 16000, 8000)
    stereo = (np.stack([low, 0.5 * low], axis=1) * 32767).astype(np.int16)  # (samples, channels) PCM
    results = client.predict(handle_file(write_wav(tmp_path / "query.wav", 8000, stereo)), api_name="/search_audio")
    # What the demo does to the upload, by hand: PCM to float, channels averaged, 8 → 16 kHz.
    mono = resample((stereo / 32768).mean(axis=1).astype(np.float32), 8000, 16000)
    assert_shows(results, search, search.embed_audio([mono]))


def test_gradio_audio_becomes_a_mono_16khz_waveform():
    stereo = np.stack([np.full(800, 16384, np.int16), np.full(800, -16384, np.int16)], axis=1)
    stereo[::2] = 8192  # not silent
    mixed = mono_waveform(8000, stereo)
    assert mixed.dtype == np.float32 and mixed.shape == (1600,)
    np.testing.assert_allclose(mono_waveform(16000, stereo), stereo.mean(axis=1) / 32768, atol=1e-6)
    np.testing.assert_allclose(mono_waveform(16000, np.arange(100, dtype=np.float32)), np.arange(100), atol=1e-4)


def test_bad_inputs_reach_the_client_as_clear_errors(client, tmp_path):
    with pytest.raises(AppError, match="Type a caption first"):
        client.predict(None, api_name="/search_text")
    for text in ("", "   "):  # the processor's own messages
        with pytest.raises(AppError, match="every caption needs at least one word"):
            client.predict(text, api_name="/search_text")
    with pytest.raises(AppError, match="Upload an image first"):
        client.predict(None, api_name="/search_image")
    not_an_image = tmp_path / "caption.png"
    not_an_image.write_text("a red circle")
    with pytest.raises(AppError, match="not an image that can be read"):
        client.predict(handle_file(str(not_an_image)), api_name="/search_image")
    deep = tmp_path / "depth.png"
    PIL.Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)).save(deep)  # 16-bit: no implied range
    with pytest.raises(AppError, match="cannot be converted to RGB"):
        client.predict(handle_file(str(deep)), api_name="/search_image")
    with pytest.raises(AppError, match="Record or upload a sound first"):
        client.predict(None, api_name="/search_audio")
    for name, content in (("notes.wav", b"a red circle"), ("scene.wav", not_an_image.read_bytes())):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(AppError, match="not audio that can be read"):
            client.predict(handle_file(str(tmp_path / name)), api_name="/search_audio")
    silent = write_wav(tmp_path / "silent.wav", 16000, np.zeros(16000, np.int16))
    with pytest.raises(AppError, match="is silent"):
        client.predict(handle_file(silent), api_name="/search_audio")
    short = write_wav(tmp_path / "short.wav", 16000, np.array([0, 900, -900, 300], np.int16))
    with pytest.raises(AppError, match="too short for one frame"):
        client.predict(handle_file(short), api_name="/search_audio")


def test_empty_audio_reaches_the_client_as_a_clear_error(client, tmp_path):
    empty = write_wav(tmp_path / "empty.wav", 16000, np.zeros(0, np.int16))
    with pytest.raises(AppError, match="is empty"):
        client.predict(handle_file(empty), api_name="/search_audio")


def test_demo_answers_50_concurrent_requests_intact(running_demo):
    assert running_demo._queue.max_size == QUEUE_SIZE and running_demo.show_error
    results = concurrent_results(running_demo.local_url, "a small green star on the left", api_name="/search_text")
    assert len({(captions, spoken) for _, captions, spoken, _ in results}) == 1
    assert_all_identical_images([sheet for sheet, _, _, _ in results])
    clips = [wavfile.read(audio) for _, _, _, audio in results]  # a truncated file raises or differs here
    assert len(clips) == CONCURRENT_REQUESTS
    for rate, samples in clips[1:]:
        assert rate == clips[0][0]
        np.testing.assert_array_equal(samples, clips[0][1])


@requires_chromium
def test_page_shows_the_example_captions_neighbours_in_headless_chromium(running_demo, search, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium() as driver:
        driver.get(running_demo.local_url)
        # The page searches its example caption when it loads.
        captions = WebDriverWait(driver, 120).until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#captions textarea").get_attribute("value")
        )
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#images img"))
        screenshot = tmp_path / "data2vec_demo.png"
        driver.save_screenshot(str(screenshot))
    found = search.neighbours(search.embed_texts([EXAMPLE_TEXT]))["text"]
    assert [caption for caption, _ in ranked(captions)] == [search.captions[row] for row, _ in found]
    assert screenshot.stat().st_size > 20_000


def test_the_command_and_the_space_launch_with_errors_shown_on_gradios_default_server(model_folder, monkeypatch):
    import runpy
    import sys

    import gradio as gr

    from hf_mmdl.cli import main

    launches = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launches.append((self._queue.max_size, kwargs)))
    main(["demo", str(model_folder)])  # found through the architecture's declaration
    monkeypatch.setattr(sys, "argv", ["app.py", str(model_folder)])
    runpy.run_path(str(SPACE / "app.py"), run_name="__main__")
    assert launches == [(QUEUE_SIZE, {"show_error": True})] * 2
