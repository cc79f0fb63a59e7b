"""Training a small GLIDE on the built-in one-object scenes, fine-tuning it for inpainting, and scoring its samples
and edits with the scene analyser (glide.md §6), shared by `examples/run_text_to_image.py`.

The proof asked of a text-to-image model: for fixed prompts, the share of samples whose object has the prompted
colour and position, at guidance 0 (unconditional), 1 and 3, against chance (1/6 colours, 1/4 positions). Of the
inpainting model: asked to repaint the object's quadrant with another colour, the share of edits with the prompted
colour, and the largest change outside the mask (which must be none).
"""

import dataclasses
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType, get_last_checkpoint

from ..data.scenes import COLOURS
from ..data.text_to_image import (
    POSITIONS,
    PROMPT_SHAPES,
    analyse_scene,
    load_text_to_image_scenes,
    load_twemoji_text_to_image,
    render_prompt_scene,
    scene_caption,
)
from ..modeling import GlideConfig, GlideModel, GlideTextConfig, inpainting_model_from
from ..pipelines import GlideInpaintPipeline, GlidePipeline, glide_scheduler
from ..processing import GlideImageProcessor, GlideProcessor, train_caption_tokenizer
from ..visualization import image_grid
from .common import EMACallback, refuse_fsdp_on_cpu, resolve_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class TextToImageArguments:
    dataset_name: str = field(default="scenes", metadata={
        "help": "'scenes' (one-object scenes scored by the analyser, then the inpainting fine-tune) or 'twemoji' "
                "(emoji names, samples scored by nearest-neighbour retrieval among the emoji)."})
    model_size: str = field(default="small", metadata={
        "help": "'tiny' (tests), 'small' (glide.md §6, CPU) or 'small-deep' (one more level, 4×4)."})
    prediction_type: str = field(default="v_prediction", metadata={
        "help": "What the UNet predicts and L_simple regresses: 'v_prediction' (default here) or 'epsilon' (GLIDE's). "
                "At this scale ε leaves background and position to chance (README: GLIDE, measured)."})
    image_size: int = field(default=32, metadata={"help": "Side of the training images."})
    num_train_images: int = field(default=4000, metadata={"help": "Built-in scenes for training (at most that many emoji)."})
    guidance_scales: str = field(default="0,1,3", metadata={"help": "Comma-separated guidance scales to score."})
    num_eval_prompts: int = field(default=24, metadata={"help": "Fixed prompts sampled at every guidance scale."})
    sampling_steps: str = field(default="100", metadata={"help": "Respacing of the evaluation sampler (e.g. 25, 100)."})
    ema_decay: float = field(default=0.999, metadata={"help": "Cap of the weight average's decay (0 = no average)."})
    inpaint_steps: int = field(default=600, metadata={
        "help": "Steps fine-tuning the trained model for inpainting on randomly erased regions (§4.3), scored on "
                "scene edits; 0 = none (scenes only)."})
    num_edits: int = field(default=24, metadata={"help": "Recolouring edits scored at every guidance scale."})


@dataclass
class TextToImageTrainingArguments(TrainingArguments):
    output_dir: str | None = field(default="outputs/glide-scenes")
    per_device_train_batch_size: int = 16
    learning_rate: float = 6e-4
    max_steps: int = 4000
    warmup_steps: float = 100
    lr_scheduler_type: SchedulerType | str = "cosine"
    logging_steps: float = 50
    eval_strategy: IntervalStrategy | str = "no"
    save_strategy: SaveStrategy | str = "no"
    save_total_limit: int | None = 1
    report_to: None | str | list[str] = "none"
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0


