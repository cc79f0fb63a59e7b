"""The multimodal VAE's processor and attribute-scene data: round trips through the Auto classes, what the model
receives, the scene and caption readers, and clear errors for bad input."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor

from hf_mmdl import MultimodalVAEModel, MultimodalVAEProcessor
from hf_mmdl.data.attribute_scenes import (
    COMBINATIONS, analyse_attribute_scene, caption_attributes, held_out_combinations, load_attribute_scenes,
)
from hf_mmdl.data.speech import synthesize_speech
from hf_mmdl.data.text_to_image import render_prompt_scene, scene_caption
from hf_mmdl.modeling.configuration_multimodal_vae import multimodal_vae_config_for
from hf_mmdl.processing.processing_multimodal_vae import AUDIO_FEATURES

CAPTIONS = sorted({scene_caption(shape, colour, position) for colour, shape, position in COMBINATIONS})


@pytest.fixture(scope="module")
def processor():
    return MultimodalVAEProcessor.for_captions(CAPTIONS, image_size=16, max_text_length=8)


def test_processor_round_trip_and_model_inputs(processor, tmp_path):
    image = render_prompt_scene("circle", "red", "top left", 16)
    batch = processor(images=[image, image], text=["a red circle in the top left", "a blue square"])
    assert batch["pixel_values"].shape == (2, 3, 16, 16) and batch["pixel_values"].min() >= -1
    assert batch["input_ids"].shape == (2, 7) and batch["attention_mask"].tolist()[1] == [1, 1, 1, 0, 0, 0, 0]
    # No <bos>/<eos>: the model adds them around the words.
    specials = {processor.tokenizer.bos_token_id, processor.tokenizer.eos_token_id}
    assert not specials & set(batch["input_ids"].flatten().tolist())
    assert processor.batch_decode(batch["input_ids"]) == ["a red circle in the top left", "a blue square"]

    config = multimodal_vae_config_for("tiny", **processor.config_kwargs())
    assert config.image_size == 16 and config.max_text_length == 8 and config.vocab_size == len(processor.tokenizer)
    model = MultimodalVAEModel(config).eval()
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)
    processor.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is MultimodalVAEProcessor
    again = reloaded(images=[image, image], text=["a red circle in the top left", "a blue square"])
    for key in batch:
        torch.testing.assert_close(again[key], batch[key])
    images = processor.postprocess(model.decode_image(torch.zeros(1, config.latent_dim)))
    assert isinstance(images[0], PIL.Image.Image) and images[0].size == (16, 16)


def test_the_readers_get_every_drawn_combination_and_caption_back():
    for colour, shape, position in COMBINATIONS:
        expected = {"colour": colour, "shape": shape, "position": position}
        assert analyse_attribute_scene(render_prompt_scene(shape, colour, position, 16)) == expected
        assert caption_attributes(scene_caption(shape, colour, position)) == expected
    blank = PIL.Image.new("RGB", (16, 16), (35, 35, 40))
    assert analyse_attribute_scene(blank) == {"colour": None, "position": None, "shape": None}
    assert caption_attributes("a red blue circle at the top") == {"colour": None, "shape": "circle", "position": None}


def test_held_out_combinations_never_reach_training():
    data = load_attribute_scenes(num_train=300, image_size=16, num_held_out=12, seed=3)
    held = held_out_combinations(12, seed=3)
    trained = {(r["colour"], r["shape"], r["position"]) for r in data["train"]}
    assert len(held) == 12 and not trained & held
    assert len(data["test"]) == 72 and sum(data["test"]["held_out"]) == 12


# ---- bad inputs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, match", [
    ("", r"`text`\[0\] is empty"),
    ("  ,. ", r"`text`\[0\] is without words"),
    ([], "empty list"),
    (["a red circle", 3], r"`text`\[1\] is a int"),
    (np.zeros(3), "pass a string or a list of strings"),
    ("a red giraffe", r"outside this model's vocabulary: \['giraffe'\]"),
    ("a red circle in the top left in the top left", "has 11 words; the model reads at most 8"),
], ids=["empty", "punctuation only", "empty list", "not a string", "array", "unknown word", "too long"])
def test_bad_captions_are_refused(processor, text, match):
    with pytest.raises(ValueError, match=match):
        processor(text=text)


def test_long_captions_are_cut_only_when_asked(processor):
    batch = processor(text="a red circle in the top left in the top left", truncation=True)
    assert batch["input_ids"].shape == (1, 8)


def test_nothing_and_mismatched_batches_are_refused(processor):
    image = render_prompt_scene("circle", "red", "top left", 16)
    with pytest.raises(ValueError, match="Nothing to process"):
        processor()
    with pytest.raises(ValueError, match="Batch mismatch: 2 captions, 1 images"):
        processor(text=["a red circle", "a blue circle"], images=[image])


def test_bad_images_are_refused_by_the_shared_image_rules(processor):
    with pytest.raises(ValueError, match="float array with values in"):
        processor(images=[np.full((16, 16, 3), 2.0)])
    with pytest.raises(ValueError, match="boolean array"):
        processor(images=[np.zeros((16, 16), dtype=bool)])


@pytest.mark.parametrize("options, match", [
    (dict(num_train=0), "num_train must be ≥ 1"),
    (dict(image_size=8), "too small"),
    (dict(num_held_out=50), r"num_held_out_combinations must lie in \[0, 36\]"),
], ids=["no rows", "tiny images", "too many held out"])
def test_bad_data_settings_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        load_attribute_scenes(**options)


# ---- spoken captions -----------------------------------------------------------------------------------------------
def test_spoken_captions_become_log_mel_frames_an_audio_model_reads(processor, tmp_path):
    clips = [synthesize_speech("a red circle in the top left"), synthesize_speech("a blue square")]
    batch = processor(audio=clips, text=["a red circle in the top left", "a blue square"], sampling_rate=16_000)
    features = batch["input_features"]
    assert features.shape == (2, 32, 96) and features.dtype == torch.float32 and torch.isfinite(features).all()
    # The shorter clip is padded with silence: its last frames are all at the floor, the longer clip's are not.
    assert features[1, :, -10:].std() < 1e-6 < features[0, :, :30].std()
    config = multimodal_vae_config_for("tiny", **processor.config_kwargs(), audio_modality=True)
    assert (config.audio_num_mel_bins, config.audio_num_frames) == (32, 96)
    with torch.no_grad():
        assert torch.isfinite(MultimodalVAEModel(config).eval()(**batch).loss)
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded(audio=clips, sampling_rate=16_000)["input_features"], features)


def test_a_processor_saved_before_audio_existed_loads_with_the_default_extractor(processor, tmp_path):
    import json

    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    del saved["feature_extractor"]
    (tmp_path / "processor_config.json").write_text(json.dumps(saved))
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert reloaded.feature_extractor.feature_size == AUDIO_FEATURES["feature_size"]
    assert reloaded.feature_extractor.hop_length == AUDIO_FEATURES["hop_length"]
    assert reloaded(text="a red circle")["input_ids"].shape == (1, 3)


@pytest.mark.parametrize("audio, rate, match", [
    ([np.random.default_rng(0).standard_normal(8000).astype(np.float32)], 22_050, "sampled at 22050 Hz"),
    ([np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32)], 16_000, "NaN or infinite"),
    ([np.zeros(0, dtype=np.float32)], 16_000, "is empty"),
    ([], 16_000, "empty list"),
    ([np.random.default_rng(0).standard_normal(16_000 * 4).astype(np.float32)], 16_000, "lasts 4.00 s; .* at most 3 s"),
    ([np.zeros((2, 8000), dtype=np.float32)], 16_000, "one mono channel"),
], ids=["wrong sampling rate", "nan", "empty clip", "no clips", "too long", "stereo"])
def test_bad_audio_is_refused(processor, audio, rate, match):
    with pytest.raises(ValueError, match=match):
        processor(audio=audio, sampling_rate=rate)


def test_spoken_scenes_are_seeded_and_test_clips_use_a_voice_training_never_used_for_that_caption():
    data = load_attribute_scenes(num_train=40, image_size=16, num_held_out=12, audio=True)
    again = load_attribute_scenes(num_train=40, image_size=16, num_held_out=12, audio=True)
    assert data["train"]["voice"] == again["train"]["voice"]
    assert set(data["train"].column_names) >= {"audio", "sampling_rate", "voice"}
    assert set(data["train"]["sampling_rate"]) == {16_000}
    trained = {(row["text"], row["voice"]) for row in data["train"]}
    assert not trained & {(row["text"], row["voice"]) for row in data["test"]}
    clip = np.asarray(data["test"][0]["audio"], dtype=np.float32)
    assert 0.5 * 16_000 < len(clip) < 3 * 16_000 and np.abs(clip).max() <= 1


def test_the_longest_clip_is_a_processor_setting_that_fixes_the_models_frames(tmp_path):
    processor = MultimodalVAEProcessor.for_captions(CAPTIONS, image_size=16, max_text_length=8, max_audio_seconds=5)
    processor.save_pretrained(tmp_path)
    assert AutoProcessor.from_pretrained(tmp_path).feature_extractor.chunk_length == 5  # saved, not the default
    clip = np.concatenate([synthesize_speech("a red circle in the top left")] * 2)  # about 4 s
    assert processor(audio=[clip], sampling_rate=16_000)["input_features"].shape == (1, 32, 160)
    assert processor.config_kwargs()["audio_num_frames"] == 160
    with pytest.raises(ValueError, match="whole number of seconds"):
        MultimodalVAEProcessor.for_captions(CAPTIONS, max_audio_seconds=0)
