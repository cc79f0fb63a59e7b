"""The shared loader of a user's own data: split names, held-out splits carved from train and reported under their
real origin, nothing written into the user's folder, a pretrained backbone for the captioner."""

import importlib.util
import json
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

from hf_mmdl.data import load_caption_dataset, load_image_dataset, load_user_dataset
from hf_mmdl.training.autoencoder import AutoencoderDataArguments, AutoencoderModelArguments, AutoencoderTrainingArguments, run_autoencoder
from hf_mmdl.training.captioning import (
    CAPTIONING_RECIPE,
    CaptioningDataArguments,
    CaptioningModelArguments,
    CaptioningTrainingArguments,
    run_captioning,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_clipart(folder: Path, num_images: int) -> Path:
    spec = importlib.util.spec_from_file_location("make_clipart_folder", EXAMPLES / "make_clipart_folder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_clipart_folder(folder, num_images, seed=1)


def rows(count: int, start: int = 0) -> list[dict]:
    return [{"picture": PIL.Image.fromarray(np.full((12, 12, 3), 10 * (i % 20), dtype=np.uint8)), "text": f"shade {i % 20}"}
            for i in range(start, start + count)]


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("alias", ["val", "valid", "dev"])
def test_val_valid_and_dev_splits_are_read_as_validation_and_reported_by_their_name(alias, tmp_path):
    folder = tmp_path / "mine"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(40)),
                          alias: datasets.Dataset.from_list(rows(6, 100))}).save_to_disk(str(folder))
    data, origins = load_user_dataset(str(folder), {"picture": "image", "text": "captions"})
    assert len(data["validation"]) == 6 and data["validation"][0]["captions"] == "shade 0"
    assert origins["validation"] == f"the dataset's {alias!r} split"
    assert len(data["test"]) == 2 and len(data["train"]) == 38 and "carved" not in origins["test"]
    assert "5% of train (seed 0)" in origins["test"]


def test_splits_of_other_names_or_two_validation_splits_are_refused(tmp_path):
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(8)), "extra": datasets.Dataset.from_list(rows(2))}
                         ).save_to_disk(str(tmp_path / "extra"))
    with pytest.raises(ValueError, match="split 'extra'.*name its splits train, validation"):
        load_user_dataset(str(tmp_path / "extra"), {"picture": "image"})
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(8)), "val": datasets.Dataset.from_list(rows(2)),
                          "dev": datasets.Dataset.from_list(rows(2))}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(ValueError, match="two validation splits"):
        load_user_dataset(str(tmp_path / "two"), {"picture": "image"})


def test_missing_held_out_splits_are_carved_from_train_and_logged(tmp_path, caplog):
    datasets.Dataset.from_list(rows(100)).save_to_disk(str(tmp_path / "flat"))
    data = load_caption_dataset(str(tmp_path / "flat"), image_column="picture", captions_column="text")
    assert {k: len(v) for k, v in data.items()} == {"train": 90, "validation": 5, "test": 5}
    assert "No validation split: 5 rows carved from train" in caplog.text and "No test split" in caplog.text
    images = load_image_dataset(str(tmp_path / "flat"), num_validation=500, image_column="picture")
    assert {k: len(v) for k, v in images.items()} == {"train": 95, "validation": 5}


def test_loading_and_training_write_nothing_into_a_saved_dataset_folder(tmp_path):
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(rows(60)).save_to_disk(str(folder))  # one caption string per row: the loader maps it
    before = files(folder)
    run_captioning(
        CaptioningModelArguments(model_size="tiny", image_size=16),
        CaptioningDataArguments(dataset_name=str(folder), image_column="picture", captions_column="text", max_test_images=2),
        CaptioningTrainingArguments(output_dir=str(tmp_path / "m2"), max_steps=2, per_device_train_batch_size=4,
                                    eval_strategy="no", save_strategy="no", disable_tqdm=True, num_beams=1, meteor=False),
    )
    run_autoencoder(
        AutoencoderModelArguments(model_type="vae", model_size="tiny"),
        AutoencoderDataArguments(dataset_name=str(folder), image_column="picture", image_size=16, num_eval_images=4),
        AutoencoderTrainingArguments(output_dir=str(tmp_path / "vae"), max_steps=2, track_every=0, disable_tqdm=True),
    )
    assert files(folder) == before
    results = json.loads((tmp_path / "m2" / "results.json").read_text())
    assert results["split_origins"]["test"].startswith("5% of train") and results["test_images"] == 2


