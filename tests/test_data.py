import numpy as np
import pytest

from hf_mmdl.data import TWEMOJI_CREDIT, load_caption_dataset, load_scene_captions, load_twemoji_captions
from hf_mmdl.data.scenes import COLOURS, SHAPES


@pytest.fixture(scope="module")
def scenes():
    return load_scene_captions(num_train=40, num_validation=10, num_test=10, seed=3)


def test_scenes_have_splits_five_references_and_objects(scenes):
    assert {k: len(v) for k, v in scenes.items()} == {"train": 40, "validation": 10, "test": 10}
    row = scenes["train"][0]
    assert row["image"].mode == "RGB" and row["image"].size == (64, 64)
    assert len(row["captions"]) == 5
    assert 1 <= len(row["objects"]) <= 4
    for obj in row["objects"]:
        assert obj["shape"] in SHAPES and obj["colour"] in COLOURS
        x0, y0, x1, y1 = obj["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64


def test_scenes_are_deterministic_by_seed(scenes):
    again = load_scene_captions(num_train=40, num_validation=10, num_test=10, seed=3)
    other = load_scene_captions(num_train=40, num_validation=10, num_test=10, seed=4)
    assert again["train"]["captions"] == scenes["train"]["captions"]
    assert np.array_equal(np.asarray(again["test"][5]["image"]), np.asarray(scenes["test"][5]["image"]))
    assert other["train"]["captions"] != scenes["train"]["captions"]


def test_captions_name_what_is_drawn(scenes):
    for row in scenes["train"]:
        objects = row["objects"]
        first = row["captions"][0]
        for obj in objects:
            assert obj["colour"] in first and obj["shape"] in first
        box_pixels = [np.asarray(row["image"])[(o["box"][1] + o["box"][3]) // 2, (o["box"][0] + o["box"][2]) // 2] for o in objects]
        for obj, pixel in zip(objects, box_pixels):
            if obj["shape"] in ("circle", "square", "cross"):  # their centre pixel is always painted
                assert tuple(pixel) == COLOURS[obj["colour"]]


def test_twemoji_captions_are_real_images_with_names():
    data = load_twemoji_captions(image_size=32, limit=50)
    assert sum(len(split) for split in data.values()) == 50
    row = data["train"][0]
    assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
    assert row["name"] in row["captions"][0] and len(row["captions"]) == 5
    assert "CC BY 4.0" in TWEMOJI_CREDIT


def test_any_saved_dataset_with_single_captions_loads(tmp_path, scenes):
    single = scenes["train"].map(lambda row: {"text": row["captions"][0]}, remove_columns=["captions"])
    single.save_to_disk(tmp_path / "mine")
    data = load_caption_dataset(str(tmp_path / "mine"), captions_column="text")
    assert set(data) == {"train", "validation", "test"}
    assert isinstance(data["train"][0]["captions"], list)
    with pytest.raises(ValueError, match="--captions_column"):
        load_caption_dataset(str(tmp_path / "mine"), captions_column="caption")
