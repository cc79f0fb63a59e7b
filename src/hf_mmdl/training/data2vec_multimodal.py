"""Pre-training and evaluation of data2vec-multimodal, shared by `examples/run_data2vec.py`, `hf-mmdl train
data2vec_multimodal` and `hf-mmdl quickstart`.

Batches hold one modality each, drawn by configurable ratios, plus paired batches (every modality of the same rows)
that add the cross-modal term. The EMA teacher follows the Trainer's optimizer steps (`TeacherUpdateCallback`), so a
resumed run continues the τ schedule from its checkpoint, whose model state holds the teacher.

Proof of learning, measured in the same run on held-out rows: per modality, linear-probe and 1-NN accuracy of frozen
mean-pooled features against the same network at its random initialisation; cross-modal retrieval R@1 / R@5 in all
six directions against chance and against the same model trained without paired batches (saved to
`output_dir/no_pairs` for `hf-mmdl analyse`).

`--held_out_concepts` / `--num_held_out_concepts` remove every training row of some concepts before the tokenizer,
the model and the no-pairs baseline see the data (`hold_out_concepts`); the test rows keep them, and results.json
lists them so that `hf-mmdl analyse` scores cross-modal arithmetic towards those unseen concepts apart from the seen
ones.
"""

import logging
import random
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoProcessor, Trainer, TrainerCallback
from transformers.trainer_utils import SchedulerType

from ..architectures.data2vec_multimodal import data2vec_results_table
from ..data.trimodal import load_trimodal_dataset
from ..modeling import Data2VecMultimodalForPreTraining
from ..modeling.configuration_data2vec_multimodal import BLOCK_FIELDS, MODALITIES, data2vec_multimodal_config_for
from ..processing import Data2VecMultimodalProcessor
from ..representations import (
    linear_probe_accuracy, nearest_neighbour_accuracy, retrieval_chance, retrieval_recall,
)
from ..visualization import embedding_scatter, line_chart
from .common import resolve_checkpoint
from .recipe import Recipe, RecipeTrainingArguments

logger = logging.getLogger(__name__)


@dataclass
class Data2VecModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved data2vec-multimodal folder to continue from; default: a fresh model."})
    model_size: str = field(default="small", metadata={"help": "Fresh model size: 'tiny' (tests), 'small' (CPU "
                                                               "minutes) or 'base' (data2vec Base)."})
    block_sharing: str = field(default="experts", metadata={
        "help": "'experts' (shared attention, one FFN per modality), 'shared' or 'separate' blocks."})
    num_fusion_layers: int = field(default=0, metadata={"help": "Fusion blocks over concatenated pairs on top."})
    cross_modal_loss: str = field(default="contrastive", metadata={
        "help": "Paired-batch term: 'contrastive', 'regression', 'both' or 'none'."})
    num_mask_copies: int = field(default=1, metadata={"help": "data2vec 2.0 multi-mask: masked copies per teacher pass."})
    encode_unmasked_only: bool = field(default=False, metadata={
        "help": "data2vec 2.0: the image student encodes visible patches only, a conv decoder predicts the rest."})
    vocab_size: int = field(default=400, metadata={"help": "Byte-level BPE vocabulary trained on the training captions."})
    hidden_size: int | None = field(default=None, metadata={
        "help": "Fresh model: width H of the blocks (and of every input encoder's output); default: --model_size's."})
    num_hidden_layers: int | None = field(default=None, metadata={
        "help": "Fresh model: number of shared blocks; default: --model_size's."})
    num_attention_heads: int | None = field(default=None, metadata={
        "help": "Fresh model: attention heads per block (must divide H); default: --model_size's."})
    intermediate_size: int | None = field(default=None, metadata={
        "help": "Fresh model: hidden width of each FFN (expert); default: --model_size's."})


# The flags that shape a fresh model, meaningless next to --model_name_or_path (a saved model keeps its own).
FRESH_MODEL_FLAGS = ("model_size", "block_sharing", "num_fusion_layers", "cross_modal_loss", "num_mask_copies",
                     "encode_unmasked_only", "vocab_size", *BLOCK_FIELDS)


