"""The autoencoders' image processors, and clear errors for bad input anywhere a user can give it."""

import numpy as np
import PIL.Image
import pytest
import torch

from hf_mmdl import DiscreteVAEConfig, DiscreteVAEImageProcessor, DiscreteVAEModel, ImageVAEConfig, ImageVAEImageProcessor
from hf_mmdl.data import load_image_dataset

from test_autoencoder_modeling import tiny_dvae, tiny_vae


def rgba_image(width=40, height=30):
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:, : width // 2, 3] = 255  # left half opaque red, right half transparent
    return PIL.Image.fromarray(pixels, mode="RGBA")


def test_vae_processor_resizes_crops_and_normalises_to_minus_one_one(rgb_image):
    batch = ImageVAEImageProcessor()(images=[rgb_image, rgb_image])
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert -1 <= batch["pixel_values"].min() < 0 < batch["pixel_values"].max() <= 1


def test_dvae_processor_applies_the_pixel_map(rgb_image):
    pixels = DiscreteVAEImageProcessor()(images=rgb_image)["pixel_values"]
    assert pixels.min() >= 0.1 - 1e-6 and pixels.max() <= 0.9 + 1e-6


def test_transparency_is_composited_on_white_and_grey_mode_gives_one_channel():
    processor = ImageVAEImageProcessor(image_mode="L", size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    pixels = processor(images=rgba_image())["pixel_values"]
    assert pixels.shape == (1, 1, 16, 16)
    assert pixels[0, 0, :, -1].min() == 1.0  # transparent column → white


def test_to_unit_range_inverts_both_pixel_conventions(rgb_image):
    for processor in (ImageVAEImageProcessor(), DiscreteVAEImageProcessor()):
        unit = processor.to_unit_range(processor(images=rgb_image)["pixel_values"])
        back = np.asarray(processor.postprocess(unit)[0])
        expected = np.asarray(processor.postprocess(DiscreteVAEImageProcessor(do_map_pixels=False)(images=rgb_image)["pixel_values"])[0])
        assert np.abs(back.astype(int) - expected.astype(int)).max() <= 1


def test_postprocess_turns_model_images_into_pil_numpy_or_tensors():
    processor = DiscreteVAEImageProcessor()
    images = torch.rand(2, 3, 8, 8)
    pil = processor.postprocess(images)
    assert len(pil) == 2 and pil[0].size == (8, 8) and pil[0].mode == "RGB"
    assert processor.postprocess(images, output_type="np").shape == (2, 8, 8, 3)
    assert torch.equal(processor.postprocess(images, output_type="pt"), images)


def test_processor_round_trips_through_save_pretrained(tmp_path):
    processor = DiscreteVAEImageProcessor(image_mode="L", size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor.save_pretrained(tmp_path)
    loaded = DiscreteVAEImageProcessor.from_pretrained(tmp_path)
    assert (loaded.image_mode, loaded.do_map_pixels, loaded.crop_size["height"]) == ("L", True, 28)


# Bad input: each case names what was wrong.

@pytest.mark.parametrize(
    "images, message",
    [
        (PIL.Image.new("I;16", (8, 8)), "cannot be converted to RGB"),
        (np.full((8, 8, 3), 1.5, dtype=np.float32), "must lie in \\[0, 1\\]"),
        (np.full((8, 8, 3), np.nan, dtype=np.float32), "NaN"),
        ([], "empty"),
        (np.zeros((8, 8, 5), dtype=np.uint8), "no axis holds"),
        ("cat.png", "pass PIL images or numpy arrays"),
    ],
)
def test_processor_rejects_images_it_cannot_use(images, message):
    with pytest.raises(ValueError, match=message):
        ImageVAEImageProcessor()(images=images)


def test_processor_rejects_an_unknown_mode_and_output_type():
    with pytest.raises(ValueError, match="image_mode must be one of"):
        DiscreteVAEImageProcessor(image_mode="CMYK")
    with pytest.raises(ValueError, match="output_type must be one of"):
        DiscreteVAEImageProcessor().postprocess(torch.rand(1, 3, 8, 8), output_type="jpeg")
    with pytest.raises(ValueError, match="Expected images of shape"):
        DiscreteVAEImageProcessor().postprocess(torch.rand(1, 5, 8, 8))


@pytest.mark.parametrize(
    "make, pixel_values, message",
    [
        (tiny_vae, torch.zeros(2, 1, 16, 16), "has 1 channels but the model expects 3"),
        (tiny_vae, torch.zeros(3, 16, 16), "must be a 4-D tensor"),
        (tiny_vae, torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "must be a float tensor"),
        (tiny_vae, torch.zeros(2, 3, 32, 32), "vector latent needs 16×16 images"),
        (tiny_dvae, torch.full((1, 3, 15, 15), 0.5), "divisible by 2, got 15×15"),
        (tiny_dvae, torch.zeros(1, 3, 16, 16), "map \\[0, 1\\] images with `model.map_pixels`"),
    ],
)
def test_models_reject_inputs_with_a_clear_message(make, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        make()(pixel_values)


def test_decoding_rejects_bad_tokens_and_latents():
    with pytest.raises(ValueError, match="Token ids must lie in \\[0, 64\\)"):
        tiny_dvae().decode_code(torch.full((1, 4, 4), 64))
    with pytest.raises(ValueError, match="integer tensor of shape \\(batch, h, w\\)"):
        tiny_dvae().decode_code(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="Expected latents with 8 numbers"):
        tiny_vae().decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="num_images must be ≥ 1"):
        tiny_vae().sample(0)
    with pytest.raises(ValueError, match="steps must be ≥ 2"):
        tiny_vae().interpolate(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16), steps=1)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ImageVAEConfig(block_out_channels=(8, 12), norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 2,
                                up_block_types=("UpDecoderBlock2D",) * 2), "must divide every block_out_channels"),
        (lambda: ImageVAEConfig(likelihood="poisson"), "likelihood must be one of"),
        (lambda: ImageVAEConfig(sample_size=30), "divisible by the downsampling factor 4"),
        (lambda: DiscreteVAEConfig(n_hid=18), "divisible by 4"),
        (lambda: DiscreteVAEConfig(temperature_start=0.5, temperature_end=1.0), "temperature_end ≤ temperature_start"),
        (lambda: DiscreteVAEConfig(logit_laplace_eps=0.5), "logit_laplace_eps must lie in"),
    ],
)
def test_configs_reject_impossible_settings(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_corrupt_checkpoint_fails_to_load_and_is_left_alone(tmp_path):
    tiny_dvae().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(Exception, match="(?i)safetensors|header|deserializ|invalid"):
        DiscreteVAEModel.from_pretrained(tmp_path)
    assert weights.stat().st_size == 100


def test_built_in_image_sets_check_their_sizes():
    with pytest.raises(ValueError, match="num_validation \\(6000\\) must be smaller than the 5000 images"):
        load_image_dataset("mnist", num_validation=6000)


def test_built_in_image_sets_have_train_and_validation_images():
    for name, mode in (("mnist", "L"), ("scenes", "RGB"), ("twemoji", "RGB")):
        data = load_image_dataset(name, image_size=16, num_train=20, num_validation=5)
        assert (len(data["train"]), len(data["validation"])) == (20, 5)
        assert data["train"][0]["image"].mode == mode