def test_an_imagefolder_of_transparent_clip_art_in_mixed_modes_and_sizes_trains(tmp_path):
    folder = make_clipart(tmp_path / "clipart", 40)
    before = files(folder)
    data = load_caption_dataset(str(folder), captions_column="text")
    sizes = {image.size for image in data["train"]["image"]}
    assert len(sizes) > 10 and {image.mode for image in data["train"]["image"]} == {"RGBA", "LA", "P"}
    assert all(1 <= len(c[0].split()) <= 31 for c in data["train"]["captions"])
    results = run_captioning(
        CaptioningModelArguments(model_size="tiny", image_size=16),
        CaptioningDataArguments(dataset_name=str(folder), captions_column="text", max_test_images=2),
        CaptioningTrainingArguments(output_dir=str(tmp_path / "m2"), max_steps=2, per_device_train_batch_size=4,
                                    eval_strategy="no", save_strategy="no", disable_tqdm=True, num_beams=1, meteor=False),
    )
    assert results["test_images"] == 2 and files(folder) == before


@pytest.fixture
def backbone_folder(tmp_path):
    """A tiny ResNet saved with save_pretrained, with an image processor of its own normalisation."""
    torch.manual_seed(0)
    backbone = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"))
    backbone.save_pretrained(tmp_path / "resnet")
    ConvNextImageProcessor(image_mean=[0.1, 0.2, 0.3], image_std=[0.4, 0.5, 0.6]).save_pretrained(tmp_path / "resnet")
    return tmp_path / "resnet", backbone.state_dict()


def captioner_on(backbone_path, tmp_path, freeze: bool, steps: int):
    args = CAPTIONING_RECIPE.bind((
        CaptioningModelArguments(model_size="tiny", image_size=32, backbone_name_or_path=str(backbone_path),
                                 freeze_backbone=freeze),
        CaptioningDataArguments(num_train_images=16, num_eval_images=4, max_test_images=2),
        CaptioningTrainingArguments(output_dir=str(tmp_path / f"m2-{freeze}"), max_steps=steps, eval_strategy="no",
                                    save_strategy="no", disable_tqdm=True, num_beams=1, meteor=False,
                                    per_device_train_batch_size=8, paper_schedule=False, learning_rate=1e-2),
    ))
    data = CAPTIONING_RECIPE.load_data(args)
    model, processor = CAPTIONING_RECIPE.build(args, data)
    return args, data, model, processor


@pytest.mark.parametrize("freeze", [True, False])
def test_a_pretrained_backbone_folder_is_loaded_and_kept_frozen_or_fine_tuned(backbone_folder, tmp_path, freeze):
    path, saved = backbone_folder
    args, data, model, processor = captioner_on(path, tmp_path, freeze, steps=3)
    backbone = model.model.encoder.backbone
    loaded = {k: v.clone() for k, v in backbone.state_dict().items()}
    weights = [k for k in loaded if k.endswith("weight")]
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded if k in saved) and len(set(loaded) & set(saved)) > 10
    assert processor.image_processor.image_mean == [0.1, 0.2, 0.3] and processor.image_processor.image_std == [0.4, 0.5, 0.6]
    assert model.config.max_regions == 16  # 32 px through this /8 ResNet (stem /4, second stage /2): a 4 × 4 grid
    CAPTIONING_RECIPE.trainer(args, model, processor, data, None).train()
    after = backbone.state_dict()
    changed = [k for k in after if not torch.equal(after[k], loaded[k])]
    if freeze:  # neither weights nor BatchNorm statistics move
        assert changed == [] and not any(p.requires_grad for p in backbone.parameters())
    else:
        assert any(k in changed for k in weights)


def test_a_backbone_with_a_saved_m2_or_the_paper_size_is_refused(backbone_folder, tmp_path):
    path, _ = backbone_folder
    with pytest.raises(ValueError, match="pass one of the two"):
        CAPTIONING_RECIPE.build(CAPTIONING_RECIPE.bind((
            CaptioningModelArguments(model_name_or_path=str(tmp_path), backbone_name_or_path=str(path)),
            CaptioningDataArguments(), CaptioningTrainingArguments(output_dir=str(tmp_path)))), None)
    with pytest.raises(ValueError, match="model_size 'paper' reads 2048-d detector regions"):
        CAPTIONING_RECIPE.build(CAPTIONING_RECIPE.bind((
            CaptioningModelArguments(model_size="paper", backbone_name_or_path=str(path)),
            CaptioningDataArguments(num_train_images=8, num_eval_images=2), CaptioningTrainingArguments(output_dir=str(tmp_path)))),
            CAPTIONING_RECIPE.load_data(CAPTIONING_RECIPE.bind((CaptioningModelArguments(), CaptioningDataArguments(
                num_train_images=8, num_eval_images=2), CaptioningTrainingArguments(output_dir=str(tmp_path))))))
