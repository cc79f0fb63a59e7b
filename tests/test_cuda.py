"""Mixed precision and device placement on a CUDA GPU, for every architecture: what a user scaling up runs.

Skipped where no GPU is present (CI); run them on a GPU machine with `python -m pytest tests/test_cuda.py`.
"""

import json
import math

import numpy as np
import PIL.Image
import pytest
import torch

from hf_mmdl import M2ForConditionalGeneration
from hf_mmdl.modeling import ImageVAEModel, map_pixels
from hf_mmdl.pipelines import GlideInpaintPipeline, GlidePipeline, glide_fast_scheduler, glide_scheduler
from hf_mmdl.processing import GlideProcessor, train_caption_tokenizer
from hf_mmdl.training.autoencoder import AutoencoderDataArguments, AutoencoderModelArguments, AutoencoderTrainingArguments, run_autoencoder
from hf_mmdl.training.captioning import CaptioningModelArguments, CaptioningTrainingArguments, run_captioning
from hf_mmdl.training.text_to_image import TextToImageArguments, TextToImageTrainingArguments, run_text_to_image

from conftest import tiny_region_config
from test_autoencoder_modeling import tiny_dvae, tiny_vae
from test_glide_modeling import tiny_glide
from test_m2_scaling import TINY_DATA

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PRECISIONS = [torch.float16, torch.bfloat16]
PROMPTS = ["a red circle on the left", "a blue square on the right"]


def tiny_pipeline(pipeline=GlidePipeline, **overrides):
    tokenizer = train_caption_tokenizer(PROMPTS, min_count=1)
    model = tiny_glide(text_config=dict(vocab_size=len(tokenizer), text_ctx=8, width=32, num_layers=1,
                                        num_attention_heads=2, pad_token_id=tokenizer.pad_token_id), **overrides)
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    return pipeline(glide=model, processor=GlideProcessor.for_config(model.config, tokenizer),
                    scheduler=glide_scheduler(model))