def glide_config_for(size: str, vocab_size: int, pad_token_id: int, image_size: int, text_ctx: int = 12,
                     prediction_type: str = "epsilon") -> GlideConfig:
    """glide.md §6: 'small' = C 32, mult (1, 2, 2), 1 res block, attention at 8×8 and the middle, text 128 × 2.
    'small-deep' adds a 4×4 level (attention at 8×8, 4×4 and the middle), for comparing depth; with ε it did not
    learn position either (README: GLIDE, measured), which v-prediction, not depth, fixed."""
    small_text = dict(width=128, num_layers=2, num_attention_heads=4)
    sizes = {
        "small": (small_text, dict(model_channels=32, channel_mult=(1, 2, 2)), (4,)),
        "small-deep": (small_text, dict(model_channels=32, channel_mult=(1, 2, 2, 2)), (4, 8)),
        "tiny": (dict(width=32, num_layers=1, num_attention_heads=2), dict(model_channels=32, channel_mult=(1, 2)), (2,)),
    }
    if size not in sizes:
        raise ValueError(f"model_size must be one of {sorted(sizes)}, got {size!r}.")
    text, unet, attention_downsampling = sizes[size]
    text_config = GlideTextConfig(vocab_size=vocab_size, text_ctx=text_ctx, pad_token_id=pad_token_id, **text)
    return GlideConfig(text_config=text_config, image_size=image_size, num_res_blocks=1,
                       attention_resolutions=tuple(image_size // d for d in attention_downsampling),
                       num_head_channels=32, dropout=0.0, prediction_type=prediction_type, **unet)


class CaptionedImageCollator:
    def __init__(self, processor: GlideProcessor):
        self.processor = processor

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.processor(text=[row["caption"] for row in rows], images=[row["image"] for row in rows])
        return dict(batch)


def evaluation_prompts(count: int, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [(rng.choice(PROMPT_SHAPES), rng.choice(list(COLOURS)), rng.choice(list(POSITIONS))) for _ in range(count)]


@torch.no_grad()
def score_guidance(pipe: GlidePipeline, prompts: list[tuple[str, str, str]], guidance_scales: list[float],
                   steps: str, seed: int = 0) -> tuple[dict, dict]:
    """Colour and position accuracy of samples for `prompts` at each guidance scale (same noise for every scale)."""
    captions = [scene_caption(*p) for p in prompts]
    scores, samples = {}, {}
    for scale in guidance_scales:
        images = pipe(captions, guidance_scale=scale, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed)).images
        found = [analyse_scene(image) for image in images]
        scores[str(scale)] = {
            "colour_accuracy": sum(f["colour"] == c for f, (_, c, _) in zip(found, prompts)) / len(prompts),
            "position_accuracy": sum(f["position"] == p for f, (_, _, p) in zip(found, prompts)) / len(prompts),
        }
        samples[scale] = images
    return scores, samples


@torch.no_grad()
def score_retrieval(pipe: GlidePipeline, names: list[str], references: list[PIL.Image.Image], reference_names: list[str],
                    guidance_scales: list[float], steps: str, seed: int = 0) -> tuple[dict, dict]:
    """For emoji-name prompts: the share of samples whose nearest reference image (pixel L2) is the prompted emoji,
    and whose 10 nearest include it, at each guidance scale (same noise for every scale)."""
    def flat(images):
        return np.stack([np.asarray(image.convert("RGB"), dtype=np.float32) / 255 for image in images]).reshape(len(images), -1)

    refs = flat(references)
    wanted = np.array([reference_names.index(name) for name in names])
    scores, samples = {}, {}
    for scale in guidance_scales:
        images = pipe(names, guidance_scale=scale, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed)).images
        distances = ((flat(images)[:, None] - refs[None]) ** 2).sum(-1)
        ranks = (distances < distances[np.arange(len(names)), wanted][:, None]).sum(1)
        scores[str(scale)] = {"retrieval_top1": float((ranks == 0).mean()), "retrieval_top10": float((ranks < 10).mean())}
        samples[scale] = images
    return scores, samples


@dataclass(frozen=True)
class EditCase:
    """Repaint the quadrant holding a `colour` `shape` with a `new_colour` `new_shape`."""

    shape: str
    colour: str
    position: str
    new_shape: str
    new_colour: str

    def source(self, image_size: int) -> PIL.Image.Image:
        return render_prompt_scene(self.shape, self.colour, self.position, image_size)

    def mask(self, image_size: int) -> PIL.Image.Image:
        """White (repaint) over the object's quadrant, black elsewhere."""
        mask = PIL.Image.new("L", (image_size, image_size), 0)
        cx, cy = (round(f * image_size) for f in POSITIONS[self.position])
        half = image_size // 4
        PIL.ImageDraw.Draw(mask).rectangle((cx - half, cy - half, cx + half - 1, cy + half - 1), fill=255)
        return mask

    @property
    def prompt(self) -> str:
        return scene_caption(self.new_shape, self.new_colour, self.position)


