import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard

from hf_mmdl.hub import model_card, push_folder_to_hub

RESULTS = {
    "model": {"bleu_1": 0.9, "bleu_4": 0.8, "rouge_l": 0.9, "cider_d": 4.1},
    "constant_caption_baseline": {"bleu_1": 0.6, "bleu_4": 0.2, "rouge_l": 0.5, "cider_d": 0.7},
    "nearest_neighbour_baseline": {"bleu_1": 0.6, "bleu_4": 0.3, "rouge_l": 0.6, "cider_d": 1.3},
    "dataset": "scenes",
    "test_images": 250,
    "stage": "cross-entropy",
}


@pytest.fixture
def saved_captioner(tmp_path, grid_model, image_processor_m2):
    folder = tmp_path / "m2"
    grid_model.save_pretrained(folder)
    image_processor_m2.save_pretrained(folder)
    (folder / "results.json").write_text(json.dumps(RESULTS))
    (folder / "optimizer.pt").write_bytes(b"not for upload")
    return folder


def test_model_card_describes_cites_reports_metrics_and_shows_loading(saved_captioner):
    card = model_card(saved_captioner, "someone/m2-scenes")
    text = str(card)
    assert card.data.pipeline_tag == "image-text-to-text" and card.data.library_name == "transformers"
    assert "Meshed-Memory Transformer for Image Captioning" in text and "cornia2020meshed" in text
    assert "| this model | 90.0 | 80.0 | 90.0 | 410.0 |" in text
    assert "baseline: best constant caption" in text and "nearest neighbour" in text
    assert 'AutoModelForImageTextToText.from_pretrained("someone/m2-scenes")' in text
    assert "built-in procedurally generated scenes" in text and "Intended use and limits" in text


def test_push_uploads_model_processor_and_card_in_one_commit(saved_captioner, monkeypatch):
    calls = {}

    def fake_create_repo(self, repo_id, private=False, exist_ok=False, **kwargs):
        calls["create_repo"] = (repo_id, private, exist_ok)

    def fake_upload_folder(self, repo_id, folder_path, commit_message, **kwargs):
        folder = Path(folder_path)
        calls["files"] = sorted(p.name for p in folder.iterdir())
        calls["card"] = ModelCard.load(folder / "README.md")
        return "https://huggingface.co/someone/m2-scenes/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    assert push_folder_to_hub(saved_captioner, "someone/m2-scenes").endswith("/commit/0")
    assert calls["create_repo"] == ("someone/m2-scenes", False, True)
    assert calls["files"] == [
        "README.md", "config.json", "generation_config.json", "model.safetensors", "processor_config.json",
        "results.json", "tokenizer.json", "tokenizer_config.json",
    ]
    assert calls["card"].data.tags == ["image-captioning", "m2_transformer", "hf_mmdl"]


def test_offline_push_fails_loudly(saved_captioner):
    with pytest.raises(Exception, match="(?i)offline"):
        push_folder_to_hub(saved_captioner, "someone/m2-scenes")


def test_push_of_a_pipeline_folder_uploads_every_component_and_the_processor(tmp_path, monkeypatch):
    from transformers import AutoProcessor

    from test_glide_pipeline import variant_pipeline
    from hf_mmdl.pipelines import GlidePipeline

    variant_pipeline(GlidePipeline).save_pretrained(tmp_path / "glide")
    uploaded = {}

    def fake_upload_folder(self, repo_id, folder_path, commit_message, **kwargs):
        folder = Path(folder_path)
        uploaded["files"] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        uploaded["processor"] = AutoProcessor.from_pretrained(folder)  # what a Hub user's AutoProcessor reads
        return "https://huggingface.co/someone/glide/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, *args, **kwargs: None)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    push_folder_to_hub(tmp_path / "glide", "someone/glide")
    for name in ("model_index.json", "processor_config.json", "processor/tokenizer.json", "processor/processor_config.json",
                 "glide/model.safetensors", "scheduler/scheduler_config.json"):
        assert name in uploaded["files"], name
    assert type(uploaded["processor"]).__name__ == "GlideProcessor"


ROOT = Path(__file__).resolve().parents[1]


def test_the_card_says_how_to_install_the_package_as_it_is_distributed(saved_captioner):
    import hf_mmdl

    text = str(model_card(saved_captioner, "someone/m2-scenes"))
    assert "not published on a package index" in text
    assert "in a clone of the hf_mmdl repository, `pip install .`" in text
    assert f"pip install dist/hf_mmdl-{hf_mmdl.__version__}-py3-none-any.whl" in text


@pytest.mark.parametrize("pattern", ["pip install hf_mmdl", "hf_mmdl[", "pip install -U hf_mmdl"])
def test_nothing_tells_users_to_install_hf_mmdl_from_a_package_index(pattern):
    # No package index has hf_mmdl: cards, Spaces, error messages and docs must say to install from the source.
    files = [*ROOT.glob("src/**/*.py"), *ROOT.glob("spaces/*/*"), ROOT / "README.md", *ROOT.glob("examples/*.py")]
    offenders = [str(f.relative_to(ROOT)) for f in files if f.is_file() and pattern in f.read_text(encoding="utf-8")]
    assert not offenders, f"{pattern!r} in {offenders}"
