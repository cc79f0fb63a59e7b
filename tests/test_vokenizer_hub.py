"""`hf-mmdl push` of a Vokenizer folder, offline: the key store files go up beside the model and processor, the card
describes them, and what is uploaded loads back as a Vokenizer."""

from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard

from hf_mmdl.hub import model_card, push_folder_to_hub
from hf_mmdl.vokenization import Vokenizer

from test_vokenizer_demo import tiny_vokenizer

KEY_STORE = ["voken_image_ids.txt", "voken_index.faiss", "voken_index_config.json", "voken_keys.safetensors"]


@pytest.fixture
def folder(tmp_path):
    vokenizer = tiny_vokenizer(thumbnail_size=8)
    ivf = Vokenizer(vokenizer.model, vokenizer.processor, vokenizer.keys, image_ids=vokenizer.image_ids,
                    index_type="ivf", nlist=2, nprobe=1, thumbnails=vokenizer.thumbnails)
    ivf.save_pretrained(tmp_path / "vokenizer")
    (tmp_path / "vokenizer" / "optimizer.pt").write_bytes(b"not for upload")
    return tmp_path / "vokenizer"


def test_push_uploads_the_key_store_with_the_model_and_it_loads_back(folder, monkeypatch, tmp_path):
    uploaded = {}

    def fake_upload_folder(self, repo_id, folder_path, commit_message, **kwargs):
        staged = Path(folder_path)
        uploaded["files"] = sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file())
        uploaded["card"] = ModelCard.load(staged / "README.md")
        uploaded["vokenizer"] = Vokenizer.from_pretrained(staged)  # what a Hub user's from_pretrained reads
        return "https://huggingface.co/someone/vokenizer/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, private=False, exist_ok=False, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    assert push_folder_to_hub(folder, "someone/vokenizer").endswith("/commit/0")
    assert uploaded["files"] == sorted([
        "README.md", "config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
        "tokenizer_config.json", *KEY_STORE, "voken_thumbnails.safetensors"])
    loaded, original = uploaded["vokenizer"], Vokenizer.from_pretrained(folder)
    assert loaded.index_type == "ivf" and loaded.index.nprobe == 1 and loaded.image_ids == original.image_ids
    assert (loaded.vokenize("a red circle")[0].vokens == original.vokenize("a red circle")[0].vokens).all()
    assert uploaded["card"].data.pipeline_tag == "feature-extraction"


def test_the_card_describes_the_key_store(folder):
    text = str(model_card(folder, "someone/vokenizer"))
    section = text.split("## Key store")[1].split("## Training data")[0]
    assert "keys of 10 images in the 8-dimensional joint space" in section
    assert "an IVF index of 2 k-means lists, 1 searched per token by default" in section
    assert "8×8-pixel thumbnails" in section
    for name in KEY_STORE:
        assert f"`{name}`" in section
    assert 'Vokenizer.from_pretrained("someone/vokenizer")' in text


def test_the_card_of_a_matcher_without_key_store_says_so(folder):
    for name in KEY_STORE:
        (folder / name).unlink()
    section = str(model_card(folder, "someone/matcher")).split("## Key store")[1]
    assert "without a key store" in section and "Vokenizer.build" in section
