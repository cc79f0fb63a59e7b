"""Training (cross-entropy, then self-critical), evaluation and baselines for image captioners (M²), shared by
`examples/run_captioning.py`, `hf-mmdl captioning` and `hf-mmdl quickstart`."""

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, Trainer
from transformers.models.auto.modeling_auto import MODEL_FOR_BACKBONE_MAPPING
from transformers.trainer_utils import SchedulerType

from ..data import HELD_OUT_HELP, UserData, load_caption_dataset_with_origins
from ..metrics import CiderD, caption_metrics
from ..architectures.m2 import captioning_results_table
from ..modeling import M2ForConditionalGeneration
from ..modeling.configuration_m2 import m2_config_for
from ..processing import M2ImageProcessor, M2Processor, train_caption_tokenizer
from ..processing.image_processing import to_rgb
from ..visualization import captioned_image_grid
from .recipe import Recipe, RecipeTrainingArguments, run_steps
from .scst import SelfCriticalTrainer

logger = logging.getLogger(__name__)


@dataclass
class CaptioningModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved M² folder or Hub id to fine-tune; default: a fresh model."}
    )
    model_size: str = field(
        default="small", metadata={"help": "Fresh model size: 'tiny' (tests), 'small' (CPU minutes) or 'paper'."}
    )
    image_size: int = field(default=64, metadata={"help": "Side of the square images fed to the grid backbone."})
    min_word_count: int = field(default=2, metadata={"help": "Words rarer than this in training captions become <unk>."})
    backbone_name_or_path: str | None = field(default=None, metadata={
        "help": "A pretrained transformers backbone (Hub id, or a folder saved with save_pretrained, e.g. a ResNet or "
                "ConvNext) whose last feature map replaces the size preset's randomly initialised grid backbone; its "
                "image processor's mean and std are used when the folder has one. With a fresh model only."})
    freeze_backbone: bool = field(default=True, metadata={
        "help": "Keep the pretrained backbone's weights and BatchNorm statistics fixed (train only M² on its "
                "features); false fine-tunes it too."})


@dataclass
class CaptioningDataArguments:
    dataset_name: str = field(
        default="scenes",
        metadata={"help": "'scenes' or 'twemoji' (built in), or a datasets Hub name / local path with images and captions."},
    )
    image_column: str = field(default="image", metadata={"help": "Image column of a non-built-in dataset."})
    captions_column: str = field(default="captions", metadata={"help": "Caption(s) column of a non-built-in dataset."})
    num_train_images: int = field(default=4000, metadata={"help": "Built-in scenes: training images."})
    num_eval_images: int = field(default=250, metadata={"help": "Built-in scenes: validation and test images each."})
    max_objects: int = field(default=4, metadata={"help": "Built-in scenes: most shapes per image."})
    data_seed_builtin: int = field(default=0, metadata={"help": "Seed of the built-in data generator."})
    max_test_images: int | None = field(default=None, metadata={"help": "Score at most this many test images."})


@dataclass
class CaptioningTrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/m2-captioning")
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 64
    # A step budget, not epochs: 4 epochs of a user's 900 captioned images are ~110 steps, far too few to learn
    # anything (README: a user's images); 2,000 steps take about 15 minutes on 2 CPU cores at the default size.
    max_steps: int = 2000
    # A fraction of the run (Trainer reads warmup_steps < 1 as one), so every run leaves its warm-up; at the default
    # length 500 steps, whose paper-schedule peak (d_model · 500)^-0.5 the scenes runs measured stable.
    warmup_steps: float = 0.25
    adam_beta2: float = 0.98
    lr_scheduler_type: SchedulerType | str = "inverse_sqrt"
    paper_schedule: bool = field(
        default=True,
        metadata={
            "help": "M²'s warm-up schedule lr(s) = d_model^-0.5 · min(s^-0.5, s · warmup^-1.5), with warmup the run's "
            "warm-up steps (--warmup_steps, a count or a fraction of the run): learning rate and scheduler come "
            "from it, so --learning_rate / --lr_scheduler_type need --paper_schedule false."
        },
    )
    num_beams: int = field(default=5, metadata={"help": "Beams for test-set captioning and SCST (paper: 5)."})
    meteor: bool = field(default=True, metadata={"help": "Also score METEOR when Java is installed (~10 s start-up)."})
    scst: bool = field(
        default=False,
        metadata={
            "help": "Run the second stage, self-critical training with CIDEr-D rewards, from the cross-entropy "
            "checkpoint given as --model_name_or_path; max_steps / num_train_epochs then count SCST steps."
        },
    )
    scst_learning_rate: float = field(default=5e-6, metadata={"help": "SCST learning rate, constant (paper: 5e-6)."})
    scst_batch_size: int = field(default=10, metadata={"help": "SCST images per batch (paper: 10)."})
    max_new_tokens: int = field(default=20, metadata={"help": "Longest generated caption (paper: 20)."})


