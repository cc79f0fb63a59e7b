"""Voken-classification pre-training of a BERT (Vokenization, Tan & Bansal, EMNLP 2020) with Trainer, its MLM-only
baseline (`--mlm_only`), and fine-tuning the result as transformers' `BertForSequenceClassification`.

The corpus is a `datasets` dataset with a text column and an aligned `vokens` column: one voken id per token of the
text as the given tokenizer splits it, special tokens included (−100 there), which is what vokenizing a corpus writes.
Rows longer than `--max_seq_length` tokens are cut into near-equal segments, each framed by [CLS] ... [SEP] again,
as the original cut long sentences. Each batch is masked by BERT's 80/10/10 rule with a generator seeded by the run's
seed and the batch's tokens, so a resumed run masks every batch as the uninterrupted run did.

Proof of learning, measured in the same run on held-out rows: masked-token and voken cross-entropy and accuracy of the
trained model, against the unigram distributions of the training tokens and vokens (the best a model without context
does) and the most frequent voken.
"""

import logging
import math
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
from transformers import AutoTokenizer, BertForSequenceClassification, Trainer, TrainingArguments
from transformers.trainer_utils import SchedulerType

from ..architectures.vokenizer import voken_lm_results_table
from ..data.user import load_user_dataset
from ..modeling import VokenBertConfig, VokenBertForPreTraining
from ..modeling.configuration_voken_bert import VOKEN_BERT_SIZES, VOKEN_LABEL_MODES
from ..processing import DataCollatorForVokenLanguageModeling
from .common import resolve_checkpoint
from .recipe import Recipe, RecipeTrainingArguments

logger = logging.getLogger(__name__)

# Fresh model sizes: the paper's two (positions for 512 tokens) and two for CPU runs and tests.
MODEL_SIZES = {
    "tiny": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37),
    "small": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512),
    **VOKEN_BERT_SIZES,
}
EVALUATION_SEED = 1234  # the held-out rows are masked the same way for the model and its baselines


