"""Training a small GLIDE on the built-in one-object scenes, fine-tuning it for inpainting, and scoring its samples
and edits with the scene analyser, shared by `examples/run_text_to_image.py` and `hf-mmdl train glide`.

The proof asked of a text-to-image model: for fixed prompts, the share of samples whose object has the prompted
colour and position, at guidance 0 (unconditional), 1 and 3, against chance (1/6 colours, 1/4 positions). Of the
inpainting model: asked to repaint the object's quadrant with another colour, the share of edits with the prompted
colour, and the largest change outside the mask (which must be none).
"""

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import SchedulerType

from ..architectures.glide import text_to_image_results_table
from ..data import load_caption_dataset
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
from ..modeling import GlideModel, inpainting_model_from
from ..modeling.configuration_glide import glide_config_for
from ..pipelines import GlideInpaintPipeline, GlidePipeline, glide_scheduler
from ..processing import GlideProcessor, train_caption_tokenizer
from ..processing.image_processing import to_rgb
from ..visualization import image_grid
from .common import EMACallback, last_complete_checkpoint
from .recipe import Recipe, RecipeTrainingArguments, training_summary

logger = logging.getLogger(__name__)


@dataclass
class TextToImageArguments:
    dataset_name: str = field(default="scenes", metadata={
        "help": "'scenes' (one-object scenes scored by the analyser, then the inpainting fine-tune), 'twemoji' "
                "(emoji names), or any datasets Hub name / local folder with an image and a caption column; all but "
                "the scenes are scored by nearest-neighbour retrieval among the training images."})
    image_column: str = field(default="image", metadata={"help": "Image column of a non-built-in dataset."})
    captions_column: str = field(default="captions", metadata={
        "help": "Caption column (a string, or a list whose first caption is used) of a non-built-in dataset."})
    model_size: str = field(default="small", metadata={
        "help": "'tiny' (tests), 'small' (2 CPU cores in minutes) or 'small-deep' (one more level, 4×4)."})
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
class TextToImageTrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/glide-scenes")
    per_device_train_batch_size: int = 16
    learning_rate: float = 6e-4
    max_steps: int = 4000
    warmup_steps: float = 100
    lr_scheduler_type: SchedulerType | str = "cosine"


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
    def flat(images):  # transparent references on white, as the model was trained on them
        return np.stack([np.asarray(to_rgb(image), dtype=np.float32) / 255 for image in images]).reshape(len(images), -1)

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
    if not training_args.resume_from_checkpoint:
        return None
    return last_complete_checkpoint(training_args.output_dir)


def train_glide(model: GlideModel, args: TextToImageArguments, training_args: TrainingArguments, train_dataset,
                collator, checkpoint: str | None) -> tuple[Trainer, dict]:
    """A further training stage (the inpainting fine-tune) with its own Trainer, weight average and summary."""
    callbacks = [EMACallback(model, args.ema_decay, resume_from=checkpoint)] if args.ema_decay else []
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, data_collator=collator, callbacks=callbacks)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    return trainer, training_summary(trainer, train_result, model)


