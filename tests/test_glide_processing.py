"""GlideProcessor: fixed-length captions, images in [-1, 1], edit masks, batch checks, save and load."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor

from hf_mmdl import GlideConfig, GlideImageProcessor, GlideProcessor
from hf_mmdl.processing import train_caption_tokenizer


@pytest.fixture
def processor():
    tokenizer = train_caption_tokenizer(["a red circle on the left", "a blue square on the right"], min_count=1)
    image_processor = GlideImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    return GlideProcessor(image_processor, tokenizer, text_ctx=6)


def test_captions_become_fixed_length_ids_and_the_empty_caption_is_all_padding(processor):
    batch = processor(text=["A red circle", ""])
    pad = processor.tokenizer.pad_token_id
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [0] * 6]
    assert (batch["input_ids"][1] == pad).all()


def test_over_long_captions_are_cut_with_a_warning_or_refused(processor):
    long = "a red circle on the left a blue square"
    with pytest.warns(UserWarning, match="keeping the first 6"):
        assert processor(text=long)["attention_mask"].sum() == 6
    with pytest.raises(ValueError, match="reads at most 6"):
        processor(text=long, truncation=False)


def test_images_masks_and_low_resolution_inputs(processor):
    image = PIL.Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8))
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, 8:] = 255
    batch = processor(text="a red circle", images=image, mask_images=PIL.Image.fromarray(mask), low_res_images=image)
    assert batch["pixel_values"].shape == (1, 3, 16, 16) and -1 <= batch["pixel_values"].min() < 0
    assert batch["inpaint_mask"].shape == (1, 1, 16, 16)
    assert batch["inpaint_mask"][0, 0, :, :8].min() == 1 and batch["inpaint_mask"][0, 0, :, 8:].max() == 0
    assert batch["low_res"].shape == (1, 3, 4, 4)
    assert processor.postprocess(torch.zeros(1, 3, 16, 16))[0].getpixel((0, 0)) == (128, 128, 128)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(text=["a red circle", "a blue square"], images=[PIL.Image.new("RGB", (16, 16))]), "Batch mismatch"),
        (dict(text=[]), "`text` is an empty list"),
        (dict(text=[3]), "Caption 0 is a int"),
        (dict(), "Nothing to process"),
        (dict(images=PIL.Image.new("I;16", (16, 16))), "cannot be converted to RGB"),
    ],
)
def test_bad_inputs_are_named(processor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        processor(**kwargs)


def test_processor_round_trips_through_auto_processor(processor, tmp_path):
    GlideConfig(image_size=16, channel_mult=(1, 2), model_channels=64).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, GlideProcessor) and loaded.text_ctx == 6
    assert torch.equal(loaded(text="a red circle")["input_ids"], processor(text="a red circle")["input_ids"])