def caption_pairs(data: datasets.DatasetDict, split: str) -> datasets.Dataset:
    """One row per (image, caption) of `split`: each reference caption is a training sample, as in the paper.
    Rows point at their image (split name and index) so images are stored, and decoded, once."""
    pairs = [(i, c) for i, caps in enumerate(data[split]["captions"]) for c in caps]
    return datasets.Dataset.from_dict(
        {"split": [split] * len(pairs), "image_index": [i for i, _ in pairs], "caption": [c for _, c in pairs]}
    )


class CaptionPairCollator:
    """Looks the images of a batch of (split, image_index, caption) rows up and runs the processor."""

    def __init__(self, processor: M2Processor, data: datasets.DatasetDict):
        self.processor = processor
        self.images = {name: split.select_columns(["image"]) for name, split in data.items()}

    def images_of(self, rows: list[dict]) -> list:
        return [self.images[r["split"]][r["image_index"]]["image"] for r in rows]

    def __call__(self, rows: list[dict]) -> dict:
        return dict(self.processor(images=self.images_of(rows), text_target=[r["caption"] for r in rows], truncation=True))


class ImageCollator(CaptionPairCollator):
    """Batches of whole images for SCST: processor outputs plus each row's split name and image index, which
    `SelfCriticalTrainer` uses to find the image's references."""

    def __call__(self, rows: list[dict]) -> dict:
        batch = dict(self.processor(images=self.images_of(rows)))
        batch["split"] = [r["split"] for r in rows]
        batch["image_index"] = torch.tensor([r["image_index"] for r in rows])
        return batch


@torch.no_grad()
def generate_captions(model, processor, images, batch_size: int = 50, **generate_kwargs) -> list[str]:
    model.eval()
    captions = []
    for start in tqdm(range(0, len(images), batch_size), desc="captioning", leave=False):
        inputs = processor(images=images[start : start + batch_size]).to(model.device)
        captions += processor.batch_decode(model.generate(**inputs, **generate_kwargs))
    return captions


def best_constant_caption(train_captions: list[str], validation_references: list[list[str]], candidates: int = 200) -> str:
    """The training caption that scores the highest CIDEr-D on the validation images when given for every image,
    among the `candidates` most frequent ones."""
    scorer = CiderD.from_references(validation_references)
    pool = [c for c, _ in Counter(train_captions).most_common(candidates)]
    scores = [scorer.corpus_score([c] * len(validation_references), validation_references)[0] for c in pool]
    return pool[int(np.argmax(scores))]


def pixel_matrix(images, side: int = 32) -> torch.Tensor:
    """PIL images → (count, side·side·3) float rows of 0–255 RGB values, with transparency on white as the
    captioner's processor reads it (`to_rgb`), so the baseline compares the pixels the model sees."""
    return torch.stack([torch.from_numpy(np.asarray(to_rgb(im).resize((side, side)), dtype=np.float32).ravel()) for im in images])


def nearest_neighbour_captions(train_split, query_images, k: int = 5) -> list[str]:
    """Caption retrieval on raw pixels (Devlin et al., 2015): among the captions of the k nearest training images
    (L2 on 32×32 RGB pixels), return the consensus caption, the one with the highest CIDEr-D to the others."""
    train_pixels, query_pixels = pixel_matrix(train_split["image"]), pixel_matrix(query_images)
    neighbours = torch.cdist(query_pixels, train_pixels).topk(k, largest=False).indices.tolist()
    train_captions = train_split["captions"]
    scorer = CiderD.from_references(train_captions)
    retrieved = []
    for idx in neighbours:
        pool = [c for i in idx for c in train_captions[i]]
        consensus = [scorer.score(c, pool[:j] + pool[j + 1 :]) for j, c in enumerate(pool)]
        retrieved.append(pool[int(np.argmax(consensus))])
    return retrieved


