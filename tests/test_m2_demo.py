import socket
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from hf_mmdl.demos.m2 import build_demo, example_scene

from browser import headless_chromium, requires_chromium

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "m2"


@pytest.fixture(scope="module")
def captioner_folder(trained_captioner):
    return trained_captioner[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def running_demo(captioner_folder):
    demo = build_demo(str(captioner_folder))
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, ssr_mode=False)
    yield demo
    demo.close()


def test_space_folder_is_ready_to_upload():
    front_matter = (SPACE / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front_matter and "app_file: app.py" in front_matter
    assert "hf_mmdl[demo]" in (SPACE / "requirements.txt").read_text()
    assert "build_demo" in (SPACE / "app.py").read_text()


def test_demo_captions_an_uploaded_image_with_the_chosen_beam_size(running_demo, tmp_path):
    client = Client(running_demo.local_url, verbose=False)
    assert "/caption" in client.view_api(return_format="dict")["named_endpoints"]
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