class TextToImageRecipe(Recipe):
    """GLIDE's training (§2–3): the hybrid loss on captioned images with 20 % caption dropout and a weight average;
    samples for fixed prompts scored at each guidance scale against chance (the scene analyser on the built-in
    scenes, nearest-neighbour retrieval among the training images otherwise); on the scenes, the inpainting
    fine-tune (§4.3) scored on recolouring edits."""

    name = "glide"
    description = ("Train a small GLIDE on captioned images (built-in scenes by default), score guided samples against "
                   "chance, fine-tune it for inpainting and score edits.")
    argument_classes = {"options": TextToImageArguments, "training": TextToImageTrainingArguments}

    def load_data(self, args):
        options = args.options
        if options.dataset_name == "scenes":
            return load_text_to_image_scenes(options.num_train_images, 8, options.image_size, seed=args.training.seed)
        if options.dataset_name == "twemoji":
            return datasets.DatasetDict({"train": load_twemoji_text_to_image(options.image_size, limit=options.num_train_images)})
        try:
            data = load_caption_dataset(options.dataset_name, options.image_column, options.captions_column)
        except OSError as error:
            raise ValueError(f"dataset_name must be 'scenes' or 'twemoji' (built in), or a datasets Hub name / local "
                             f"folder with image and caption columns; {options.dataset_name!r} could not be loaded "
                             f"({error}).") from error
        # Samples are scored by retrieval among the training images, so every split is trained on.
        train = datasets.concatenate_datasets(list(data.values()))
        train = train.select(range(min(len(train), options.num_train_images)))
        return datasets.DatasetDict({"train": train.map(lambda row: {"caption": row["captions"][0]},
                                                        remove_columns=["captions"], keep_in_memory=True)})

    def build(self, args, data):
        options = args.options
        tokenizer = train_caption_tokenizer(data["train"]["caption"], min_count=1)
        config = glide_config_for(options.model_size, len(tokenizer), tokenizer.pad_token_id, options.image_size,
                                  prediction_type=options.prediction_type)
        return GlideModel(config), GlideProcessor.for_config(config, tokenizer)

    def collator(self, args, processor, data):
        return CaptionedImageCollator(processor)

    def callbacks(self, args, model, processor, data, checkpoint):
        return [EMACallback(model, args.options.ema_decay, resume_from=checkpoint)] if args.options.ema_decay else []

    def evaluate(self, args, trainer, model, processor, data):
        options = args.options
        model.cpu().eval()
        args.pipe = GlidePipeline(glide=model, processor=processor, scheduler=glide_scheduler(model))
        # Sampling the evaluation prompts takes minutes on a CPU: show its progress unless --disable_tqdm says not to.
        args.pipe.set_progress_bar_config(disable=args.training.disable_tqdm, desc="GLIDE evaluation samples")
        args.scales = [float(s) for s in options.guidance_scales.split(",")]
        train = data["train"]
        if options.dataset_name == "scenes":
            scene_prompts = evaluation_prompts(options.num_eval_prompts)
            prompts = [scene_caption(*p) for p in scene_prompts]
            scores, args.samples = score_guidance(args.pipe, scene_prompts, args.scales, options.sampling_steps)
            chance = {"colour_accuracy": 1 / len(COLOURS), "position_accuracy": 1 / len(POSITIONS)}
        else:
            names = train["caption"]
            references = processor.postprocess(processor(images=train["image"])["pixel_values"])
            prompts = random.Random(0).sample(names, min(options.num_eval_prompts, len(names)))
            scores, args.samples = score_retrieval(args.pipe, prompts, references, names, args.scales, options.sampling_steps)
            chance = {"retrieval_top1": 1 / len(names), "retrieval_top10": min(1.0, 10 / len(names))}
        results = {"dataset": options.dataset_name, "image_size": options.image_size,
                   "chance": chance, "guidance": scores, "sampling_steps": options.sampling_steps, "prompts": prompts}
        if options.inpaint_steps and options.dataset_name == "scenes":
            results["inpainting"] = self.fine_tune_for_inpainting(args, model, processor, data)
        return results

    def fine_tune_for_inpainting(self, args, model, processor, data) -> dict:
        """GLIDE §4.3: the trained model with 4 more input channels (zero-initialised) fine-tuned on randomly erased
        regions, then scored on recolouring edits of the object's quadrant."""
        out = Path(args.training.output_dir)
        inpaint_args = dataclasses.replace(args.training, output_dir=str(out / "inpaint"), max_steps=args.options.inpaint_steps)
        inpainter = inpainting_model_from(model).train()
        _, training = train_glide(inpainter, args.options, inpaint_args, data["train"], self.collator(args, processor, data),
                                  resume_point(inpaint_args))
        inpainter.cpu().eval()
        args.inpaint_pipe = GlideInpaintPipeline(glide=inpainter, processor=processor, scheduler=glide_scheduler(inpainter))
        args.inpaint_pipe.set_progress_bar_config(disable=args.training.disable_tqdm, desc="GLIDE evaluation edits")
        args.edit_cases = edit_cases(args.options.num_edits)
        edit_scores, args.edits = score_editing(args.inpaint_pipe, args.edit_cases, args.scales, args.options.sampling_steps)
        return {**training, "chance": {"colour_accuracy": 1 / (len(COLOURS) - 1)}, "guidance": edit_scores,
                "prompts": [c.prompt for c in args.edit_cases]}

    def save(self, args, trainer, model, processor, out):
        args.pipe.save_pretrained(out)  # with its processor, in out/processor
        if hasattr(args, "inpaint_pipe"):
            args.inpaint_pipe.save_pretrained(out / "inpaint")

    def result_folders(self, args, out):
        return [out, out / "inpaint"] if hasattr(args, "inpaint_pipe") else [out]

    def figures(self, args, model, processor, data, results, out):
        figures = [image_grid([args.samples[s][:12] for s in args.scales], out / "samples_by_guidance.png",
                              [f"guidance {s:g}" for s in args.scales], title="GLIDE samples for the same prompts and noise")]
        if hasattr(args, "inpaint_pipe"):
            figures.append(save_edit_grid(args.edit_cases[:12], {s: args.edits[s][:12] for s in args.scales},
                                          model.config.image_size, out / "edits.png"))
        return figures

    results_table = staticmethod(text_to_image_results_table)


TEXT_TO_IMAGE_RECIPE = TextToImageRecipe()


def run_text_to_image(args: TextToImageArguments, training_args: TextToImageTrainingArguments) -> dict:
    """Train a small GLIDE with the hybrid loss and caption dropout, score samples at each guidance scale, then (on
    the scenes) fine-tune it for inpainting and score recolouring edits. Saves the text-to-image pipeline in
    output_dir and the inpainting one in output_dir/inpaint (both `from_pretrained`-loadable), `results.json`, and
    grids of samples per guidance scale and of edits."""
    return TEXT_TO_IMAGE_RECIPE.run(args, training_args)


main = TEXT_TO_IMAGE_RECIPE.main


__all__ = [
    "TEXT_TO_IMAGE_RECIPE",
    "EditCase",
    "TextToImageArguments",
    "TextToImageRecipe",
    "TextToImageTrainingArguments",
    "edit_cases",
    "glide_config_for",
    "run_text_to_image",
    "score_editing",
    "score_guidance",
    "score_retrieval",
]