@dataclass
class VokenLMModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "A saved voken-LM folder to continue pre-training; default: a fresh model of --model_size."})
    model_size: str = field(default="small", metadata={
        "help": f"Fresh model size: one of {tuple(MODEL_SIZES)} (the last two are the paper's)."})
    tokenizer_name: str | None = field(default=None, metadata={
        "help": "The tokenizer (folder or Hub id) whose tokens the vokens are aligned with: the vokenizer's (e.g. "
                "bert-base-uncased). Required for a fresh model; a saved model's folder holds its own."})
    voken_size: int | None = field(default=None, metadata={
        "help": "Number of vokens (images of the vokenizer's key set): the voken head's classes. Required for a "
                "fresh model."})
    mlm_ratio: float = field(default=1.0, metadata={"help": "λ in L = L_voken + λ·L_MLM."})
    voken_labels: str = field(default="all", metadata={
        "help": f"Tokens that carry a voken target: one of {VOKEN_LABEL_MODES} (all real tokens, masked ones, "
                "unmasked ones)."})
    mlm_only: bool = field(default=False, metadata={
        "help": "The baseline: the same model trained with MLM alone (the vokens column is not read)."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of real tokens selected for MLM."})


@dataclass
class VokenLMDataArguments:
    dataset_name: str | None = field(default=None, metadata={
        "help": "A datasets Hub name or local folder (save_to_disk or files) with a text and a vokens column."})
    text_column: str = field(default="text", metadata={"help": "The text column."})
    vokens_column: str = field(default="vokens", metadata={
        "help": "The column of per-token voken ids aligned with the tokenizer's tokens of the text (−100 at special "
                "tokens)."})
    max_seq_length: int = field(default=128, metadata={
        "help": "Longest segment in tokens, [CLS] and [SEP] included; longer rows are cut into near-equal segments."})


@dataclass
class VokenLMTrainingArguments(RecipeTrainingArguments):
    output_dir: str | None = field(default="outputs/voken-lm")
    per_device_train_batch_size: int = 32
    learning_rate: float = 2e-4
    adam_epsilon: float = 1e-6
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    warmup_steps: float = 0.05
    lr_scheduler_type: SchedulerType | str = "linear"
    max_steps: int = 500
    seed: int = 0


def near_equal_segments(length: int, longest: int) -> list[tuple[int, int]]:
    """(start, end) of ⌈length / longest⌉ consecutive segments of near-equal size covering `length` items."""
    count = max(1, math.ceil(length / longest))
    bounds = [round(i * length / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def tokenize_with_vokens(rows: datasets.Dataset, tokenizer, max_seq_length: int, voken_size: int | None,
                         with_vokens: bool = True) -> datasets.Dataset:
    """`input_ids` (and `vokens`) per segment of at most `max_seq_length` tokens, [CLS]/[SEP] framed, from rows with
    `text` (and `vokens`, aligned with the tokenizer's tokens of the text, special tokens included).

    Raises ValueError naming the row for empty text, vokens of another length than the tokens, a voken other than
    −100 at a special token, voken ids outside [0, `voken_size`) other than −100, and a tokenizer that does not frame
    text with [CLS] ... [SEP]."""
    if max_seq_length < 3:
        raise ValueError(f"--max_seq_length {max_seq_length} leaves no room for a token between [CLS] and [SEP].")
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None or tokenizer.mask_token_id is None:
        raise ValueError("The tokenizer has no [CLS], [SEP] or [MASK] token: voken pre-training needs a BERT "
                         "tokenizer.")
    specials = set(tokenizer.all_special_ids)

    def segment(batch, indices):
        out = {"input_ids": [], **({"vokens": []} if with_vokens else {})}
        for position, (index, text) in enumerate(zip(indices, batch["text"])):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"Row {index} has empty text: remove such rows first (e.g. "
                                 "dataset.filter(lambda row: row['text'].strip())).")
            ids = tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            if ids[0] != cls or ids[-1] != sep:
                raise ValueError("The tokenizer does not frame text as [CLS] ... [SEP]: use a BERT tokenizer.")
            if with_vokens:
                vokens = list(batch["vokens"][position])
                if len(vokens) != len(ids):
                    raise ValueError(f"Row {index}: {len(vokens)} vokens for {len(ids)} tokens of its text. The vokens "
                                     "must be aligned 1:1 with this tokenizer's tokens, special tokens included: pass "
                                     "--tokenizer_name of the vokenizer that wrote them, or revokenize.")
                for token, voken in zip(ids, vokens):
                    if voken != -100 and (voken < 0 or voken >= voken_size):
                        raise ValueError(f"Row {index} holds voken {voken}, outside [0, {voken_size}) (--voken_size); "
                                         "−100 marks tokens without a voken.")
                    if voken != -100 and token in specials:
                        raise ValueError(f"Row {index} gives a special token voken {voken}: the vokens are not aligned "
                                         "with the tokens (special tokens carry −100).")
            inner = len(ids) - 2
            for start, end in near_equal_segments(inner, max_seq_length - 2):
                out["input_ids"].append([cls, *ids[1 + start:1 + end], sep])
                if with_vokens:
                    out["vokens"].append([-100, *vokens[1 + start:1 + end], -100])
        return out

    columns = ["text", "vokens"] if with_vokens else ["text"]
    return rows.select_columns(columns).map(segment, batched=True, with_indices=True, remove_columns=columns,
                                            keep_in_memory=True, desc="Tokenizing and segmenting")


class BatchSeededCollator:
    """Calls `collator` under a torch generator seeded by `seed` and the batch's token ids: a batch is masked the
    same way whenever it is drawn again (a resumed run, the model and its baselines), without touching the global
    random state that dropout and the Trainer use."""

    def __init__(self, collator: DataCollatorForVokenLanguageModeling, seed: int):
        self.collator, self.seed = collator, seed

    def __call__(self, rows: list[dict]) -> dict:
        key = zlib.crc32(repr((self.seed, [list(row["input_ids"]) for row in rows])).encode())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key)
            return self.collator(rows)


@torch.no_grad()
def held_out_report(model, rows: datasets.Dataset, collator, batch_size: int = 64) -> dict:
    """Masked-token and voken cross-entropy (nats) and top-1 accuracy of `model` on `rows` (masked by `collator`)."""
    was_training = model.training
    model.eval()
    sums = Counter()
    for start in range(0, len(rows), batch_size):
        batch = collator([rows[i] for i in range(start, min(len(rows), start + batch_size))])
        batch = {k: v.to(model.device) for k, v in batch.items()}
        out = model(**batch)
        for name, logits, labels in (("mlm", out.logits, batch["labels"]),
                                     ("voken", out.voken_logits, batch.get("voken_labels"))):
            if labels is None:
                continue
            kept = labels != -100
            sums[f"{name}_nll"] += torch.nn.functional.cross_entropy(logits[kept].float(), labels[kept],
                                                                     reduction="sum").item()
            sums[f"{name}_correct"] += (logits[kept].argmax(-1) == labels[kept]).sum().item()
            sums[f"{name}_count"] += kept.sum().item()
    model.train(was_training)
    return {f"{name}_{measure}": sums[f"{name}_{key}"] / sums[f"{name}_count"]
            for name in ("mlm", "voken") if sums[f"{name}_count"]
            for measure, key in (("loss", "nll"), ("accuracy", "correct"))}


def unigram_report(train: datasets.Dataset, rows: datasets.Dataset, collator, vocab_size: int, voken_size: int | None,
                   batch_size: int = 64) -> dict:
    """The context-free baselines on the held-out positions the model is scored on: cross-entropy of the training
    unigram distribution (add-one smoothed) and accuracy of its most frequent class, for tokens and vokens."""
    counts = {"mlm": torch.ones(vocab_size)}
    ids = torch.tensor([i for row in train["input_ids"] for i in row])
    counts["mlm"] += torch.bincount(ids, minlength=vocab_size)[:vocab_size].float()
    if voken_size is not None and "vokens" in train.column_names:
        vokens = torch.tensor([v for row in train["vokens"] for v in row if v != -100], dtype=torch.long)
        counts["voken"] = torch.ones(voken_size) + torch.bincount(vokens, minlength=voken_size).float()
    report = {}
    for name, count in counts.items():
        log_p, best = (count / count.sum()).log(), int(count.argmax())
        key = "labels" if name == "mlm" else "voken_labels"
        labels = torch.cat([collator([rows[i] for i in range(s, min(len(rows), s + batch_size))])[key].flatten()
                            for s in range(0, len(rows), batch_size)])
        labels = labels[labels != -100]
        report[f"{name}_loss"] = -log_p[labels].mean().item()
        report[f"{name}_accuracy"] = (labels == best).float().mean().item()
    return report


class VokenLMRecipe(Recipe):
    name = "voken_lm"
    description = ("Pre-train a BERT with masked language modelling plus voken classification (Vokenization) on a "
                   "vokenized text corpus, or with MLM alone (--mlm_only), and score held-out masked tokens and vokens "
                   "against context-free baselines.")
    argument_classes = {"model": VokenLMModelArguments, "data": VokenLMDataArguments,
                        "training": VokenLMTrainingArguments}
    help_notes = ("The dataset needs a text column and (unless --mlm_only) a vokens column aligned with the "
                  "tokenizer's tokens. A dataset without a validation split gets 5% of train held out (seed 0). "
                  "Fine-tune the saved folder with hf_mmdl.training.voken_lm.finetune_sequence_classification or "
                  "transformers' BertForSequenceClassification.from_pretrained(folder). LoRA: "
                  "LoraConfig(target_modules=VOKEN_BERT_LORA_TARGET_MODULES) adapts every attention's query and value.")

    def load_data(self, args):
        data, model = args.data, args.model
        if not data.dataset_name:
            raise ValueError("--dataset_name is required: a datasets name or folder with a text column and a vokens "
                             "column (vokenize a corpus with the vokenizer first).")
        if model.voken_labels not in VOKEN_LABEL_MODES:
            raise ValueError(f"--voken_labels must be one of {VOKEN_LABEL_MODES}, got {model.voken_labels!r}.")
        columns = {data.text_column: "text"} | ({} if model.mlm_only else {data.vokens_column: "vokens"})
        user = load_user_dataset(data.dataset_name, columns, held_out=("validation",))
        args.origins = user.origins
        return user.data

    def build(self, args, data):
        m = args.model
        checkpoint = resolve_checkpoint(args.training)
        if m.model_name_or_path:
            model = VokenBertForPreTraining.from_pretrained(m.model_name_or_path)
            tokenizer = AutoTokenizer.from_pretrained(m.tokenizer_name or m.model_name_or_path)
            # Flags given for the continued run win over the folder's settings, and the saved config says so.
            for name in ("mlm_ratio", "voken_labels", "voken_size"):
                if name in args.given and getattr(m, name) != getattr(model.config, name):
                    if name == "voken_size":
                        raise ValueError(f"--voken_size {m.voken_size} but {m.model_name_or_path} classifies "
                                         f"{model.config.voken_size} vokens: vokenize with the same key set.")
                    setattr(model.config, name, getattr(m, name))
        else:
            if not m.tokenizer_name:
                raise ValueError("--tokenizer_name is required for a fresh model: the tokenizer whose tokens the "
                                 "vokens are aligned with (the vokenizer's, e.g. bert-base-uncased).")
            if m.model_size not in MODEL_SIZES:
                raise ValueError(f"--model_size must be one of {tuple(MODEL_SIZES)}, got {m.model_size!r}.")
            if m.voken_size is None:
                raise ValueError("--voken_size is required for a fresh model: the number of images in the vokenizer's "
                                 "key set (the voken head's classes).")
            tokenizer = AutoTokenizer.from_pretrained(checkpoint or m.tokenizer_name)
            positions = 512 if m.model_size in VOKEN_BERT_SIZES else args.data.max_seq_length
            model = VokenBertForPreTraining(VokenBertConfig(
                **MODEL_SIZES[m.model_size], vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                max_position_embeddings=positions, voken_size=m.voken_size, mlm_ratio=m.mlm_ratio,
                voken_labels=m.voken_labels))
        if args.data.max_seq_length > model.config.max_position_embeddings:
            raise ValueError(f"--max_seq_length {args.data.max_seq_length} exceeds the model's "
                             f"{model.config.max_position_embeddings} positions.")
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"The tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
                             f"{model.config.vocab_size}: pass the model's own tokenizer.")
        args.voken_size = None if m.mlm_only else model.config.voken_size
        args.voken_labels = model.config.voken_labels
        args.segments = {split: tokenize_with_vokens(rows, tokenizer, args.data.max_seq_length, args.voken_size,
                                                     with_vokens=not m.mlm_only) for split, rows in data.items()}
        return model, tokenizer

    def collator(self, args, processor, data, seed: int | None = None):
        return BatchSeededCollator(DataCollatorForVokenLanguageModeling(
            processor, mlm_probability=args.model.mlm_probability, voken_labels=args.voken_labels,
            voken_size=args.voken_size), args.training.seed if seed is None else seed)

    def train_dataset(self, args, processor, data):
        return args.segments["train"]

    def trainer(self, args, model, processor, data, checkpoint):
        return Trainer(model=model, args=args.training, train_dataset=self.train_dataset(args, processor, data),
                       data_collator=self.collator(args, processor, data), processing_class=processor)

    def evaluate(self, args, trainer, model, processor, data):
        collator = self.collator(args, processor, data, seed=EVALUATION_SEED)
        train, validation = args.segments["train"], args.segments["validation"]
        return {
            "dataset": args.data.dataset_name, "splits": args.origins,
            "train_rows": len(data["train"]), "train_segments": len(train), "validation_segments": len(validation),
            "mlm_only": args.model.mlm_only, "voken_labels": args.voken_labels,
            "mlm_ratio": model.config.mlm_ratio,
            "validation": held_out_report(model, validation, collator),
            "unigram_baseline": unigram_report(train, validation, collator, model.config.vocab_size,
                                               None if args.model.mlm_only else model.config.voken_size),
            "history": [e for e in trainer.state.log_history if "loss" in e],
        }

    results_table = staticmethod(voken_lm_results_table)


VOKEN_LM_RECIPE = VokenLMRecipe()
main = VOKEN_LM_RECIPE.main


def finetune_sequence_classification(pretrained: str | Path, data: datasets.DatasetDict, output_dir: str | Path,
                                     text_column: str = "text", label_column: str = "label",
                                     max_seq_length: int = 126, **training_arguments) -> dict:
    """Fine-tune a pre-trained voken-LM (or MLM-only) folder as transformers' `BertForSequenceClassification` (the
    voken head is dropped; the pooler and classifier start fresh) on `data["train"]`, score accuracy on
    `data["test"]`, and save the classifier (a plain BERT folder) and tokenizer to `output_dir`.

    `training_arguments` override the defaults of the original GLUE runs (3 epochs, lr 1e-4, batch 32, 10 % warm-up,
    linear decay; texts cut to `max_seq_length` = 126 tokens). Labels are integer class ids 0..K−1 (K = their
    maximum + 1). Returns {"accuracy", "num_labels", "test_rows"}.

    Raises ValueError for a folder of another architecture than (voken) BERT, missing columns, empty text, or labels
    that are not integers ≥ 0."""
    import json

    import numpy as np

    config_file = Path(pretrained) / "config.json"
    model_type = json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
    if model_type not in ("voken_bert", "bert"):
        raise ValueError(f"{pretrained} holds a {model_type!r} model, not a (voken) BERT: pass a folder saved by the "
                         "voken-LM recipe or a BERT folder.")
    for split in ("train", "test"):
        if split not in data:
            raise ValueError(f"The data has no {split!r} split (splits: {sorted(data)}).")
        missing = {text_column, label_column} - set(data[split].column_names)
        if missing:
            raise ValueError(f"The {split} split lacks the column(s) {sorted(missing)}; it has "
                             f"{data[split].column_names}.")
        labels = data[split][label_column]
        if not all(isinstance(y, (int, np.integer)) and not isinstance(y, bool) and y >= 0 for y in labels):
            raise ValueError(f"{label_column} must hold integer class ids ≥ 0 (the {split} split does not).")
        if any(not isinstance(t, str) or not t.strip() for t in data[split][text_column]):
            raise ValueError(f"The {split} split has empty texts in {text_column!r}: remove those rows first.")
    num_labels = max(max(data["train"][label_column]), max(data["test"][label_column])) + 1
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    model = BertForSequenceClassification.from_pretrained(pretrained, num_labels=num_labels)

    def encode(batch):
        encoding = tokenizer(batch[text_column], truncation=True, max_length=max_seq_length)
        return encoding | {"labels": batch[label_column]}

    encoded = {split: data[split].map(encode, batched=True, remove_columns=data[split].column_names,
                                      keep_in_memory=True) for split in ("train", "test")}
    settings = dict(output_dir=str(output_dir), num_train_epochs=3, learning_rate=1e-4, per_device_train_batch_size=32,
                    per_device_eval_batch_size=64, warmup_steps=0.1, lr_scheduler_type="linear", weight_decay=0.01,
                    report_to="none", save_strategy="no", logging_steps=50) | training_arguments
    trainer = Trainer(model=model, args=TrainingArguments(**settings), train_dataset=encoded["train"],
                      processing_class=tokenizer)
    trainer.train()
    predictions = trainer.predict(encoded["test"])
    accuracy = float((predictions.predictions.argmax(-1) == predictions.label_ids).mean())
    trainer.save_model(str(output_dir))
    return {"accuracy": accuracy, "num_labels": num_labels, "test_rows": len(encoded["test"])}


__all__ = ["BatchSeededCollator", "MODEL_SIZES", "VOKEN_LM_RECIPE", "VokenLMDataArguments", "VokenLMModelArguments",
           "VokenLMRecipe", "VokenLMTrainingArguments", "finetune_sequence_classification", "held_out_report", "main",
           "near_equal_segments", "tokenize_with_vokens", "unigram_report", "voken_lm_results_table"]
