"""GlidePipeline: respacing, classifier-free guidance in one doubled UNet batch, outputs, save and load."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor

from hf_mmdl.pipelines import GlidePipeline, glide_fast_scheduler, glide_scheduler, respaced_timesteps
from hf_mmdl.pipelines.pipeline_glide import guided_model_output
from hf_mmdl.processing import GlideProcessor, train_caption_tokenizer

from test_glide_modeling import tiny_glide


@pytest.fixture
def pipe():
    tokenizer = train_caption_tokenizer(["a red circle on the left", "a blue square on the right"], min_count=1)
    model = tiny_glide(text_config=dict(vocab_size=len(tokenizer), text_ctx=8, width=32, num_layers=1,
                                        num_attention_heads=2, pad_token_id=tokenizer.pad_token_id))
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    return GlidePipeline(glide=model, processor=GlideProcessor.for_config(model.config, tokenizer),
                         scheduler=glide_scheduler(model))


def test_respacing_follows_glide():
    hundred = respaced_timesteps(1000, "100")
    assert len(hundred) == 100 and hundred[0] == 999 and hundred[-1] == 0
    fast = respaced_timesteps(1000, "fast27")
    assert len(fast) == 27 and 999 not in fast and 997 in fast and fast == sorted(fast, reverse=True)
    assert respaced_timesteps(1000, 4) == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="Cannot take 300 steps from a segment of 250"):
        respaced_timesteps(1000, "300,1,1,1")


def test_guidance_scale_one_is_the_conditional_pass_and_zero_the_unconditional():
    conditional, unconditional = torch.randn(2, 6, 4, 4), torch.randn(2, 6, 4, 4)
    both = torch.cat([conditional, unconditional])
    torch.testing.assert_close(guided_model_output(both, 1.0), conditional)
    torch.testing.assert_close(guided_model_output(both, 0.0)[:, :3], unconditional[:, :3])
    torch.testing.assert_close(guided_model_output(both, 0.0)[:, 3:], conditional[:, 3:])  # variance: conditional


def test_a_guided_step_is_one_unet_call_on_the_doubled_batch(pipe):
    calls = []
    pipe.glide.unet.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    images = pipe(["a red circle", "a blue square"], guidance_scale=3.0, num_inference_steps=4,
                  generator=torch.Generator().manual_seed(0)).images
    assert calls == [4, 4, 4, 4]
    assert len(images) == 2 and isinstance(images[0], PIL.Image.Image) and images[0].size == (16, 16)


def test_sampling_is_reproducible_and_the_prompt_matters(pipe):
    def sample(prompt, seed=0):
        return pipe(prompt, guidance_scale=3.0, num_inference_steps=4, output_type="pt",
                    generator=torch.Generator().manual_seed(seed)).images

    torch.testing.assert_close(sample("a red circle"), sample("a red circle"))
    assert not torch.equal(sample("a red circle"), sample("a blue square"))
    out = pipe("a red circle", num_inference_steps=3, output_type="np", num_images_per_prompt=2)
    assert out.images.shape == (2, 16, 16, 3) and 0 <= out.images.min() <= out.images.max() <= 1


def test_guidance_scale_zero_samples_the_empty_caption(pipe):
    # s = 0 is the unconditional pass alone, which must read the empty caption (or the negative prompt), not the
    # prompt: a pipeline whose second half of the doubled batch reused the prompt would sample the prompt here.
    # DPM-Solver reads ε alone; the ancestral sampler would also read the learned variance, which guidance takes from
    # the conditional pass (GLIDE's code does the same).
    pipe.scheduler = glide_fast_scheduler(pipe.glide)

    def sample(prompt, scale, **kwargs):
        return pipe(prompt, guidance_scale=scale, num_inference_steps=3, output_type="pt",
                    generator=torch.Generator().manual_seed(0), **kwargs).images

    # The doubled batch runs the same weights on other rows, which may sum in another order (REORDERED_FLOAT32);
    # 3 steps of the ancestral sampler grow that to ~1e-6, while another caption moves pixels by ~1e-1.
    torch.testing.assert_close(sample("a red circle", 0.0), sample("", 1.0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sample("a red circle", 0.0, negative_prompt="a blue square"),
                               sample("a blue square", 1.0), rtol=1e-4, atol=1e-4)
    assert (sample("a red circle", 1.0) - sample("", 1.0)).abs().max() > 1e-2


def test_the_fast_sampler_is_deterministic_and_runs_the_respaced_steps(pipe):
    pipe.scheduler = glide_fast_scheduler(pipe.glide)
    seen = []
    pipe.glide.unet.register_forward_hook(lambda module, args, output: seen.append(int(args[1][0])))

    def sample(seed):
        return pipe("a red circle", guidance_scale=3.0, num_inference_steps="5", output_type="pt",
                    generator=torch.Generator().manual_seed(seed)).images

    first = sample(0)
    assert seen == respaced_timesteps(1000, "5")
    torch.testing.assert_close(first, sample(0))
    assert not torch.equal(first, sample(1))  # only the starting noise is random
    assert torch.isfinite(first).all() and 0 <= first.min() <= first.max() <= 1


def test_the_fast_sampler_goes_with_the_pipeline_when_saved(pipe, tmp_path):
    pipe.scheduler = glide_fast_scheduler(pipe.glide)
    pipe.save_pretrained(tmp_path)
    assert type(GlidePipeline.from_pretrained(tmp_path).scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_pipeline_saves_and_loads(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = GlidePipeline.from_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(1)
    expected = pipe("a red circle", num_inference_steps=3, output_type="pt", generator=generator).images
    got = loaded("a red circle", num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(1)).images
    torch.testing.assert_close(got, expected)


def test_the_processor_is_a_component_saved_in_the_pipeline_folder(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["processor"] == ["hf_mmdl.processing.processing_glide", "GlideProcessor"] and "tokenizer" not in index
    loaded = GlidePipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.processor, GlideProcessor) and loaded.processor.text_ctx == 8
    processor = AutoProcessor.from_pretrained(tmp_path / "processor")
    assert isinstance(processor, GlideProcessor) and processor.image_processor.crop_size["height"] == 16
    for got in (loaded.processor, processor):
        assert torch.equal(got(text="a red circle")["input_ids"], pipe.processor(text="a red circle")["input_ids"])


def test_a_processor_that_does_not_fit_the_model_is_refused(pipe):
    tokenizer = pipe.processor.tokenizer
    with pytest.raises(ValueError, match="build it with GlideProcessor.for_config"):
        GlidePipeline(glide=pipe.glide, processor=GlideProcessor(pipe.processor.image_processor, tokenizer, text_ctx=6),
                      scheduler=pipe.scheduler)


def test_bad_pipeline_arguments_are_named(pipe):
    with pytest.raises(ValueError, match="prompt is empty"):
        pipe([])
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipe("a red circle", output_type="jpeg")
    with pytest.raises(ValueError, match="Got 2 prompts but 1 negative prompts"):
        pipe(["a", "b"], negative_prompt=["c"])


def variant_pipeline(pipeline_class, **overrides):
    tokenizer = train_caption_tokenizer(["a red circle on the left", "a blue square on the right"], min_count=1)
    model = tiny_glide(text_config=dict(vocab_size=len(tokenizer), text_ctx=8, width=32, num_layers=1,
                                        num_attention_heads=2, pad_token_id=tokenizer.pad_token_id), **overrides)
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    return pipeline_class(glide=model, processor=GlideProcessor.for_config(model.config, tokenizer),
                          scheduler=glide_scheduler(model))


def test_inpainting_keeps_every_pixel_outside_the_mask():
    from hf_mmdl.pipelines import GlideInpaintPipeline

    pipe = variant_pipeline(GlideInpaintPipeline, inpaint=True)
    image = PIL.Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 4:12] = 255  # white: repaint
    edited = pipe("a red circle", image=image, mask_image=PIL.Image.fromarray(mask), num_inference_steps=4,
                  output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    original = np.asarray(image) / 255
    outside = mask == 0
    assert np.abs(edited[outside] - original[outside]).max() < 1e-6
    assert np.abs(edited[~outside] - original[~outside]).mean() > 0.05


@pytest.mark.parametrize("as_mask", [np.asarray, torch.from_numpy, lambda repaint: PIL.Image.fromarray(repaint),
                                     lambda repaint: repaint.astype(np.uint8)],
                         ids=["bool array", "bool tensor", "PIL mode 1", "uint8 0/1 array"])
def test_inpainting_repaints_where_a_mask_is_true_as_the_processor_reads_it(as_mask):
    from hf_mmdl.pipelines import GlideInpaintPipeline

    pipe = variant_pipeline(GlideInpaintPipeline, inpaint=True)
    image = PIL.Image.fromarray((np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8))
    repaint = np.zeros((16, 16), dtype=bool)
    repaint[2:10, 6:14] = True
    mask = as_mask(repaint)
    fed, denoise = [], pipe.glide.denoise
    pipe.glide.denoise = lambda *args, **kwargs: fed.append(kwargs["inpaint_mask"]) or denoise(*args, **kwargs)
    edited = pipe("a red circle", image=image, mask_image=mask, guidance_scale=1.0, num_inference_steps=3,
                  output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    # The model reads the processor's known-pixel mask, which is 0 exactly where the mask is True.
    assert all(torch.equal(known, pipe.processor(mask_images=mask)["inpaint_mask"]) for known in fed)
    assert torch.equal(fed[0][0, 0] == 0, torch.from_numpy(repaint))
    original = np.asarray(image) / 255
    assert np.abs(edited[~repaint] - original[~repaint]).max() < 1e-6
    assert np.abs(edited[repaint] - original[repaint]).mean() > 0.05


def test_inpainting_reads_a_transparent_image_on_white_as_the_processors_do():
    from hf_mmdl.pipelines import GlideInpaintPipeline

    pipe = variant_pipeline(GlideInpaintPipeline, inpaint=True)
    image = PIL.Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # transparent, stored colour black
    image.paste((200, 30, 30, 255), (0, 0, 8, 16))
    mask = np.zeros((16, 16), dtype=bool)
    mask[10:14, 2:6] = True
    edited = pipe("a red circle", image=image, mask_image=mask, num_inference_steps=2, guidance_scale=1.0,
                  output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert np.abs(edited[:, 8:] - 1).max() < 1e-6  # the kept transparent half is white, not black
    assert np.abs(edited[:8, :8] - np.array([200, 30, 30]) / 255).max() < 1e-6


BAD_EDITS = {
    "mask of another aspect": (dict(mask_image=PIL.Image.new("L", (16, 12), 255)), "Mask 0 is 16×12 but its image is 16×16"),
    "mask of another size": (dict(mask_image=PIL.Image.new("L", (32, 32), 255)), "Mask 0 is 32×32 but its image is 16×16"),
    "all-black mask": (dict(mask_image=PIL.Image.new("L", (16, 16), 0)), "covers none of the model's 16×16 pixels"),
    "all-False mask": (dict(mask_image=np.zeros((16, 16), bool)), "covers none of the model's 16×16 pixels"),
    "NaN image": (dict(image=np.full((16, 16, 3), np.nan, np.float32)), "Image 0 contains NaN"),
    "int32 300 image": (dict(image=np.full((16, 16, 3), 300, np.int32)), "outside 0-255"),
    "bool image": (dict(image=np.ones((16, 16), bool)), "boolean array"),
}


@pytest.mark.parametrize("case", sorted(BAD_EDITS))
def test_the_inpainting_pipeline_refuses_edits_that_mean_something_else_before_sampling(case):
    from hf_mmdl.pipelines import GlideInpaintPipeline

    pipe = variant_pipeline(GlideInpaintPipeline, inpaint=True)
    pipe.glide.denoise = lambda *args, **kwargs: pytest.fail("sampled before the inputs were checked")
    inputs = dict(image=PIL.Image.new("RGB", (16, 16), "grey"), mask_image=PIL.Image.new("L", (16, 16), 255))
    kwargs, message = BAD_EDITS[case]
    with pytest.raises(ValueError, match=message):
        pipe("a red circle", **(inputs | kwargs), num_inference_steps=2)


@pytest.mark.parametrize("image, message", [(np.full((4, 4, 3), np.inf, np.float32), "Image 0 contains NaN or infinite"),
                                            (np.full((4, 4, 3), 60000, np.uint16), "outside 0-255")],
                         ids=["inf", "uint16 60000"])
def test_the_upsampling_pipeline_refuses_images_that_mean_something_else(image, message):
    from hf_mmdl.pipelines import GlideUpsamplePipeline

    pipe = variant_pipeline(GlideUpsamplePipeline, super_res=True)
    with pytest.raises(ValueError, match=message):
        pipe("a red circle", image=image)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_each_inpainting_step_predicts_the_known_pixels_exactly(prediction_type):
    from hf_mmdl.pipelines import GlideInpaintPipeline

    pipe = variant_pipeline(GlideInpaintPipeline, inpaint=True, prediction_type=prediction_type)
    generator = torch.Generator().manual_seed(0)
    output, sample = torch.randn(1, 6, 16, 16, generator=generator), torch.randn(1, 3, 16, 16, generator=generator)
    image, known = torch.rand(1, 3, 16, 16, generator=generator) * 2 - 1, torch.zeros(1, 1, 16, 16)
    known[..., :8] = 1
    t = torch.tensor(400)
    pasted = pipe.paste_known_pixels(output, sample, t, image, known)
    x0 = pipe.glide.diffusion.predicted_x0(pasted[:, :3], sample, t[None])
    torch.testing.assert_close(x0[..., :8], image[..., :8], atol=1e-4, rtol=0)
    torch.testing.assert_close(x0[..., 8:], pipe.glide.diffusion.predicted_x0(output[:, :3], sample, t[None])[..., 8:], atol=1e-4, rtol=0)
    torch.testing.assert_close(pasted[:, 3:], output[:, 3:])
    assert pipe.scheduler.config.prediction_type == prediction_type


def test_every_inpainting_step_samples_from_the_pasted_prediction():
    # GLIDE's inpainting sampler replaces x₀ by the known pixels at every step, so the unknown region is denoised in
    # the context of the given image; the final composite alone would hide a sampler that never (or only at the last
    # step) pastes, so each step's prediction is checked as the scheduler receives it.
    from hf_mmdl.pipelines import GlideInpaintPipeline

    pipe = variant_pipeline(GlideInpaintPipeline, inpaint=True)
    image = PIL.Image.fromarray((np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8))
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, 8:] = 255  # repaint the right half
    known_image = pipe.processor(images=image)["pixel_values"].float()
    seen, step = [], pipe.scheduler.step

    def spy(output, t, sample, **kwargs):
        x0 = pipe.glide.diffusion.predicted_x0(output[:, :3], sample, t.reshape(1).expand(len(sample)))
        seen.append((x0[..., :8] - known_image[..., :8]).abs().max().item())
        return step(output, t, sample, **kwargs)

    pipe.scheduler.step = spy
    pipe("a red circle", image=image, mask_image=PIL.Image.fromarray(mask), guidance_scale=1.0, num_inference_steps=4,
         generator=torch.Generator().manual_seed(0))
    # x₀ = (x_t − σε)/α recomputed from the rewritten ε multiplies float32 rounding by σ/α, which is largest at the
    # first step (t = T): measured 2.2e-3 there and ≤ 3e-7 after; an unpasted prediction is off by ~1 (pixels in [-1, 1]).
    assert len(seen) == 4 and max(seen) < 2e-2, seen


@pytest.mark.parametrize("make_scheduler", [glide_scheduler, glide_fast_scheduler])
def test_both_samplers_run_a_v_prediction_model(make_scheduler):
    pipe = variant_pipeline(GlidePipeline, prediction_type="v_prediction")
    pipe.scheduler = make_scheduler(pipe.glide)
    images = pipe(["a red circle", "a blue square"], guidance_scale=3.0, num_inference_steps="5", output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 16, 16, 3) and np.isfinite(images).all()


def test_upsampling_turns_a_low_resolution_image_into_the_model_size():
    from hf_mmdl.pipelines import GlideUpsamplePipeline

    pipe = variant_pipeline(GlideUpsamplePipeline, super_res=True)
    low = PIL.Image.new("RGB", (4, 4), (200, 30, 30))
    out = pipe("a red circle", image=low, generator=torch.Generator().manual_seed(0)).images
    assert out[0].size == (16, 16)


def test_each_pipeline_refuses_the_wrong_model_variant(pipe):
    from hf_mmdl.pipelines import GlideInpaintPipeline

    with pytest.raises(ValueError, match="needs an inpainting GLIDE model"):
        GlideInpaintPipeline(glide=pipe.glide, processor=pipe.processor, scheduler=pipe.scheduler)(
            "a", image=PIL.Image.new("RGB", (16, 16)), mask_image=PIL.Image.new("L", (16, 16)))
    inpainting = variant_pipeline(GlidePipeline, inpaint=True)
    with pytest.raises(ValueError, match="use GlideInpaintPipeline or GlideUpsamplePipeline"):
        inpainting("a red circle")


def test_bad_guidance_and_edit_inputs_are_named(pipe):
    from hf_mmdl.pipelines import GlideInpaintPipeline

    with pytest.raises(ValueError, match="guidance_scale must be a finite number ≥ 0"):
        pipe("a red circle", guidance_scale=-1.0, num_inference_steps=2)
    with pytest.raises(ValueError, match="Cannot take"):
        pipe("a red circle", num_inference_steps="2000")
    editor = variant_pipeline(GlideInpaintPipeline, inpaint=True)
    image, mask = PIL.Image.new("RGB", (16, 16)), PIL.Image.new("L", (16, 16), 255)
    with pytest.raises(ValueError, match="Got 2 images but 1 masks"):
        editor(["a", "b"], image=[image, image], mask_image=[mask], num_inference_steps=2)
    with pytest.raises(ValueError, match="Got 3 images for 2 prompts"):
        editor(["a", "b"], image=[image] * 3, mask_image=[mask] * 3, num_inference_steps=2)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(prompt=None), ValueError, "prompt is required"),
    (dict(prompt=7), ValueError, "prompt must be a string or a list of strings, got int"),
    (dict(prompt="a", num_images_per_prompt=0), ValueError, "num_images_per_prompt must be an int ≥ 1, got 0"),
    (dict(prompt="a", num_images_per_prompt=1.5), ValueError, "num_images_per_prompt must be an int ≥ 1"),
    (dict(prompt="a", num_inference_steps="abc"), ValueError, "num_inference_steps 'abc' is not a step count"),
    (dict(prompt="a", num_inference_steps=2.5), TypeError, "num_inference_steps must be an int or a respacing string"),
    (dict(prompt="a", latents=torch.zeros(1, 3, 8, 8)), ValueError, r"latents have shape \(1, 3, 8, 8\), but this call samples \(1, 3, 16, 16\)"),
    (dict(prompt="a", latents=np.zeros((1, 3, 16, 16))), TypeError, "latents must be a float tensor"),
    (dict(prompt="a", callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["prompt_embeds"]),
     ValueError, r"may only name \['latents'\]"),
])
def test_bad_sampling_arguments_are_named(pipe, kwargs, error, message):
    with pytest.raises(error, match=message):
        pipe(**kwargs)


def test_given_latents_are_the_initial_noise(pipe):
    drawn = pipe("a red circle", num_inference_steps=3, num_images_per_prompt=2, output_type="pt",
                 generator=torch.Generator().manual_seed(3)).images
    # The same x_T given as latents, and the generator where drawing it would have left it (the ancestral steps
    # draw from it too), give the same images.
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(2, 3, 16, 16, generator=generator)
    given = pipe("a red circle", num_inference_steps=3, num_images_per_prompt=2, output_type="pt", latents=noise,
                 generator=generator).images
    torch.testing.assert_close(given, drawn)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(2, 3, 16, 16, generator=generator)
    other = pipe("a red circle", num_inference_steps=3, num_images_per_prompt=2, output_type="pt", latents=-noise,
                 generator=generator).images
    assert not torch.allclose(other, drawn)


def test_callback_on_step_end_sees_every_step_and_can_replace_the_latents(pipe):
    seen = []

    def record(pipeline, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), callback_kwargs["latents"].shape))
        return callback_kwargs

    pipe("a red circle", num_inference_steps=3, callback_on_step_end=record, generator=torch.Generator().manual_seed(0))
    assert seen == [(i, t, (1, 3, 16, 16)) for i, t in enumerate(respaced_timesteps(1000, 3))]
    zeroed = pipe("a red circle", num_inference_steps=3, output_type="pt",
                  callback_on_step_end=lambda p, i, t, kw: {"latents": torch.zeros_like(kw["latents"])}).images
    assert torch.equal(zeroed, torch.full_like(zeroed, 0.5))  # x₀ = 0 in [-1, 1] is grey 0.5


def test_diffusers_and_transformers_generic_loaders_open_the_pipeline_folder(pipe, tmp_path):
    from diffusers import DiffusionPipeline

    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded) is GlidePipeline
    expected = pipe("a red circle", num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(1)).images
    got = loaded("a red circle", num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(1)).images
    torch.testing.assert_close(got, expected)
    processor = AutoProcessor.from_pretrained(tmp_path)  # the root folder, as for a transformers model
    assert isinstance(processor, GlideProcessor)
    assert torch.equal(processor(text="a red circle")["input_ids"], pipe.processor(text="a red circle")["input_ids"])


def test_saving_a_pipeline_onto_a_file_raises(pipe, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is an existing file"):
        pipe.save_pretrained(tmp_path / "file")


def test_a_processor_folder_without_tokenizer_files_names_them(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "processor" / name).unlink()
    with pytest.raises(OSError, match="no saved tokenizer for GlideProcessor: tokenizer.json, tokenizer_config.json missing"):
        AutoProcessor.from_pretrained(tmp_path)