def build_processor(train_split, model_args: CaptioningModelArguments, max_length: int = 54) -> M2Processor:
    tokenizer = train_caption_tokenizer(
        (c for caps in train_split["captions"] for c in caps), min_count=model_args.min_word_count, model_max_length=max_length
    )
    # The script captions images, so its processor refuses detector region features (region_feature_dim=None).
    image_processor = M2ImageProcessor(size={"height": model_args.image_size, "width": model_args.image_size},
                                       region_feature_dim=None)
    return M2Processor(image_processor, tokenizer)


def load_pretrained_backbone(model_args: CaptioningModelArguments, processor: M2Processor):
    """The pretrained backbone of `--backbone_name_or_path` (the backbone class of its config, with its weights: its
    last stage by default); the processor takes over the normalisation its image processor was trained with, when
    the folder has one. Raises ValueError for a model without a transformers backbone class."""
    path = model_args.backbone_name_or_path
    # Through the config's backbone class, not `AutoBackbone.from_pretrained`: transformers 5.24's asks the Hub whether
    # the name is a repository first, which fails offline and for a local folder.
    config = AutoConfig.from_pretrained(path)
    if type(config) not in MODEL_FOR_BACKBONE_MAPPING:
        raise ValueError(f"--backbone_name_or_path {path} holds a {config.model_type!r} model, which transformers has "
                         "no backbone class for: pass a ResNet, ConvNext, Swin, DINOv2, ... folder or Hub id.")
    backbone = MODEL_FOR_BACKBONE_MAPPING[type(config)].from_pretrained(path)
    try:
        pretrained = AutoImageProcessor.from_pretrained(path)
    except OSError:  # a bare backbone folder: keep the processor's normalisation
        logger.warning("%s has no image processor: images are normalised with mean %s and std %s.",
                       path, processor.image_processor.image_mean,
                       processor.image_processor.image_std)
    else:
        processor.image_processor.image_mean = list(pretrained.image_mean)
        processor.image_processor.image_std = list(pretrained.image_std)
    return backbone


@torch.no_grad()
def grid_cells(backbone, image_size: int) -> int:
    """h·w of the backbone's last feature map for square `image_size` images: the visual tokens M² reads."""
    backbone.eval()
    channels = backbone.config.num_channels if hasattr(backbone.config, "num_channels") else 3
    feature_map = backbone(torch.zeros(1, channels, image_size, image_size)).feature_maps[-1]
    return feature_map.shape[-2] * feature_map.shape[-1]


def freeze(module: torch.nn.Module) -> None:
    """No gradients, and evaluation mode for good: `Trainer` switches the model to training mode at every step,
    which would let BatchNorm layers overwrite the pretrained statistics with those of the user's batches."""
    module.requires_grad_(False)
    module.eval()
    module.train = lambda mode=True: module


def load_captioning_data(data_args: CaptioningDataArguments) -> UserData:
    builtin = {}
    if data_args.dataset_name == "scenes":
        builtin = dict(
            num_train=data_args.num_train_images,
            num_validation=data_args.num_eval_images,
            num_test=data_args.num_eval_images,
            max_objects=data_args.max_objects,
            seed=data_args.data_seed_builtin,
        )
    return load_caption_dataset_with_origins(
        data_args.dataset_name, data_args.image_column, data_args.captions_column, **builtin
    )


def image_rows(data: datasets.DatasetDict, split: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"split": [split] * len(data[split]), "image_index": list(range(len(data[split])))})


PAPER_SCHEDULE_SETS = ("learning_rate", "lr_scheduler_type")