def edit_cases(count: int, seed: int = 1) -> list[EditCase]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        colour = rng.choice(list(COLOURS))
        new_colour = rng.choice([c for c in COLOURS if c != colour])
        cases.append(EditCase(rng.choice(PROMPT_SHAPES), colour, rng.choice(list(POSITIONS)), rng.choice(PROMPT_SHAPES), new_colour))
    return cases


@torch.no_grad()
def score_editing(pipe: GlideInpaintPipeline, cases: list[EditCase], guidance_scales: list[float], steps: str,
                  seed: int = 0) -> tuple[dict, dict]:
    """For each guidance scale: the share of edits whose object has the prompted new colour and stays in its
    quadrant, and the largest 8-bit change of any pixel outside the mask."""
    size = pipe.glide.config.image_size
    sources, masks = [c.source(size) for c in cases], [c.mask(size) for c in cases]
    outside = np.stack([np.asarray(m) == 0 for m in masks])[..., None]
    scores, edits = {}, {}
    for scale in guidance_scales:
        images = pipe([c.prompt for c in cases], image=sources, mask_image=masks, guidance_scale=scale,
                      num_inference_steps=steps, generator=torch.Generator().manual_seed(seed)).images
        found = [analyse_scene(image) for image in images]
        change = np.abs(np.stack([np.asarray(i, dtype=np.int16) for i in images]) - np.stack([np.asarray(s, dtype=np.int16) for s in sources]))
        scores[str(scale)] = {
            "colour_accuracy": sum(f["colour"] == c.new_colour for f, c in zip(found, cases)) / len(cases),
            "position_kept": sum(f["position"] == c.position for f, c in zip(found, cases)) / len(cases),
            "max_change_outside_mask": int((change * outside).max()),
            "mean_change_inside_mask": float(change[~np.broadcast_to(outside, change.shape)].mean()),
        }
        edits[scale] = images
    return scores, edits


def save_edit_grid(cases: list[EditCase], edits: dict[float, list[PIL.Image.Image]], image_size: int, path: Path) -> Path:
    """Sources, the same with the region to repaint in grey, and the edits per guidance scale, one case per column."""
    grey = PIL.Image.new("RGB", (image_size, image_size), (128, 128, 128))
    sources = [c.source(image_size) for c in cases]
    masked = [PIL.Image.composite(grey, source, c.mask(image_size)) for c, source in zip(cases, sources)]
    return image_grid([sources, masked] + list(edits.values()), path,
                      ["source", "repaint (grey)"] + [f"guidance {s:g}" for s in edits],
                      title="GLIDE inpainting: the grey region repainted as each column's prompt says")


def resume_point(training_args: TrainingArguments) -> str | None:
    """The newest checkpoint of a later training stage when resuming was asked for; None if it has none yet."""
    if not training_args.resume_from_checkpoint or not Path(training_args.output_dir).is_dir():
        return None
    return get_last_checkpoint(training_args.output_dir)


