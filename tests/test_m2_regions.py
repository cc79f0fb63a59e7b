import datasets
import h5py
import numpy as np
import pytest
from transformers import Trainer, TrainingArguments

from hf_mmdl.data import RegionCaptionCollator, RegionFeatureFile

from conftest import CAPTIONS


@pytest.fixture
def detections(tmp_path):
    """A feature file in the original repository's layout: `<image_id>_features`, (regions, dim), varying counts."""
    path = tmp_path / "detections.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for image_id, regions in zip((9, 25, 30, 42), (3, 14, 7, 10)):
            f[f"{image_id}_features"] = rng.random((regions, 16), dtype=np.float32)
            f[f"{image_id}_boxes"] = rng.random((regions, 4), dtype=np.float32)
    return path


def test_regions_are_read_by_image_id_and_padded_by_the_processor(detections, region_processor):
    regions = RegionFeatureFile(detections)
    assert regions[25].shape == (14, 16) and 9 in regions and 10 not in regions
    with pytest.raises(KeyError, match="'10_features'"):
        regions[10]
    batch = RegionCaptionCollator(region_processor, regions)([{"image_id": 9, "caption": CAPTIONS[0]}, {"image_id": 25, "caption": CAPTIONS[1]}])
    assert batch["region_features"].shape == (2, 10, 16)
    assert batch["region_attention_mask"].sum(1).tolist() == [3, 10]


def test_trainer_learns_captions_from_hdf5_regions(detections, region_model, region_processor, tmp_path):
    rows = datasets.Dataset.from_dict({"image_id": [9, 25, 30, 42] * 8, "caption": CAPTIONS * 8})
    trainer = Trainer(
        model=region_model.train(),
        args=TrainingArguments(output_dir=str(tmp_path), max_steps=80, per_device_train_batch_size=4, learning_rate=5e-3,
                               logging_steps=5, report_to="none", remove_unused_columns=False, use_cpu=True,
                               disable_tqdm=True, save_strategy="no"),
        train_dataset=rows,
        data_collator=RegionCaptionCollator(region_processor, RegionFeatureFile(detections)),
    )
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < 0.5 * losses[0]


def test_missing_feature_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="No region feature file"):
        RegionFeatureFile(tmp_path / "absent.hdf5")
