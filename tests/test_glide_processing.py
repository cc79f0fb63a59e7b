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
    mask = np.zeros((20, 24), dtype=np.uint8)  # masks have their image's size
    mask[:, 11:] = 255  # columns 8-15 once resized to 19 wide and centre-cropped to 16
    batch = processor(text="a red circle", images=image, mask_images=PIL.Image.fromarray(mask), low_res_images=image)
    assert batch["pixel_values"].shape == (1, 3, 16, 16) and -1 <= batch["pixel_values"].min() < 0
    assert batch["inpaint_mask"].shape == (1, 1, 16, 16)
    assert batch["inpaint_mask"][0, 0, :, :8].min() == 1 and batch["inpaint_mask"][0, 0, :, 8:].max() == 0
    assert batch["low_res"].shape == (1, 3, 4, 4)
    assert processor.postprocess(torch.zeros(1, 3, 16, 16))[0].getpixel((0, 0)) == (128, 128, 128)


def test_white_true_and_one_mark_the_region_to_repaint_whatever_the_mask_type(processor):
    repaint = np.zeros((16, 16), dtype=bool)
    repaint[3:9, 5:12] = True
    masks = {
        "bool array": repaint,
        "bool tensor": torch.from_numpy(repaint),
        "float array": repaint.astype(np.float32),
        "uint8 array": repaint.astype(np.uint8) * 255,
        "PIL L": PIL.Image.fromarray(repaint.astype(np.uint8) * 255),
        "PIL 1": PIL.Image.fromarray(repaint),
        "batch of bool tensors": torch.from_numpy(repaint)[None, None].repeat(2, 1, 1, 1),
        # 0/1 integer masks: their 1s repaint (read as grey levels they would be almost black, i.e. repaint nothing).
        "uint8 0/1 array": repaint.astype(np.uint8),
        "int64 0/1 tensor": torch.from_numpy(repaint.astype(np.int64)),
        "PIL L 0/1": PIL.Image.fromarray(repaint.astype(np.uint8)),
    }
    for name, mask in masks.items():
        known = processor(mask_images=mask)["inpaint_mask"]
        assert known.shape[1:] == (1, 16, 16), name
        assert all(torch.equal(k[0], torch.from_numpy(~repaint).float()) for k in known), name


def mask_with_a_square(width: int, height: int) -> PIL.Image.Image:
    mask = PIL.Image.new("L", (width, height), 0)
    mask.paste(255, (2, 2, 8, 8))
    return mask


@pytest.mark.parametrize("mask_size", [(16, 12), (12, 12), (20, 16)], ids=["other aspect", "smaller", "larger"])
def test_a_mask_of_another_size_than_its_image_is_refused_naming_both(processor, mask_size):
    image = PIL.Image.new("RGB", (16, 16))
    with pytest.raises(ValueError, match=f"Mask 0 is {mask_size[0]}×{mask_size[1]} but its image is 16×16"):
        processor(images=image, mask_images=mask_with_a_square(*mask_size))
    known = processor(images=image, mask_images=mask_with_a_square(16, 16))["inpaint_mask"]
    assert known[0, 0, 2:8, 2:8].max() == 0 and known.sum() == 16 * 16 - 36
    with pytest.raises(ValueError, match="Got 2 images but 1 masks; pass one mask per image"):
        processor(images=[image, image], mask_images=[mask_with_a_square(16, 16)])


@pytest.mark.parametrize(
    "mask",
    [PIL.Image.new("L", (16, 16), 0), np.zeros((16, 16), bool), torch.zeros(16, 16, dtype=torch.uint8),
     np.full((16, 16), 0.2, np.float32)],
    ids=["black image", "all-False array", "all-zero tensor", "grey below one half"],
)
def test_a_mask_with_nothing_to_repaint_is_refused(processor, mask):
    with pytest.raises(ValueError, match="Mask 0 covers none of the model's 16×16 pixels, so there is nothing to repaint"):
        processor(mask_images=mask)


def test_a_repaint_region_that_vanishes_in_resizing_is_refused(processor):
    dot = PIL.Image.new("L", (64, 64), 0)
    dot.putpixel((1, 1), 255)  # NEAREST resizing to 16×16 samples every fourth pixel from the second: misses it
    with pytest.raises(ValueError, match="covers none of the model's 16×16 pixels"):
        processor(mask_images=dot)


def test_masks_with_transparency_or_image_values_that_mean_nothing_are_refused(processor):
    layer = PIL.Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (2, 2, 8, 8))
    with pytest.raises(ValueError, match="Mask 0 has transparency \(RGBA\).*layer.getchannel\('A'\)"):
        processor(mask_images=layer)
    known = processor(mask_images=layer.getchannel("A"))["inpaint_mask"]
    assert known[0, 0, 2:8, 2:8].max() == 0 and known.sum() == 16 * 16 - 36
    with pytest.raises(ValueError, match="outside 0-255"):
        processor(mask_images=np.full((16, 16), 300, np.int32))


def test_postprocess_gives_diffusers_output_types(processor):
    samples = torch.linspace(-1, 1, 3 * 16 * 16).reshape(1, 3, 16, 16)
    pil, array, tensor = (processor.postprocess(samples, output_type=kind) for kind in ("pil", "np", "pt"))
    assert array.dtype == np.float32 and array.shape == (1, 16, 16, 3) and array.min() == 0 and array.max() == 1
    torch.testing.assert_close(tensor, (samples + 1) / 2)
    assert np.array_equal(np.asarray(pil[0]), (array[0] * 255).round().astype(np.uint8))
    with pytest.raises(ValueError, match="output_type must be one of"):
        processor.postprocess(samples, output_type="jpeg")


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
