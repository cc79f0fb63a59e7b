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
from hf_mmdl.data.text_to_image import render_prompt_scene, scene_caption
from hf_mmdl.modeling.configuration_multimodal_vae import multimodal_vae_config_for

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
