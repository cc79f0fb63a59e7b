"""The package as it is distributed: hf_mmdl is on no package index, so users install it from its source or from a
wheel built there (README, model cards, Spaces). Both the wheel and the sdist must hold every module and sound
metadata, and the wheel must import on its own."""

import ast
import email.parser
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def setup_literals() -> dict:
    tree = ast.parse((ROOT / "setup.py").read_text())
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in ("REQUIRES", "EXTRAS")}


def package_modules() -> set[str]:
    """Every module of the package, relative to src/ (e.g. hf_mmdl/architectures/m2.py)."""
    return {str(path.relative_to(ROOT / "src")) for path in (ROOT / "src" / "hf_mmdl").rglob("*.py")}


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """A wheel and an sdist built from a copy of the sources (building in the checkout would leave build/ and
    egg-info there), with the installed setuptools: no download."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp / "dist"
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, env=env, capture_output=True)
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(out)], cwd=source, check=True, env=env,
                   capture_output=True)
    return out


def test_the_wheel_holds_every_module_and_sound_metadata(dist):
    import hf_mmdl

    wheel = dist / f"hf_mmdl-{hf_mmdl.__version__}-py3-none-any.whl"
    assert wheel.is_file(), sorted(p.name for p in dist.iterdir())
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"hf_mmdl-{hf_mmdl.__version__}.dist-info"
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert package_modules() <= names, sorted(package_modules() - names)
    assert {"hf_mmdl/architectures/m2.py", "hf_mmdl/architectures/glide.py", "hf_mmdl/demos/widgets.py"} <= names
    assert not any("__pycache__" in name or name.startswith(("tests/", "spaces/")) for name in names)
    # What `twine check` and an index would look at: the core fields, a rendered-as-markdown description.
    assert metadata["Metadata-Version"] and metadata["Name"] == "hf_mmdl" and metadata["Version"] == hf_mmdl.__version__
    assert metadata["Summary"] and metadata["License"] == "Apache-2.0" and metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert metadata.get_payload().strip() == (ROOT / "README.md").read_text().strip()
    requires = {Requirement(line) for line in metadata.get_all("Requires-Dist") if "extra ==" not in line}
    literals = setup_literals()
    assert requires == {Requirement(line) for line in literals["REQUIRES"]}
    assert set(metadata.get_all("Provides-Extra")) == set(literals["EXTRAS"]) | {"test", "all"}  # the last two built below it
    assert "hf-mmdl = hf_mmdl.cli:main" in entry_points


def test_the_sdist_holds_the_sources_setup_and_readme(dist):
    import hf_mmdl

    stem = f"hf_mmdl-{hf_mmdl.__version__}"
    with tarfile.open(dist / f"{stem}.tar.gz") as archive:
        names = {name.removeprefix(f"{stem}/") for name in archive.getnames()}
    assert {"setup.py", "README.md", "PKG-INFO"} <= names
    assert {f"src/{module}" for module in package_modules()} <= names


def test_the_wheel_installs_and_imports_on_its_own(dist, tmp_path):
    import hf_mmdl

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(dist / f"hf_mmdl-{hf_mmdl.__version__}-py3-none-any.whl")], check=True, capture_output=True)
    probe = ("import hf_mmdl, hf_mmdl.demos.widgets; from hf_mmdl.architectures import ARCHITECTURES; "
             "print(hf_mmdl.__file__); print(' '.join(sorted(ARCHITECTURES)))")
    result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
                            check=True, capture_output=True, text=True)
    location, names = result.stdout.splitlines()[-2:]
    assert Path(location).is_relative_to(target)
    from hf_mmdl.architectures import ARCHITECTURES

    assert names.split() == sorted(ARCHITECTURES)