@dataclass
class Data2VecDataArguments:
    dataset_name: str = field(default="scenes", metadata={
        "help": "'scenes' or 'twemoji' (built in, spoken captions by espeak-ng), or a datasets name / local path with "
                "image, text, audio and concept columns."})
    image_column: str = field(default="image", metadata={"help": "Image column of a user dataset."})
    text_column: str = field(default="text", metadata={"help": "Text column of a user dataset."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a user dataset."})
    concept_column: str = field(default="concept", metadata={"help": "Label column of a user dataset (probes)."})
    image_size: int = field(default=32, metadata={"help": "Side of the square images."})
    num_train_images: int = field(default=1200, metadata={
        "help": "Built-in scenes: training rows (image, caption and spoken caption each)."})
    num_test_images: int = field(default=300, metadata={"help": "Built-in scenes: held-out rows."})
    modality_ratios: str = field(default="text=1,image=1,audio=1", metadata={
        "help": "Relative frequency of unimodal batches of each modality, e.g. 'text=1,image=2,audio=1'. With "
                "--paired_fraction 0, a modality left out is neither trained nor measured: 'text=1' trains and "
                "measures a unimodal text data2vec."})
    paired_fraction: float = field(default=0.5, metadata={
        "help": "Share of batches that hold every modality of the same rows and add the cross-modal term."})
    no_pairs_baseline: bool = field(default=True, metadata={
        "help": "Also train the same model without paired batches, for the retrieval comparison."})
    random_init_baseline: bool = field(default=True, metadata={
        "help": "Also measure the probes of the network at its random initialisation (their baseline)."})
    held_out_concepts: str = field(default="", metadata={
        "help": "Concepts left out of training, comma-separated names (e.g. 'red circle,blue square'): every "
                "training row of them (image, caption and spoken caption) is removed before the tokenizer and the "
                "model see the data, while the test rows keep them, so `hf-mmdl analyse` scores arithmetic towards "
                "concepts the model never saw. Recorded in results.json."})
    num_held_out_concepts: int = field(default=0, metadata={
        "help": "Instead of naming them, leave out this many concepts drawn with --seed."})


@dataclass
class Data2VecTrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/data2vec-multimodal")
    per_device_train_batch_size: int = 32
    # At 1e-3 the contrastive term died at log(batch) within 20 steps on the built-in scenes.
    learning_rate: float = 5e-4
    weight_decay: float = 0.05
    adam_beta2: float = 0.98
    warmup_steps: float = 0.1
    lr_scheduler_type: SchedulerType | str = "cosine"
    max_steps: int = 1000
    seed: int = 0


# Data flags that apply to one kind of dataset only: the built-in scenes' sizes, and a user dataset's column names.
SCENE_FLAGS = ("num_train_images", "num_test_images")
COLUMN_FLAGS = ("image_column", "text_column", "audio_column", "concept_column")


def refuse_inapplicable_data_flags(dataset_name: str, given: set[str]) -> None:
    """ValueError for a given flag that `dataset_name` would ignore (e.g. --num_train_images with a user dataset,
    whose own splits decide the rows)."""
    applicable = SCENE_FLAGS if dataset_name == "scenes" else () if dataset_name == "twemoji" else COLUMN_FLAGS
    misplaced = sorted(given & {*SCENE_FLAGS, *COLUMN_FLAGS} - set(applicable))
    if misplaced:
        raise ValueError(f"--{', --'.join(misplaced)} {'does' if len(misplaced) == 1 else 'do'} not apply to "
                         f"--dataset_name {dataset_name}: "
                         + ("--num_train_images / --num_test_images size the built-in scenes, "
                            if set(misplaced) & set(SCENE_FLAGS) else "")
                         + ("the --*_column flags name the columns of your own dataset, " if set(misplaced) &
                            set(COLUMN_FLAGS) else "") + "leave them out.")


def parse_ratios(text: str) -> dict[str, float]:
    """'text=1,image=2' → {'text': 1.0, 'image': 2.0}; unknown modalities or non-positive totals raise ValueError."""
    ratios = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in MODALITIES:
            raise ValueError(f"--modality_ratios names {name!r}; the modalities are {MODALITIES}.")
        try:
            ratios[name] = float(value)
        except ValueError:
            raise ValueError(f"--modality_ratios: {part!r} is not modality=number.") from None
    if not ratios or sum(ratios.values()) <= 0 or min(ratios.values()) < 0:
        raise ValueError(f"--modality_ratios {text!r} must give non-negative weights with a positive sum.")
    return ratios


class ModalityBatchCollator:
    """Draws each batch's kind — one modality by `ratios`, or with probability `paired_fraction` all modalities of
    the same rows — and processes only that part of the rows (data2vec's one-modality batches, fairseq's
    multimodal task, plus paired batches for the cross-modal term).

    The draw is seeded by the batch's captions, so a resumed run (whose Trainer restores the data order) gives every
    batch the kind it had in the uninterrupted run."""

    def __init__(self, processor, ratios: dict[str, float], paired_fraction: float, seed: int):
        if not 0 <= paired_fraction <= 1:
            raise ValueError(f"--paired_fraction must lie in [0, 1], got {paired_fraction}.")
        self.processor, self.ratios, self.paired_fraction, self.seed = processor, ratios, paired_fraction, seed

    def kind(self, rows: list[dict]) -> tuple[str, ...]:
        rng = random.Random(zlib.crc32("\n".join([str(self.seed), *(row["text"] for row in rows)]).encode()))
        if rng.random() < self.paired_fraction:
            return MODALITIES
        names = list(self.ratios)
        return (rng.choices(names, weights=[self.ratios[n] for n in names])[0],)

    def __call__(self, rows: list[dict]) -> dict:
        return process_rows(self.processor, rows, self.kind(rows))


def row_concept_names(rows) -> list[str]:
    """Each row's concept as a name: a ClassLabel's name, else the value as text (so bare ids read "3")."""
    feature = rows.features["concept"]
    names = feature.names if hasattr(feature, "names") else None
    return [names[c] if names else str(c) for c in rows["concept"]]


def hold_out_concepts(splits, names: str = "", count: int = 0, seed: int = 0):
    """Remove every training row of some concepts, so that the model never trains on any modality of them.

    splits: a DatasetDict with `train` and `test` (a `concept` column each); `names`: comma-separated concept names,
    or `count`: how many concepts to draw with `seed` (not both). Returns (splits, held-out names in the dataset's
    concept order): `train` without those rows, `test` unchanged, and `probe_train`, the unfiltered training rows on
    which the frozen-feature probes are fitted (a probe can only name a concept it was fitted on; the network itself
    never sees those rows). With neither option the splits come back as they were and the list is empty.
    Raises ValueError for both options at once, a negative count, names that are not concepts of the training
    split, a held-out concept without test rows (nothing would measure it), or fewer than two concepts left."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if wanted and count:
        raise ValueError(f"--held_out_concepts names the concepts and --num_held_out_concepts {count} draws them: "
                         "give one of the two.")
    if count < 0:
        raise ValueError(f"--num_held_out_concepts must be 0 or more, got {count}.")
    if not wanted and not count:
        return splits, []
    train_names = row_concept_names(splits["train"])
    feature = splits["train"].features["concept"]
    present = set(train_names)
    # The dataset's concept order: a ClassLabel's, else first appearance.
    concepts = ([n for n in feature.names if n in present] if hasattr(feature, "names")
                else list(dict.fromkeys(train_names)))
    if count:
        if count > len(concepts) - 2:
            raise ValueError(f"--num_held_out_concepts {count}: the training split has {len(concepts)} concepts, "
                             "and at least two must stay to train on.")
        wanted = random.Random(seed).sample(concepts, count)
    unknown = [n for n in wanted if n not in concepts]
    if unknown:
        raise ValueError(f"--held_out_concepts names {unknown}, which are not concepts of the training split; its "
                         f"concepts are {concepts[:40]}{' ...' if len(concepts) > 40 else ''}.")
    held_out = [n for n in concepts if n in set(wanted)]
    if len(concepts) - len(held_out) < 2:
        raise ValueError(f"--held_out_concepts leaves {len(concepts) - len(held_out)} concept(s) to train on; keep "
                         "at least two.")
    missing = sorted(set(held_out) - set(row_concept_names(splits["test"])))
    if missing:
        raise ValueError(f"The held-out concept(s) {missing} have no test rows, so nothing would measure them: "
                         "hold out concepts that the test split holds.")
    keep = [i for i, name in enumerate(train_names) if name not in set(held_out)]
    logger.info("Holding out %d concept(s) (%s): %d of %d training rows removed", len(held_out), ", ".join(held_out),
                len(train_names) - len(keep), len(train_names))
    return datasets.DatasetDict({**splits, "train": splits["train"].select(keep),
                                 "probe_train": splits["train"]}), held_out


def process_rows(processor, rows: list[dict], modalities) -> dict:
    """The processor's model inputs for `modalities` of dataset rows."""
    return dict(processor(
        text=[row["text"] for row in rows] if "text" in modalities else None,
        images=[row["image"] for row in rows] if "image" in modalities else None,
        audio=[row["audio"] for row in rows] if "audio" in modalities else None,
        sampling_rate=processor.sampling_rate if "audio" in modalities else None,
    ))


class TeacherUpdateCallback(TrainerCallback):
    """After every optimizer step, the teacher follows the student (data2vec Eq. 1) with τ for that step."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        model.update_teacher(state.global_step)


class Data2VecTrainer(Trainer):
    """Trainer that also logs each modality's loss, the cross-modal term and the variances of targets and
    predictions (data2vec §6: a collapsing run shows falling variance first), averaged since the last log."""

    LOGGED = ("text_loss", "image_loss", "audio_loss", "cross_modal_loss", "target_variance", "prediction_variance")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sums, self._counts = defaultdict(float), defaultdict(int)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        for name in self.LOGGED:
            value = outputs.get(name)
            if value is not None:
                self._sums[name] += float(value.detach())
                self._counts[name] += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict, *args, **kwargs):
        if "loss" in logs:
            logs |= {name: round(self._sums[name] / self._counts[name], 4) for name in self._counts}
            self._sums.clear()
            self._counts.clear()
        super().log(logs, *args, **kwargs)


@torch.no_grad()
def encode_rows(model, processor, rows, modality: str, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled features (N, H) and shared-space embeddings (N, projection_dim) of one modality of `rows`."""
    base = getattr(model, "data2vec_multimodal", model)
    was_training = base.training
    base.eval()
    pooled, projected = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows.select(range(start, min(len(rows), start + batch_size)))
        inputs = {k: v.to(base.device) for k, v in process_rows(processor, batch, (modality,)).items()}
        output = base(**inputs)
        pooled.append(output.pooler_output.float().cpu())
        projected.append(torch.nn.functional.normalize(base.projections[modality](output.pooler_output), dim=-1).float().cpu())
    base.train(was_training)
    return torch.cat(pooled), torch.cat(projected)


def representation_report(model, processor, train, test, modalities=MODALITIES) -> dict:
    """Per modality: linear-probe and 1-NN concept accuracy of frozen pooled features (train → test); for each
    ordered pair of modalities: retrieval of the paired test row in the shared space."""
    features = {m: (encode_rows(model, processor, train, m), encode_rows(model, processor, test, m)) for m in modalities}
    report = {"probe": {}, "nearest_neighbour": {}, "retrieval": {}}
    for m, ((train_pooled, _), (test_pooled, _)) in features.items():
        report["probe"][m] = linear_probe_accuracy(train_pooled, train["concept"], test_pooled, test["concept"])
        report["nearest_neighbour"][m] = nearest_neighbour_accuracy(train_pooled, train["concept"], test_pooled,
                                                                    test["concept"])
    for a in modalities:
        for b in modalities:
            if a != b:
                report["retrieval"][f"{a}→{b}"] = retrieval_recall(features[a][1][1], features[b][1][1], test["concept"])
    report["embeddings"] = {m: features[m][1][1] for m in modalities}
    return report


def trained_modalities(ratios: dict[str, float], paired_fraction: float) -> tuple[str, ...]:
    """The modalities a run trains, in `MODALITIES` order: all of them with paired batches, else those with a
    positive `--modality_ratios` weight."""
    return MODALITIES if paired_fraction > 0 else tuple(m for m in MODALITIES if ratios.get(m, 0) > 0)


def probe_rows(data) -> datasets.Dataset:
    """The rows the probes are fitted on: every training row, those of held-out concepts included."""
    return data["probe_train"] if "probe_train" in data else data["train"]


def without_embeddings(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "embeddings"}


class Data2VecMultimodalRecipe(Recipe):
    name = "data2vec_multimodal"
    description = ("Pre-train data2vec-multimodal (student/EMA-teacher self-distillation over text, images and audio, "
                   "plus paired batches) and measure probes and cross-modal retrieval against baselines.")
    argument_classes = {"model": Data2VecModelArguments, "data": Data2VecDataArguments,
                        "training": Data2VecTrainingArguments}
    help_notes = ("Held-out split: the built-in sets have a `test` split; a user dataset's `test` split is used, or "
                  "one is carved from `train`.")

    def load_data(self, args):
        # The first hook: a contradiction is refused before any data is made.
        ignored = sorted(args.given & set(FRESH_MODEL_FLAGS)) if args.model.model_name_or_path else []
        if ignored:
            raise ValueError(f"--{', --'.join(ignored)} shape a fresh model, but --model_name_or_path "
                             f"{args.model.model_name_or_path} loads a saved one with its own architecture: leave "
                             "them out, or leave out --model_name_or_path to train a fresh model.")
        data = args.data
        refuse_inapplicable_data_flags(data.dataset_name, args.given)
        options = ({"num_train": data.num_train_images, "num_test": data.num_test_images,
                    "image_size": data.image_size}
                   if data.dataset_name == "scenes" else
                   {"image_size": data.image_size} if data.dataset_name == "twemoji" else
                   {"image_column": data.image_column, "text_column": data.text_column,
                    "audio_column": data.audio_column, "concept_column": data.concept_column})
        args.ratios = parse_ratios(data.modality_ratios)
        splits = load_trimodal_dataset(data.dataset_name, **options)
        # Before anything reads the training rows (the tokenizer, the batches, the no-pairs baseline).
        splits, args.held_out_concepts = hold_out_concepts(splits, data.held_out_concepts, data.num_held_out_concepts,
                                                           args.training.seed)
        # Waveforms as numpy arrays: as Python lists of floats, reading and checking them cost more than the model.
        return splits.with_format("numpy", columns=["audio"], output_all_columns=True)

    def build(self, args, data):
        if args.model.model_name_or_path:
            path = args.model.model_name_or_path
            return Data2VecMultimodalForPreTraining.from_pretrained(path), AutoProcessor.from_pretrained(path)
        checkpoint = resolve_checkpoint(args.training)
        if checkpoint:
            # BPE training breaks ties between equally frequent merges differently from one process to the next, so
            # a resumed run reads the tokenizer its checkpoint was trained with instead of training a new one.
            processor = Data2VecMultimodalProcessor.from_pretrained(checkpoint)
        else:
            processor = Data2VecMultimodalProcessor.for_texts(data["train"]["text"], image_size=args.data.image_size,
                                                              vocab_size=args.model.vocab_size)
        return Data2VecMultimodalForPreTraining(self.config(args, processor)), processor

    def config(self, args, processor):
        tokenizer, m = processor.tokenizer, args.model
        return data2vec_multimodal_config_for(
            m.model_size, vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, max_text_length=tokenizer.model_max_length,
            image_size=args.data.image_size, block_sharing=m.block_sharing, num_fusion_layers=m.num_fusion_layers,
            cross_modal_loss=m.cross_modal_loss, num_mask_copies=m.num_mask_copies,
            encode_unmasked_only=m.encode_unmasked_only,
            ema_anneal_end_step=max(1, args.training.max_steps // 2),
            **{name: getattr(m, name) for name in BLOCK_FIELDS if getattr(m, name) is not None},
        )

    def before_training(self, args, model, processor, data):
        args.modalities = trained_modalities(args.ratios, args.data.paired_fraction)
        if args.modalities != MODALITIES:
            logger.info("Unimodal batches of %s only and no paired batches: training and measuring %s alone",
                        "/".join(args.modalities), "/".join(args.modalities))
        args.random_init = None
        if args.data.random_init_baseline:
            logger.info("Measuring the network at its random initialisation (the probes' baseline)")
            args.random_init = representation_report(model, processor, probe_rows(data), data["test"], args.modalities)
        return {}

    def collator(self, args, processor, data):
        return ModalityBatchCollator(processor, args.ratios, args.data.paired_fraction, args.training.seed)

    def callbacks(self, args, model, processor, data, checkpoint):
        return [TeacherUpdateCallback()]

    def trainer(self, args, model, processor, data, checkpoint):
        return Data2VecTrainer(model=model, args=args.training, train_dataset=data["train"], processing_class=processor,
                               data_collator=self.collator(args, processor, data),
                               callbacks=self.callbacks(args, model, processor, data, checkpoint))

    def evaluate(self, args, trainer, model, processor, data):
        trained = representation_report(model, processor, probe_rows(data), data["test"], args.modalities)
        args.embeddings = trained.pop("embeddings")
        results = {
            "dataset": args.data.dataset_name,
            "train_rows": len(data["train"]), "test_rows": len(data["test"]),
            # `hf-mmdl analyse` reads these to score arithmetic towards unseen concepts apart from seen ones.
            "held_out_concepts": args.held_out_concepts,
            "held_out_train_rows": len(probe_rows(data)) - len(data["train"]),
            "block_sharing": model.config.block_sharing,
            "num_fusion_layers": model.config.num_fusion_layers,
            "hidden_size": model.config.hidden_size, "num_hidden_layers": model.config.num_hidden_layers,
            "modalities": list(args.modalities),
            "paired_fraction": args.data.paired_fraction,
            "trained": trained,
            "teacher": without_embeddings(representation_report(model.teacher_encoder(), processor, probe_rows(data),
                                                                data["test"], args.modalities)),
            "chance": retrieval_chance(len(data["test"]), data["test"]["concept"]),
            "history": [e for e in trainer.state.log_history if "loss" in e],
        }
        if args.random_init is not None:
            results["random_init"] = without_embeddings(args.random_init)
        if args.data.no_pairs_baseline and args.data.paired_fraction > 0:
            results["no_pairs"] = self.no_pairs_report(args, processor, data)
        return results

    def no_pairs_report(self, args, processor, data) -> dict:
        """The same model, data, seed and steps without paired batches: what the cross-modal term adds. The model
        is saved with the processor to `output_dir/no_pairs`, where `hf-mmdl analyse` finds it."""
        logger.info("Training the no-pairs baseline (same model and steps, unimodal batches only)")
        torch.manual_seed(args.training.seed)
        model = Data2VecMultimodalForPreTraining(self.config(args, processor))
        training = args.training.__class__(**{**args.training.to_dict(), "output_dir": str(
            Path(args.training.output_dir) / "no_pairs"), "save_strategy": "no"})
        trainer = Data2VecTrainer(model=model, args=training, train_dataset=data["train"],
                                  data_collator=ModalityBatchCollator(processor, args.ratios, 0.0, training.seed),
                                  callbacks=[TeacherUpdateCallback()])
        trainer.train()
        trainer.save_model(training.output_dir)  # writes on the main process only
        if trainer.is_world_process_zero():
            processor.save_pretrained(training.output_dir)
        report = representation_report(model, processor, probe_rows(data), data["test"], args.modalities)
        return without_embeddings(report)

    def figures(self, args, model, processor, data, results, out):
        title = f"data2vec-multimodal on {args.data.dataset_name}"
        concepts = data["test"]["concept"]
        names = data["test"].features["concept"].names if hasattr(data["test"].features["concept"], "names") else None
        figures = [embedding_scatter(args.embeddings, concepts, out / "embedding_space.png",
                                     title=f"{title}: held-out rows in the shared space (PCA)", concept_names=names)]
        curves = {name: [(e["step"], e[name]) for e in results["history"] if name in e]
                  for name in ("text_loss", "image_loss", "audio_loss", "cross_modal_loss")}
        curves = {name: points for name, points in curves.items() if points}
        if curves:
            figures.append(line_chart(curves, out / "losses.png", f"{title}: training losses", "step", "loss"))
        variances = {name: [(e["step"], e[name]) for e in results["history"] if name in e]
                     for name in ("target_variance", "prediction_variance")}
        if any(variances.values()):
            figures.append(line_chart(variances, out / "variances.png", f"{title}: variance across masked steps",
                                      "step", "variance"))
        return figures

    results_table = staticmethod(data2vec_results_table)


DATA2VEC_MULTIMODAL_RECIPE = Data2VecMultimodalRecipe()
main = DATA2VEC_MULTIMODAL_RECIPE.main

__all__ = ["DATA2VEC_MULTIMODAL_RECIPE", "Data2VecDataArguments", "Data2VecTrainer", "ModalityBatchCollator",
           "TeacherUpdateCallback", "encode_rows", "hold_out_concepts", "main", "parse_ratios", "representation_report",
           "trained_modalities"]
