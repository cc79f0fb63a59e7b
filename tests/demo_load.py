"""What every demo's tests share: launching on loopback and firing many concurrent gradio_client requests."""

import socket

import numpy as np
import PIL.Image
from gradio_client import Client

from hf_mmdl.demos import QUEUE_SIZE, launch

CONCURRENT_REQUESTS = 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_on_loopback(demo):
    """`demo` served on 127.0.0.1 as the Space apps serve it (`hf_mmdl.demos.launch`), without blocking."""
    launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, ssr_mode=False)
    return demo


def pixels(path) -> np.ndarray:
    """Every pixel of an image file; a truncated or half-rewritten file raises here."""
    with PIL.Image.open(path) as image:
        image.load()
        return np.asarray(image.convert("RGB"))


def concurrent_results(url: str, *args, api_name: str, count: int = CONCURRENT_REQUESTS) -> list:
    """`count` requests with the same inputs, all submitted before any is waited for (each a separate queue event
    and file download), and their results in order; a request that is lost raises."""
    assert count <= QUEUE_SIZE, "more requests than the queue holds would be turned away"
    # httpx's default 5 s timeout is for idle servers: on a busy 2-core machine the server may take longer to accept a
    # request while it computes another, which is slowness, not loss.
    client = Client(url, verbose=False, httpx_kwargs={"timeout": 120})
    jobs = [client.submit(*args, api_name=api_name) for _ in range(count)]
    return [job.result(timeout=300) for job in jobs]


def assert_all_identical_images(paths: list) -> None:
    """All files are complete images with the same pixels (the requests had the same inputs). (gradio_client stores
    downloads by content hash, so identical results may share one local path; each was downloaded in full.)"""
    assert len(paths) == CONCURRENT_REQUESTS
    first = pixels(paths[0])
    for path in paths[1:]:
        np.testing.assert_array_equal(pixels(path), first)


def assert_space_folder_is_ready(space, model_variable: str, extras=("demo",)) -> None:
    """A Space folder uploads as is: Gradio front matter naming app.py, the requirements of
    `space_requirements_match_the_package`, and an app that builds the package's demo on the model named by the
    environment variable `model_variable`."""
    front_matter = (space / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in front_matter and "app_file: app.py" in front_matter
    space_requirements_match_the_package(space, extras)
    app = (space / "app.py").read_text()
    assert "build_demo" in app and model_variable in app


def space_requirements_match_the_package(space, extras=("demo",)) -> None:
    """A Space's requirements.txt installs exactly what the package needs to run its demo, the install requirements
    and `extras` in order (hf_mmdl is on no package index: the Space ships the package itself, see its README), and
    its app uses Gradio's server defaults."""
    import ast

    setup = ast.parse((space.parents[1] / "setup.py").read_text())
    values = {node.targets[0].id: node.value for node in setup.body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    extra_requirements = ast.literal_eval(values["EXTRAS"])
    required = ast.literal_eval(values["REQUIRES"]) + [r for extra in extras for r in extra_requirements[extra]]
    lines = [line.strip() for line in (space / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == required
    assert "hf_mmdl" not in " ".join(line for line in lines if not line.startswith("#"))
    app = (space / "app.py").read_text()
    assert "0.0.0.0" not in app and "server_name" not in app and "launch(build_demo" in app
    assert "cp -r src/hf_mmdl" in (space / "README.md").read_text()