def train_glide(model: GlideModel, args: TextToImageArguments, training_args: TrainingArguments, train_dataset,
                collator, checkpoint: str | None) -> tuple[Trainer, dict]:
    callbacks = [EMACallback(model, args.ema_decay, resume_from=checkpoint)] if args.ema_decay else []
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, data_collator=collator, callbacks=callbacks)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return trainer, {"train_runtime_s": train_result.metrics.get("train_runtime"), "train_epochs": trainer.state.epoch,
                     "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None}


def run_text_to_image(args: TextToImageArguments, training_args: TextToImageTrainingArguments) -> dict:
    """Train a small GLIDE on the built-in scenes with the hybrid loss and caption dropout, score samples at each
    guidance scale, then fine-tune it for inpainting and score recolouring edits. Saves the text-to-image pipeline
    in output_dir and the inpainting one in output_dir/inpaint (both `from_pretrained`-loadable), `results.json`,
    and grids of samples per guidance scale and of edits."""
    refuse_fsdp_on_cpu(training_args)
    if args.dataset_name not in ("scenes", "twemoji"):
        raise ValueError(f"dataset_name must be 'scenes' or 'twemoji', got {args.dataset_name!r}.")
    set_seed(training_args.seed)
    if args.dataset_name == "scenes":
        train_dataset = load_text_to_image_scenes(args.num_train_images, 8, args.image_size, seed=training_args.seed)["train"]
    else:
        train_dataset = load_twemoji_text_to_image(args.image_size, limit=args.num_train_images)
    tokenizer = train_caption_tokenizer(train_dataset["caption"], min_count=1)
    config = glide_config_for(args.model_size, len(tokenizer), tokenizer.pad_token_id, args.image_size,
                              prediction_type=args.prediction_type)
    processor = GlideProcessor(
        GlideImageProcessor(size={"shortest_edge": args.image_size}, crop_size={"height": args.image_size, "width": args.image_size}),
        tokenizer, text_ctx=config.text_config.text_ctx,
    )
    model = GlideModel(config)
    logger.info("GLIDE with %.2fM parameters", model.num_parameters() / 1e6)
    collator = CaptionedImageCollator(processor)
    trainer, training = train_glide(model, args, training_args, train_dataset, collator, resolve_checkpoint(training_args))

    model.cpu().eval()
    pipe = GlidePipeline(glide=model, processor=processor, scheduler=glide_scheduler(model))
    pipe.set_progress_bar_config(disable=True)
    scales = [float(s) for s in args.guidance_scales.split(",")]
    if args.dataset_name == "scenes":
        scene_prompts = evaluation_prompts(args.num_eval_prompts)
        prompts = [scene_caption(*p) for p in scene_prompts]
        scores, samples = score_guidance(pipe, scene_prompts, scales, args.sampling_steps)
        chance = {"colour_accuracy": 1 / len(COLOURS), "position_accuracy": 1 / len(POSITIONS)}
    else:
        names = train_dataset["caption"]
        prompts = random.Random(0).sample(names, min(args.num_eval_prompts, len(names)))
        scores, samples = score_retrieval(pipe, prompts, train_dataset["image"], names, scales, args.sampling_steps)
        chance = {"retrieval_top1": 1 / len(names), "retrieval_top10": min(1.0, 10 / len(names))}
    results = {
        "num_parameters": model.num_parameters(),
        "dataset": args.dataset_name,
        "image_size": args.image_size,
        **training,
        "chance": chance,
        "guidance": scores,
        "sampling_steps": args.sampling_steps,
        "prompts": prompts,
    }
    out = Path(training_args.output_dir)
    if trainer.is_world_process_zero():
        pipe.save_pretrained(out)
        image_grid([samples[s][:12] for s in scales], out / "samples_by_guidance.png",
                   [f"guidance {s:g}" for s in scales], title="GLIDE samples for the same prompts and noise")

    fine_tune_inpainting = bool(args.inpaint_steps) and args.dataset_name == "scenes"
    if fine_tune_inpainting:
        inpaint_args = dataclasses.replace(training_args, output_dir=str(out / "inpaint"), max_steps=args.inpaint_steps)
        inpainter = inpainting_model_from(model).train()
        trainer, training = train_glide(inpainter, args, inpaint_args, train_dataset, collator, resume_point(inpaint_args))
        inpainter.cpu().eval()
        inpaint_pipe = GlideInpaintPipeline(glide=inpainter, processor=processor, scheduler=glide_scheduler(inpainter))
        inpaint_pipe.set_progress_bar_config(disable=True)
        cases = edit_cases(args.num_edits)
        edit_scores, edits = score_editing(inpaint_pipe, cases, scales, args.sampling_steps)
        results["inpainting"] = {**training, "chance": {"colour_accuracy": 1 / (len(COLOURS) - 1)}, "guidance": edit_scores,
                                 "prompts": [c.prompt for c in cases]}
        if trainer.is_world_process_zero():
            inpaint_pipe.save_pretrained(out / "inpaint")
            shown = cases[:12]
            save_edit_grid(shown, {s: edits[s][:12] for s in scales}, config.image_size, out / "edits.png")
    if trainer.is_world_process_zero():
        for folder in [out, out / "inpaint"] if fine_tune_inpainting else [out]:
            (folder / "results.json").write_text(json.dumps(results, indent=2))
    return results


METRIC_LABELS = {
    "colour_accuracy": "colour accuracy",
    "position_accuracy": "position accuracy",
    "retrieval_top1": "nearest emoji is the prompted one",
    "retrieval_top10": "prompted emoji among the 10 nearest",
}


def results_table(results: dict) -> str:
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


def main(argv: list[str] | None = None) -> dict:
    """Command line of `examples/run_text_to_image.py`."""
    args, training_args = HfArgumentParser((TextToImageArguments, TextToImageTrainingArguments)).parse_args_into_dataclasses(args=argv)
    results = run_text_to_image(args, training_args)
    print(results_table(results))
    return results