def fixed_batches(tokenizer):
    """One training batch per architecture, with the inputs each model's forward takes."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=generator)
    features = torch.randn(4, 10, 16, generator=generator)
    captions = torch.randint(4, len(tokenizer), (4, 6), generator=generator)
    return {
        "m2": (lambda: M2ForConditionalGeneration(tiny_region_config(tokenizer)),
               dict(region_features=features, region_attention_mask=torch.ones(4, 10, dtype=torch.long), labels=captions)),
        "vae": (tiny_vae, dict(pixel_values=images * 2 - 1)),
        "dvae": (tiny_dvae, dict(pixel_values=map_pixels(images))),
        "glide": (tiny_glide, dict(pixel_values=images * 2 - 1, input_ids=torch.randint(1, 50, (4, 8), generator=generator),
                                   timesteps=torch.tensor([50, 200, 400, 600]),
                                   noise=torch.randn(4, 3, 16, 16, generator=generator))),
    }


@pytest.mark.parametrize("dtype", PRECISIONS, ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", ["m2", "vae", "dvae", "glide"])
def test_every_architecture_learns_a_fixed_batch_under_autocast_on_gpu(name, dtype, tokenizer):
    make, batch = fixed_batches(tokenizer)[name]
    model = make().cuda().train()
    batch = {k: v.cuda() for k, v in batch.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    losses = []
    for _ in range(40):
        with torch.autocast("cuda", dtype=dtype):
            loss = model(**batch).loss
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_captioning_generates_in_half_precision_weights_on_gpu(tokenizer, regions):
    torch.manual_seed(0)
    model = M2ForConditionalGeneration(tiny_region_config(tokenizer)).eval()
    expected = model.generate(**regions, num_beams=2, max_new_tokens=5)
    for dtype in PRECISIONS:
        half = model.to("cuda", dtype)
        inputs = {k: v.cuda() if k.endswith("mask") else v.to("cuda", dtype) for k, v in regions.items()}
        generated = half.generate(**inputs, num_beams=2, max_new_tokens=5)
        assert generated.shape[0] == expected.shape[0] and generated.device.type == "cuda"
        model = half.float().cpu()


@pytest.mark.parametrize("scheduler", [glide_scheduler, glide_fast_scheduler])
def test_glide_samples_on_gpu_match_the_cpu_for_one_cpu_generator_and_run_in_half_precision(scheduler):
    pipe = tiny_pipeline()
    pipe.scheduler = scheduler(pipe.glide)
    kwargs = dict(prompt=PROMPTS, guidance_scale=3.0, num_inference_steps="6", output_type="np")
    on_cpu = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    pipe.to("cuda")
    on_gpu = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
    # cuDNN may run float32 convolutions in TF32 (10-bit mantissa); six guided steps carry that along.
    assert abs(on_gpu - on_cpu).mean() < 0.02
    for dtype, tolerance in zip(PRECISIONS, [0.04, 0.08]):
        pipe.to("cuda", dtype)
        half = pipe(**kwargs, generator=torch.Generator().manual_seed(0)).images
        # Rounding differences pass through the ancestral noise, so compare on average (bf16 has 8 mantissa bits).
        assert np.isfinite(half).all() and abs(half - on_cpu).mean() < tolerance, dtype


def test_glide_inpainting_keeps_the_known_pixels_in_fp16_on_gpu():
    inpaint = tiny_pipeline(GlideInpaintPipeline, inpaint=True).to("cuda", torch.float16)
    image = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    repaint = np.zeros((16, 16), dtype=np.uint8)
    repaint[4:12, 4:12] = 255
    edited = inpaint(PROMPTS[0], image=PIL.Image.fromarray(image), mask_image=PIL.Image.fromarray(repaint),
                     num_inference_steps="4", generator=torch.Generator().manual_seed(0)).images[0]
    edited = np.asarray(edited)
    assert (edited[repaint == 0] == image[repaint == 0]).all()
    assert (edited[repaint == 255] != image[repaint == 255]).any()


def test_vae_samples_and_dvae_relaxations_follow_a_cpu_generator_on_gpu():
    vae, dvae = tiny_vae(), tiny_dvae()
    on_cpu = vae.sample(3, generator=torch.Generator().manual_seed(0))
    on_gpu = vae.cuda().sample(3, generator=torch.Generator().manual_seed(0))
    # cuDNN may run float32 convolutions in TF32, hence the tolerance.
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=0)
    pixels = map_pixels(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    relaxed = dvae(pixels, relaxed=True, generator=torch.Generator().manual_seed(0), return_loss=False).reconstruction
    relaxed_gpu = dvae.cuda()(pixels.cuda(), relaxed=True, generator=torch.Generator().manual_seed(0), return_loss=False).reconstruction
    torch.testing.assert_close(relaxed_gpu.cpu(), relaxed, atol=1e-3, rtol=0)
    assert isinstance(vae, ImageVAEModel)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_training_scripts_run_with_trainer_mixed_precision_on_gpu(precision, tmp_path):
    flags = {precision: True, "max_steps": 6, "warmup_steps": 0, "logging_steps": 1, "disable_tqdm": True, "save_strategy": "no"}
    glide = run_text_to_image(
        TextToImageArguments(model_size="tiny", image_size=16, num_train_images=32, num_eval_prompts=3, sampling_steps="3",
                             inpaint_steps=3, num_edits=3),
        TextToImageTrainingArguments(output_dir=str(tmp_path / "glide"), per_device_train_batch_size=8, **flags),
    )
    assert all(s["max_change_outside_mask"] == 0 for s in glide["inpainting"]["guidance"].values())
    captioning = run_captioning(
        CaptioningModelArguments(model_size="tiny", image_size=32), TINY_DATA,
        CaptioningTrainingArguments(output_dir=str(tmp_path / "m2"), eval_strategy="no", num_beams=1, meteor=False, **flags),
    )
    autoencoder = run_autoencoder(
        AutoencoderModelArguments(model_type="dvae", model_size="tiny"),
        AutoencoderDataArguments(dataset_name="scenes", image_size=16, num_train_images=64, num_eval_images=16),
        AutoencoderTrainingArguments(output_dir=str(tmp_path / "dvae"), track_every=0, **flags),
    )
    for results in (glide, captioning, autoencoder):
        assert math.isfinite(results["train_loss_first"]) and math.isfinite(results["train_loss_last"]), results
    assert json.loads((tmp_path / "glide" / "results.json").read_text())["num_parameters"] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vokenizing_with_the_matcher_on_gpu_matches_the_cpu(dtype):
    import copy

    from hf_mmdl import VokenizerModel, VokenizerProcessor
    from hf_mmdl.processing import VokenizerImageProcessor, train_bert_wordpiece
    from hf_mmdl.vokenization import Vokenizer
    from test_vokenizer_modeling import tiny_config, tiny_text_config

    processor = VokenizerProcessor(VokenizerImageProcessor.for_size(32), train_bert_wordpiece(PROMPTS * 3, vocab_size=60))
    torch.manual_seed(0)
    model = VokenizerModel(tiny_config(text_config=tiny_text_config(vocab_size=len(processor.tokenizer)))).eval()
    images = [PIL.Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)) for i in range(6)]
    cpu = Vokenizer.build(model, processor, images, show_progress=False)
    gpu = Vokenizer.build(copy.deepcopy(model).to("cuda", dtype), processor, images, show_progress=False)
    for got, want in zip(gpu.vokenize(PROMPTS), cpu.vokenize(PROMPTS)):
        assert got.vokens.shape == want.vokens.shape and np.isfinite(got.scores[1:-1]).all()
        if dtype == torch.float32:  # bf16 keys may reorder near ties
            np.testing.assert_array_equal(got.vokens, want.vokens)
            np.testing.assert_allclose(got.scores[1:-1], want.scores[1:-1], atol=1e-4)
