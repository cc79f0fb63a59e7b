"""The package's input rules, shared by every architecture: what an image array's values mean (processing.image_processing),
transparency on white wherever images are read (processors, GLIDE pipelines, figures, the caption baseline, GLIDE's
retrieval scoring), and finite, in-range tensors at every model entry point (modeling.inputs)."""

import types

import numpy as np
import PIL.Image
import pytest
import torch

from hf_mmdl import (
    DiscreteVAEImageProcessor,
    GlideImageProcessor,
    GlideProcessor,
    ImageVAEImageProcessor,
    M2ForConditionalGeneration,
    M2ImageProcessor,
)
from hf_mmdl.modeling import map_pixels
from hf_mmdl.modeling.configuration_m2 import m2_config_for
from hf_mmdl.modeling.inputs import check_image_batch, check_values
from hf_mmdl.processing import train_caption_tokenizer
from hf_mmdl.processing.image_processing import flatten_transparency, to_rgb
from hf_mmdl.training.captioning import nearest_neighbour_captions, pixel_matrix
from hf_mmdl.training.text_to_image import score_retrieval
from hf_mmdl.visualization import captioned_image_grid, image_grid

from conftest import tiny_region_config
from test_autoencoder_modeling import tiny_dvae, tiny_vae
from test_glide_modeling import tiny_glide

SIDE = 16


def glide_processor():
    tokenizer = train_caption_tokenizer(["a red circle"], min_count=1)
    image_processor = GlideImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    return GlideProcessor(image_processor, tokenizer, text_ctx=4)


# Every image processor of the package, as a function from images to the model's pixel_values.
PROCESSORS = {
    "m2": lambda: M2ImageProcessor(size={"height": SIDE, "width": SIDE}),
    "vae": lambda: ImageVAEImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE}),
    "dvae": lambda: DiscreteVAEImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE}),
    "glide": glide_processor,
}


def pixels(processor_name, images) -> torch.Tensor:
    return torch.as_tensor(np.asarray(PROCESSORS[processor_name]()(images=images)["pixel_values"]))


