"""Training a small GLIDE on the built-in one-object scenes, and scoring its samples with the scene analyser at
several guidance scales (glide.md §6), shared by `examples/run_text_to_image.py`.

The proof asked of a text-to-image model: for fixed prompts, the share of samples whose object has the prompted
colour and position, at guidance 0 (unconditional), 1 and 3, against chance (1/6 colours, 1/4 positions).
"""

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType

from ..data.scenes import COLOURS
from ..data.text_to_image import POSITIONS, PROMPT_SHAPES, analyse_scene, load_text_to_image_scenes, scene_caption
from ..modeling import GlideConfig, GlideModel, GlideTextConfig
from ..pipelines import GlidePipeline, glide_scheduler
from ..processing import GlideImageProcessor, GlideProcessor, train_caption_tokenizer
from ..visualization import image_grid
from .common import refuse_fsdp_on_cpu, resolve_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class TextToImageArguments:
    model_size: str = field(default="small", metadata={"help": "'tiny' (tests) or 'small' (glide.md §6, CPU)."})
    image_size: int = field(default=32, metadata={"help": "Side of the training images."})
    num_train_images: int = field(default=4000, metadata={"help": "Built-in one-object scenes for training."})
    guidance_scales: str = field(default="0,1,3", metadata={"help": "Comma-separated guidance scales to score."})
    num_eval_prompts: int = field(default=24, metadata={"help": "Fixed prompts sampled at every guidance scale."})
    sampling_steps: str = field(default="25", metadata={"help": "Respacing of the evaluation sampler (e.g. 25, 100)."})


@dataclass
class TextToImageTrainingArguments(TrainingArguments):
    output_dir: str | None = field(default="outputs/glide-scenes")
    per_device_train_batch_size: int = 12
    learning_rate: float = 5e-4
    max_steps: int = 3000
    warmup_steps: float = 100
    lr_scheduler_type: SchedulerType | str = "cosine"
    logging_steps: float = 50
    eval_strategy: IntervalStrategy | str = "no"
    save_strategy: SaveStrategy | str = "no"
    save_total_limit: int | None = 1
    report_to: None | str | list[str] = "none"
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0


def glide_config_for(size: str, vocab_size: int, pad_token_id: int, image_size: int, text_ctx: int = 12) -> GlideConfig:
    """glide.md §6: 'small' = C 32, mult (1, 2, 2), 1 res block, attention at 8×8 and the middle, text 128 × 2."""
    sizes = {
        "small": (dict(width=128, num_layers=2, num_attention_heads=4), dict(model_channels=32, channel_mult=(1, 2, 2))),
        "tiny": (dict(width=32, num_layers=1, num_attention_heads=2), dict(model_channels=32, channel_mult=(1, 2))),
    }
    if size not in sizes:
        raise ValueError(f"model_size must be one of {sorted(sizes)}, got {size!r}.")
    text, unet = sizes[size]
    text_config = GlideTextConfig(vocab_size=vocab_size, text_ctx=text_ctx, pad_token_id=pad_token_id, **text)
    return GlideConfig(text_config=text_config, image_size=image_size, num_res_blocks=1,
                       attention_resolutions=(image_size // 2 ** (len(unet["channel_mult"]) - 1),),
                       num_head_channels=32, dropout=0.0, **unet)


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


def run_text_to_image(args: TextToImageArguments, training_args: TextToImageTrainingArguments) -> dict:
    """Train a small GLIDE on the built-in scenes with the hybrid loss and caption dropout, then score samples at
    each guidance scale; save the pipeline (`GlidePipeline.from_pretrained`), `results.json` and sample grids."""
    refuse_fsdp_on_cpu(training_args)
    set_seed(training_args.seed)
    data = load_text_to_image_scenes(args.num_train_images, 8, args.image_size, seed=training_args.seed)
    tokenizer = train_caption_tokenizer(data["train"]["caption"], min_count=1)
    config = glide_config_for(args.model_size, len(tokenizer), tokenizer.pad_token_id, args.image_size)
    processor = GlideProcessor(
        GlideImageProcessor(size={"shortest_edge": args.image_size}, crop_size={"height": args.image_size, "width": args.image_size}),
        tokenizer, text_ctx=config.text_config.text_ctx,
    )
    model = GlideModel(config)
    trainer = Trainer(model=model, args=training_args, train_dataset=data["train"], data_collator=CaptionedImageCollator(processor))
    logger.info("GLIDE with %.2fM parameters", model.num_parameters() / 1e6)
    train_result = trainer.train(resume_from_checkpoint=resolve_checkpoint(training_args))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    model.cpu().eval()
    pipe = GlidePipeline(glide=model, tokenizer=tokenizer, scheduler=glide_scheduler(model))
    pipe.set_progress_bar_config(disable=True)
    prompts = evaluation_prompts(args.num_eval_prompts)
    scales = [float(s) for s in args.guidance_scales.split(",")]
    scores, samples = score_guidance(pipe, prompts, scales, args.sampling_steps)
    results = {
        "num_parameters": model.num_parameters(),
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
        "chance": {"colour_accuracy": 1 / len(COLOURS), "position_accuracy": 1 / len(POSITIONS)},
        "guidance": scores,
        "sampling_steps": args.sampling_steps,
        "prompts": [scene_caption(*p) for p in prompts],
    }
    if trainer.is_world_process_zero():
        out = Path(training_args.output_dir)
        pipe.save_pretrained(out)
        processor.save_pretrained(out / "processor")
        (out / "results.json").write_text(json.dumps(results, indent=2))
        image_grid([samples[s][:12] for s in scales], out / "samples_by_guidance.png",
                   [f"guidance {s:g}" for s in scales], title="GLIDE samples for the same prompts and noise")
    return results


def main(argv: list[str] | None = None) -> dict:
    """Command line of `examples/run_text_to_image.py`."""
    args, training_args = HfArgumentParser((TextToImageArguments, TextToImageTrainingArguments)).parse_args_into_dataclasses(args=argv)
    results = run_text_to_image(args, training_args)
    print(json.dumps(results["guidance"], indent=2))
    return results
