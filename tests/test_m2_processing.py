import numpy as np
import PIL.Image
import pytest
import torch

from transformers import AutoProcessor

from hf_mmdl import M2Processor
from hf_mmdl.processing import words_of

from conftest import tiny_region_config


def test_caption_tokenizer_lowercases_drops_punctuation_and_orders_specials(tokenizer):
    assert words_of("A Red circle, left of: the BLUE square!") == ["a", "red", "circle", "left", "of", "the", "blue", "square"]
    assert [tokenizer.convert_ids_to_tokens(i) for i in range(4)] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert tokenizer.convert_ids_to_tokens(4) == "a"  # the most frequent word comes first
    assert tokenizer("a zebra")["input_ids"][1] == tokenizer.unk_token_id


def test_labels_end_in_eos_and_pad_with_ignore_index(image_processor_m2):
    labels = image_processor_m2(text_target=["A red circle.", "a green star above a white cross"])["labels"]
    tok = image_processor_m2.tokenizer
    assert labels[0].tolist()[:4] == tok("a red circle", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert (labels[0, 4:] == -100).all()
    assert labels[1, -1] == tok.eos_token_id


def test_batch_decode_cuts_at_the_first_eos(image_processor_m2):
    tok = image_processor_m2.tokenizer
    ids = [tok.bos_token_id] + tok("a red circle", add_special_tokens=False)["input_ids"] + [tok.eos_token_id, 5, 6]
    assert image_processor_m2.batch_decode(torch.tensor([ids])) == ["a red circle"]


def test_region_features_are_padded_truncated_and_masked(region_processor):
    features = [np.ones((3, 16), np.float32), np.ones((14, 16), np.float32)]
    batch = region_processor(region_features=features)
    assert batch["region_features"].shape == (2, 10, 16)
    assert batch["region_attention_mask"].sum(1).tolist() == [3, 10]
    assert (batch["region_features"][0, 3:] == 0).all()
    with pytest.raises(ValueError, match="truncation=True"):
        region_processor.image_processor.pad_region_features(features, truncation=False)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "1"])
def test_non_rgb_images_are_converted(image_processor_m2, rgb_image, mode):
    pixels = image_processor_m2(images=rgb_image.convert(mode))["pixel_values"]
    assert pixels.shape == (1, 3, 32, 32)


def test_numpy_images_in_either_channel_layout(image_processor_m2, rgb_image):
    hwc = np.asarray(rgb_image)
    a = image_processor_m2(images=hwc)["pixel_values"]
    b = image_processor_m2(images=np.moveaxis(hwc, -1, 0))["pixel_values"]
    c = image_processor_m2(images=hwc.astype(np.float32) / 255)["pixel_values"]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c, atol=1e-2, rtol=0)


BAD_INPUTS = {
    "16-bit PIL mode": (dict(images=PIL.Image.new("I;16", (8, 8))), "mode 'I;16'"),
    "float PIL mode": (dict(images=PIL.Image.new("F", (8, 8))), "mode 'F'"),
    "five channels": (dict(images=np.zeros((8, 8, 5), np.uint8)), "no axis holds"),
    "NaN pixels": (dict(images=np.full((8, 8, 3), np.nan, np.float32)), "NaN"),
    "float out of range": (dict(images=np.full((8, 8, 3), 3.0, np.float32)), r"\[0, 1\]"),
    "not an image": (dict(images=["cat.png"]), "pass PIL images"),
    "empty image list": (dict(images=[]), "empty"),
    "zero-size image": (dict(images=PIL.Image.new("RGB", (0, 4))), "empty"),
    "empty caption": (dict(text_target=["a red circle", "   "]), "empty"),
    "over-long caption": (dict(text_target=["a " * 40]), "truncation=True"),
    "caption not a string": (dict(text_target=[3]), "not a string"),
    "nothing to process": (dict(), "Nothing to process"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_image_and_text_inputs_raise_clear_errors(image_processor_m2, case):
    kwargs, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        image_processor_m2(**kwargs)


BAD_REGIONS = {
    "wrong feature width": ([np.ones((4, 8), np.float32)], "expected \\(regions, 16\\)"),
    "NaN features": ([np.full((4, 16), np.nan, np.float32)], "NaN"),
    "no regions": ([np.ones((0, 16), np.float32)], "no regions"),
    "3-d features": ([np.ones((2, 4, 16), np.float32)], "expected"),
}


@pytest.mark.parametrize("case", sorted(BAD_REGIONS))
def test_bad_region_features_raise_clear_errors(region_processor, case):
    features, message = BAD_REGIONS[case]
    with pytest.raises(ValueError, match=message):
        region_processor(region_features=features)


def test_mismatched_batches_and_double_inputs_are_rejected(region_processor, image_processor_m2, rgb_image):
    with pytest.raises(ValueError, match="Batch mismatch: 1 images but 2 captions"):
        image_processor_m2(images=rgb_image, text_target=["a red circle", "a blue square"])
    with pytest.raises(ValueError, match="either `images` or `region_features`"):
        region_processor(images=rgb_image, region_features=[np.ones((2, 16), np.float32)])
    with pytest.raises(ValueError, match="same number of words"):
        image_processor_m2(images=[rgb_image, rgb_image], text=["a red", "a"])


def test_over_long_captions_truncate_when_asked(image_processor_m2):
    labels = image_processor_m2(text_target=["a " * 40], truncation=True)["labels"]
    assert labels.shape[1] == image_processor_m2.max_caption_length + 1


def test_the_processor_of_a_backbone_model_refuses_region_features(image_processor_m2):
    with pytest.raises(ValueError, match="reads images through a backbone .* pass `images`"):
        image_processor_m2(region_features=[np.ones((3, 2048), np.float32)])


def test_a_folder_without_tokenizer_files_names_them(region_processor, tmp_path):
    # A model folder with its image processor but no tokenizer: transformers would ask for sentencepiece.
    tiny_region_config(region_processor.tokenizer).save_pretrained(tmp_path)
    region_processor.image_processor.save_pretrained(tmp_path)
    with pytest.raises(OSError, match=r"no saved tokenizer for M2Processor: tokenizer.json, tokenizer_config.json missing"):
        M2Processor.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="tokenizer.json, tokenizer_config.json missing"):
        AutoProcessor.from_pretrained(tmp_path)
    region_processor.save_pretrained(tmp_path)
    assert AutoProcessor.from_pretrained(tmp_path).tokenizer.get_vocab() == region_processor.tokenizer.get_vocab()