def half_transparent(mode: str = "RGBA") -> PIL.Image.Image:
    """Left half opaque red, right half fully transparent with black stored colour (what editors usually save)."""
    image = PIL.Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    image.paste((220, 30, 30, 255), (0, 0, SIDE // 2, SIDE))
    if mode == "LA":
        return image.convert("LA")
    if mode == "P":
        palette = PIL.Image.new("P", (SIDE, SIDE), 0)
        palette.putpalette([0, 0, 0, 220, 30, 30] + [0] * 762)
        palette.paste(1, (0, 0, SIDE // 2, SIDE))
        palette.info["transparency"] = 0
        return palette
    return image


# Item 1 of issue 13: integer arrays outside 0-255 wrapped around, bool arrays became 1/255.
BAD_ARRAYS = {
    "uint16 60000": np.full((SIDE, SIDE, 3), 60000, dtype=np.uint16),
    "int64 -5": np.full((SIDE, SIDE, 3), -5, dtype=np.int64),
    "int32 300": np.full((SIDE, SIDE, 3), 300, dtype=np.int32),
    "int64 tensor -5": torch.full((3, SIDE, SIDE), -5, dtype=torch.int64),
}


@pytest.mark.parametrize("processor_name", sorted(PROCESSORS))
@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_integer_images_outside_0_255_are_refused_not_wrapped(processor_name, case):
    with pytest.raises(ValueError, match="outside 0-255; pass uint8 arrays in 0-255 or float arrays in \\[0, 1\\]"):
        pixels(processor_name, BAD_ARRAYS[case])


@pytest.mark.parametrize("processor_name", sorted(PROCESSORS))
@pytest.mark.parametrize("as_array", [np.asarray, torch.from_numpy], ids=["array", "tensor"])
def test_boolean_images_are_refused(processor_name, as_array):
    with pytest.raises(ValueError, match="boolean array; pass uint8 arrays in 0-255 or float arrays in \\[0, 1\\]"):
        pixels(processor_name, as_array(np.ones((SIDE, SIDE), dtype=bool)))


@pytest.mark.parametrize("processor_name", sorted(PROCESSORS))
def test_integer_and_float_images_in_range_mean_the_same_pixels(processor_name):
    grey = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3)).astype(np.uint8)
    expected = pixels(processor_name, grey)
    for dtype in (np.int64, np.int32, np.uint16):
        torch.testing.assert_close(pixels(processor_name, grey.astype(dtype)), expected)
    # bf16 tensors (which numpy cannot hold) in [0, 1] read as the same image, up to bf16's 8-bit mantissa.
    bf16 = torch.from_numpy(grey.astype(np.float32) / 255).bfloat16()
    torch.testing.assert_close(pixels(processor_name, bf16), expected, atol=0.05, rtol=0)


@pytest.mark.parametrize("processor_name", sorted(PROCESSORS))
@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_every_processor_puts_transparent_pixels_on_white(processor_name, mode):
    image = half_transparent(mode)
    on_white, on_black = PIL.Image.new("RGB", image.size, "white"), PIL.Image.new("RGB", image.size, "black")
    for background in (on_white, on_black):
        background.paste(to_rgb(image).crop((0, 0, SIDE // 2, SIDE)), (0, 0))
    got = pixels(processor_name, image)
    torch.testing.assert_close(got, pixels(processor_name, on_white))
    assert not torch.equal(got, pixels(processor_name, on_black))  # what dropping the alpha band gives


def test_the_transparency_helper_composites_on_white_and_keeps_opaque_images():
    flat = np.asarray(to_rgb(half_transparent()))
    assert (flat[:, SIDE // 2:] == 255).all() and (flat[:, : SIDE // 2] == (220, 30, 30)).all()
    opaque = PIL.Image.new("RGB", (4, 4), (1, 2, 3))
    assert flatten_transparency(opaque) is opaque
    keyed = PIL.Image.new("RGB", (4, 4), (1, 2, 3))
    keyed.info["transparency"] = (1, 2, 3)  # an RGB image with a transparent colour key
    assert to_rgb(keyed).getpixel((0, 0)) == (255, 255, 255)


def test_figures_show_transparent_images_on_white(tmp_path):
    image = half_transparent()
    sheet = PIL.Image.open(captioned_image_grid([image], [[("M²", "a red square")]], tmp_path / "c.png", columns=1, tile=SIDE))
    assert sheet.getpixel((10 + 12, 10 + 4)) == (255, 255, 255) and sheet.getpixel((10 + 2, 10 + 4)) == (220, 30, 30)
    sheet = PIL.Image.open(image_grid([[image]], tmp_path / "g.png", tile=SIDE))
    assert sheet.getpixel((8 + 12, 4 + 4)) == (255, 255, 255) and sheet.getpixel((8 + 2, 4 + 4)) == (220, 30, 30)


def test_the_nearest_neighbour_baseline_sees_transparent_images_on_white():
    blank = PIL.Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0))
    torch.testing.assert_close(pixel_matrix([blank]), torch.full((1, 32 * 32 * 3), 255.0))
    train = {"image": [PIL.Image.new("RGB", (SIDE, SIDE), "white"), PIL.Image.new("RGB", (SIDE, SIDE), "black")],
             "captions": [["a white page", "an empty white page"], ["a black page", "a dark black page"]]}
    assert "white" in nearest_neighbour_captions(train, [blank], k=1)[0]


def test_glide_retrieval_scoring_sees_transparent_references_on_white():
    sample = PIL.Image.new("RGB", (SIDE, SIDE), "white")
    pipe = lambda names, **kwargs: types.SimpleNamespace(images=[sample] * len(names))  # noqa: E731
    references = [PIL.Image.new("RGBA", (SIDE, SIDE), (0, 0, 0, 0)), PIL.Image.new("RGB", (SIDE, SIDE), (200,) * 3)]
    scores, _ = score_retrieval(pipe, ["blank"], references, ["blank", "grey"], [1.0], steps="2")
    assert scores["1.0"]["retrieval_top1"] == 1.0


# Item 2: every public entry point that reads pixels or features refuses NaN and infinity, naming the input.

def m2_grid():
    tokenizer = train_caption_tokenizer(["a red circle"], min_count=1, model_max_length=20)
    torch.manual_seed(0)
    return M2ForConditionalGeneration(m2_config_for("tiny", len(tokenizer), 32, tokenizer)).eval()


def m2_regions():
    tokenizer = train_caption_tokenizer(["a red circle"], min_count=1, model_max_length=20)
    torch.manual_seed(0)
    return M2ForConditionalGeneration(tiny_region_config(tokenizer)).eval()


def unit_images(*shape):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0))


BOS = torch.tensor([[1]])
GLIDE_TEXT = {"input_ids": torch.ones(1, 8, dtype=torch.long)}
# name → (model builder, valid input, the input's name, entry point)
ENTRY_POINTS = {
    "m2 forward (pixels)": (m2_grid, lambda: torch.randn(1, 3, 32, 32), "pixel_values",
                            lambda m, x: m(pixel_values=x, decoder_input_ids=BOS)),
    "m2 generate (pixels)": (m2_grid, lambda: torch.randn(1, 3, 32, 32), "pixel_values",
                             lambda m, x: m.generate(pixel_values=x, max_new_tokens=2)),
    "m2 forward (regions)": (m2_regions, lambda: torch.randn(1, 10, 16), "region_features",
                             lambda m, x: m(region_features=x, decoder_input_ids=BOS)),
    "m2 generate (regions)": (m2_regions, lambda: torch.randn(1, 10, 16), "region_features",
                              lambda m, x: m.generate(region_features=x, max_new_tokens=2)),
    "vae forward": (tiny_vae, lambda: unit_images(1, 3, 16, 16) * 2 - 1, "pixel_values", lambda m, x: m(x)),
    "vae encode": (tiny_vae, lambda: unit_images(1, 3, 16, 16) * 2 - 1, "pixel_values", lambda m, x: m.encode(x)),
    "vae reconstruct": (tiny_vae, lambda: unit_images(1, 3, 16, 16) * 2 - 1, "pixel_values",
                        lambda m, x: m.reconstruct(x)),
    "vae interpolate": (tiny_vae, lambda: unit_images(1, 3, 16, 16) * 2 - 1, "pixel_values",
                        lambda m, x: m.interpolate(x[0], x[0].flip(-1), steps=3)),
    "vae decode": (tiny_vae, lambda: torch.randn(1, 8), "latents", lambda m, x: m.decode(x)),
    "dvae forward": (tiny_dvae, lambda: map_pixels(unit_images(1, 3, 16, 16)), "pixel_values", lambda m, x: m(x)),
    "dvae get_codebook_indices": (tiny_dvae, lambda: map_pixels(unit_images(1, 3, 16, 16)), "pixel_values",
                                  lambda m, x: m.get_codebook_indices(x)),
    "dvae reconstruct": (tiny_dvae, lambda: map_pixels(unit_images(1, 3, 16, 16)), "pixel_values",
                         lambda m, x: m.reconstruct(x)),
    "glide forward": (tiny_glide, lambda: unit_images(1, 3, 16, 16) * 2 - 1, "pixel_values",
                      lambda m, x: m(pixel_values=x, **GLIDE_TEXT)),
}


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_entry_points_refuse_non_finite_inputs_by_name(entry_point, bad, autocast):
    build, valid, name, call = ENTRY_POINTS[entry_point]
    model, inputs = build(), valid()
    poisoned = inputs.clone()
    poisoned.view(-1)[5] = bad
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        call(model, inputs)  # the same call with finite values runs
        with pytest.raises(ValueError, match=f"^{name} contains NaN or infinite values"):
            call(model, poisoned)


# Out-of-range pixels the models used to take: 0-255 floats, or [-1, 1] pixels the dVAE reads as mapped ones.
OUT_OF_RANGE = {
    "vae forward": lambda: unit_images(1, 3, 16, 16) * 255,
    "vae encode": lambda: unit_images(1, 3, 16, 16) * 255,
    "vae reconstruct": lambda: unit_images(1, 3, 16, 16) * 255,
    "vae interpolate": lambda: unit_images(1, 3, 16, 16) * 255,
    "dvae forward": lambda: unit_images(1, 3, 16, 16) * 2 - 1,
    "dvae get_codebook_indices": lambda: unit_images(1, 3, 16, 16) * 2 - 1,
    "dvae reconstruct": lambda: unit_images(1, 3, 16, 16) * 2 - 1,
    "glide forward": lambda: unit_images(1, 3, 16, 16) * 255,
}
HINTS = {"vae": "0–255 images by x / 127.5 − 1", "dvae": "map \\[0, 1\\] images with `model.map_pixels`",
         "glide": "scale \\[0, 1\\] images by x \\* 2 − 1"}


@pytest.mark.parametrize("entry_point", sorted(OUT_OF_RANGE))
def test_entry_points_refuse_pixels_outside_the_range_they_read(entry_point):
    build, _, _, call = ENTRY_POINTS[entry_point]
    with pytest.raises(ValueError, match=f"pixel_values lie in .* but the model reads values in .*{HINTS[entry_point.split()[0]]}"):
        call(build(), OUT_OF_RANGE[entry_point]())


def test_glide_forward_checks_its_conditioning_inputs_too():
    pixels_ = unit_images(1, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match="^low_res lie in"):
        tiny_glide(super_res=True)(pixel_values=pixels_, low_res=unit_images(1, 3, 4, 4) * 255, **GLIDE_TEXT)
    with pytest.raises(ValueError, match="^inpaint_mask contains NaN"):
        tiny_glide(inpaint=True)(pixel_values=pixels_, inpaint_mask=torch.full((1, 1, 16, 16), float("nan")), **GLIDE_TEXT)


def test_the_shared_checker_allows_rounding_but_not_a_wrong_scale():
    mapped = map_pixels(unit_images(2, 3, 8, 8))
    # bf16 rounds 0.9 down to 0.8984: still the pixel map's range.
    check_image_batch(map_pixels(torch.ones(2, 3, 8, 8)).bfloat16(), 3, 4, value_range=(0.1, 0.9))
    check_image_batch(mapped, 3, 4, value_range=(0.1, 0.9))
    with pytest.raises(ValueError, match="pixel_values lie in \\[0, 1\\] but the model reads values in \\[0.1, 0.9\\]: map"):
        check_image_batch(torch.cat([torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)]), 3, 4, value_range=(0.1, 0.9), hint="map")
    check_values(torch.tensor([0, 300]), "ids")  # integers are finite: only a range applies to them
    with pytest.raises(ValueError, match="ids lie in \\[0, 300\\]"):
        check_values(torch.tensor([0, 300]), "ids", (0, 255))