def refuse_flags_the_paper_schedule_sets(training_args: CaptioningTrainingArguments, given: set[str]) -> None:
    """The paper schedule sets the learning rate and scheduler itself: a given one would be overridden silently."""
    clashing = [name for name in PAPER_SCHEDULE_SETS if name in given]
    if training_args.paper_schedule and not training_args.scst and clashing:
        flags = " and ".join(f"--{name} {getattr(training_args, name)}" for name in clashing)
        raise ValueError(f"{flags} would be overridden by M²'s paper schedule (--paper_schedule, on by default), which "
                         "sets the learning rate to (d_model · warmup)^-0.5 with the inverse-sqrt scheduler: add "
                         "--paper_schedule false to use your own.")


def paper_schedule_learning_rate(d_model: int, warmup_steps: int) -> float:
    """The peak (d_model · warmup)^-0.5 of lr(s) = d_model^-0.5 · min(s^-0.5, s · warmup^-1.5)."""
    return (d_model * max(1, warmup_steps)) ** -0.5


def cross_entropy_trainer(model, processor, data, training_args: CaptioningTrainingArguments) -> Trainer:
    train_pairs = caption_pairs(data, "train")
    if training_args.paper_schedule:
        warmup = training_args.get_warmup_steps(run_steps(training_args, len(train_pairs)))
        training_args.learning_rate = paper_schedule_learning_rate(model.config.d_model, warmup)
        training_args.lr_scheduler_type = "inverse_sqrt"
        logger.info("Paper schedule: %d warm-up steps, peak learning rate %.2e.", warmup, training_args.learning_rate)
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=train_pairs,
        eval_dataset=caption_pairs(data, "validation"),
        data_collator=CaptionPairCollator(processor, data),
    )


def self_critical_trainer(model, processor, data, training_args: CaptioningTrainingArguments) -> SelfCriticalTrainer:
    """The paper's second stage: constant learning rate, Adam's default betas, batches of whole images, rewards
    with CIDEr-D document frequencies from the training captions (each caption its own document)."""
    scst_args = dataclasses.replace(
        training_args,
        learning_rate=training_args.scst_learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        adam_beta2=0.999,
        per_device_train_batch_size=training_args.scst_batch_size,
        eval_strategy="no",
        paper_schedule=False,
    )
    train_captions = [c for caps in data["train"]["captions"] for c in caps]
    return SelfCriticalTrainer(
        model=model,
        args=scst_args,
        train_dataset=image_rows(data, "train"),
        data_collator=ImageCollator(processor, data),
        processor=processor,
        references={name: split["captions"] for name, split in data.items()},
        cider=CiderD.from_corpus(train_captions),
        num_beams=training_args.num_beams,
        max_new_tokens=training_args.max_new_tokens,
    )


class CaptioningRecipe(Recipe):
    """M²'s two training stages (§4): cross-entropy on reference captions with the warm-up schedule, or with `--scst`
    self-critical training with CIDEr-D rewards from a cross-entropy checkpoint. Scored on the test split with beam
    search next to the best constant caption and nearest-neighbour retrieval on raw pixels."""

    name = "m2"
    description = ("Train and score an M² captioner: cross-entropy, or --scst self-critical training from a "
                   "cross-entropy checkpoint given as --model_name_or_path.")
    argument_classes = {"model": CaptioningModelArguments, "data": CaptioningDataArguments,
                        "training": CaptioningTrainingArguments}
    help_notes = HELD_OUT_HELP + " results.json records where each split came from (split_origins)."

    def load_data(self, args):
        refuse_flags_the_paper_schedule_sets(args.training, args.given)
        data, args.split_origins = load_captioning_data(args.data)
        return data

    def build(self, args, data):
        if args.model.model_name_or_path and args.model.backbone_name_or_path:
            raise ValueError("--backbone_name_or_path builds a fresh M² around a pretrained backbone; the M² of "
                             "--model_name_or_path already has its own: pass one of the two.")
        if args.model.model_name_or_path:
            return (AutoModelForImageTextToText.from_pretrained(args.model.model_name_or_path),
                    AutoProcessor.from_pretrained(args.model.model_name_or_path))
        if args.training.scst:
            raise ValueError("--scst starts from a cross-entropy checkpoint: pass it as --model_name_or_path.")
        processor = build_processor(data["train"], args.model)
        backbone = load_pretrained_backbone(args.model, processor) if args.model.backbone_name_or_path else None
        config = m2_config_for(
            args.model.model_size, len(processor.tokenizer), args.model.image_size, processor.tokenizer,
            **({} if backbone is None else dict(backbone_config=backbone.config,
                                                grid_cells=grid_cells(backbone, args.model.image_size))),
        )
        processor.image_processor.max_regions = config.max_regions
        model = M2ForConditionalGeneration(config)
        if backbone is not None:
            model.model.encoder.backbone.load_state_dict(backbone.state_dict())
            if args.model.freeze_backbone:
                freeze(model.model.encoder.backbone)
        return model, processor

    def test_split(self, args, data) -> datasets.Dataset:
        test = data["test"]
        if args.data.max_test_images:
            test = test.select(range(min(len(test), args.data.max_test_images)))
        return test

    def caption_test_images(self, args, model, processor, data) -> list[str]:
        return generate_captions(
            model, processor, self.test_split(args, data)["image"], num_beams=args.training.num_beams,
            max_new_tokens=args.training.max_new_tokens, length_penalty=0.0,
        )

    def before_training(self, args, model, processor, data):
        if not args.training.scst:
            return {}
        references = self.test_split(args, data)["captions"]
        return {"cross_entropy_model": caption_metrics(self.caption_test_images(args, model, processor, data),
                                                       references, meteor=False)}

    def collator(self, args, processor, data):
        return (ImageCollator if args.training.scst else CaptionPairCollator)(processor, data)

    def trainer(self, args, model, processor, data, checkpoint):
        if args.training.scst:
            return self_critical_trainer(model, processor, data, args.training)
        return cross_entropy_trainer(model, processor, data, args.training)

    def evaluate(self, args, trainer, model, processor, data):
        test = self.test_split(args, data)
        references = test["captions"]
        predictions = self.caption_test_images(args, model, processor, data)
        constant = best_constant_caption([c for caps in data["train"]["captions"] for c in caps], data["validation"]["captions"])
        retrieved = nearest_neighbour_captions(data["train"], test["image"])
        return {
            "model": caption_metrics(predictions, references, meteor=args.training.meteor),
            "constant_caption_baseline": caption_metrics([constant] * len(test), references, meteor=False),
            "nearest_neighbour_baseline": caption_metrics(retrieved, references, meteor=False),
            "constant_caption": constant,
            "stage": "self-critical" if args.training.scst else "cross-entropy",
            "dataset": args.data.dataset_name,
            "test_images": len(test),
            "split_origins": args.split_origins,
            "distinct_captions": len(set(predictions)),
            "distinct_references": len({c for refs in references for c in refs}),
            "examples": [{"generated": p, "references": r} for p, r in zip(predictions[:12], references[:12])],
        }

    def figures(self, args, model, processor, data, results, out):
        test = self.test_split(args, data)
        shown = results["examples"]
        return [captioned_image_grid(
            test["image"][: len(shown)],
            [[("M2", e["generated"]), ("ref", e["references"][0])] for e in shown],
            out / "test_captions.png",
            title=f"M2 on {args.data.dataset_name} test images: CIDEr-D {100 * results['model']['cider_d']:.1f}",
        )]

    results_table = staticmethod(captioning_results_table)


CAPTIONING_RECIPE = CaptioningRecipe()


def run_captioning(
    model_args: CaptioningModelArguments, data_args: CaptioningDataArguments, training_args: CaptioningTrainingArguments
) -> dict:
    """Train an M² captioner (cross-entropy, or with `scst` the self-critical stage from a cross-entropy checkpoint),
    score it and two baselines on the test split, and save the model and processor (`from_pretrained`-loadable), a
    results JSON and a PNG of test captions in `output_dir`."""
    return CAPTIONING_RECIPE.run(model_args, data_args, training_args)


main = CAPTIONING_RECIPE.main


__all__ = [
    "CAPTIONING_RECIPE",
    "CaptionPairCollator",
    "CaptioningRecipe",
    "CaptioningDataArguments",
    "CaptioningModelArguments",
    "CaptioningTrainingArguments",
    "best_constant_caption",
    "caption_pairs",
    "generate_captions",
    "m2_config_for",
    "nearest_neighbour_captions",
    "run_captioning",
]
