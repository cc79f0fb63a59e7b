"""One Trainer-based run shared by every architecture's training recipe.

A run is always the same: arguments → data → model and processor → Trainer → training → evaluation of the model and
of its baselines on held-out data → saved `from_pretrained` folder, `results.json` and figures. What differs between
architectures is small and lives in a [`Recipe`] subclass as hooks; `Recipe.run` is the loop, `Recipe.main` its
command line (`examples/run_*.py`, `hf-mmdl train NAME`), `Recipe.run_from_dict` the quickstart's entry.
"""

import json
import logging
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import datasets
from transformers import HfArgumentParser, PreTrainedModel, ProcessorMixin, Trainer, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from .common import refuse_fsdp_on_cpu, resolve_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class RecipeTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults every recipe shares: no experiment tracker, the processor's collator
    sees whole dataset rows, data loading in the main process (CPU-friendly), logs every 50 steps, no evaluation
    or checkpoint unless asked for, and at most one checkpoint kept. Each recipe subclasses it with its own
    optimisation defaults."""

    logging_steps: float = 50
    eval_strategy: IntervalStrategy | str = "no"
    save_strategy: SaveStrategy | str = "no"
    save_total_limit: int | None = 1
    report_to: None | str | list[str] = "none"
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0


class RunArguments(SimpleNamespace):
    """One run's parsed argument dataclasses by role (`args.model`, `args.data`, `args.training`, ...), and what an
    earlier hook leaves for a later one of the same run (e.g. the held-out pixels `load_data` processed once)."""


class Recipe(ABC):
    """An architecture's training recipe: the hooks the generic run calls, in this order.

    Subclasses set `name` (the `hf-mmdl train` name), `description` (first line of `--help`), `argument_classes`
    (role → dataclass; the role `training` is a `TrainingArguments` subclass holding the recipe's defaults) and
    implement the abstract hooks; the others have defaults.
    """

    name: str
    description: str
    argument_classes: dict[str, type]

    # Hooks, in the order `run` calls them.
    @abstractmethod
    def load_data(self, args: RunArguments) -> datasets.DatasetDict:
        """The run's splits: `train` plus the held-out split(s) `evaluate` scores on."""

    @abstractmethod
    def build(self, args: RunArguments, data) -> tuple[PreTrainedModel, ProcessorMixin]:
        """The model to train and its processor: fresh from a size preset, or loaded from `model_name_or_path`."""

    def before_training(self, args: RunArguments, model, processor, data) -> dict:
        """Measurements of the starting model that the results report (e.g. the checkpoint before a fine-tune)."""
        return {}

    def train_dataset(self, args: RunArguments, processor, data):
        return data["train"]

    @abstractmethod
    def collator(self, args: RunArguments, processor, data):
        """Turns a list of `train_dataset` rows into model inputs (through the processor)."""

    def callbacks(self, args: RunArguments, model, processor, data, checkpoint: str | None) -> list:
        return []

    def trainer(self, args: RunArguments, model, processor, data, checkpoint: str | None) -> Trainer:
        return Trainer(
            model=model, args=args.training, train_dataset=self.train_dataset(args, processor, data),
            data_collator=self.collator(args, processor, data),
            callbacks=self.callbacks(args, model, processor, data, checkpoint),
        )

    @abstractmethod
    def evaluate(self, args: RunArguments, trainer: Trainer, model, processor, data) -> dict:
        """Held-out metrics of the trained model next to its baselines, measured here, in the same run."""

    def save(self, args: RunArguments, trainer: Trainer, model, processor, out: Path) -> None:
        trainer.save_model(str(out))
        processor.save_pretrained(str(out))

    def result_folders(self, args: RunArguments, out: Path) -> list[Path]:
        """The saved folders that get the run's `results.json` (and so its numbers on their model cards)."""
        return [out]

    def figures(self, args: RunArguments, model, processor, data, results: dict, out: Path) -> list[Path]:
        return []

    @staticmethod
    @abstractmethod
    def results_table(results: dict) -> str:
        """Markdown: the measured metrics next to their baselines."""

    # The generic run.
    def run(self, *arguments) -> dict:
        """Train, evaluate and save with the parsed argument dataclasses (in `argument_classes` order); returns the
        results that `results.json` holds."""
        args = self.bind(arguments)
        refuse_fsdp_on_cpu(args.training)
        set_seed(args.training.seed)  # before the model is built, so its initial weights follow the seed too
        data = self.load_data(args)
        model, processor = self.build(args, data)
        results = self.before_training(args, model, processor, data)
        checkpoint = resolve_checkpoint(args.training)
        trainer = self.trainer(args, model, processor, data, checkpoint)
        logger.info("%s with %.2fM parameters, learning rate %.2e", type(model).__name__, model.num_parameters() / 1e6,
                    trainer.args.learning_rate)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        results |= training_summary(trainer, train_result, model)
        results |= self.evaluate(args, trainer, model, processor, data)
        if trainer.is_world_process_zero():
            out = Path(args.training.output_dir)
            self.save(args, trainer, model, processor, out)
            for folder in self.result_folders(args, out):
                (folder / "results.json").write_text(json.dumps(results, indent=2))
            figures = self.figures(args, model, processor, data, results, out)
            logger.info("Saved the model, processor, results.json%s to %s",
                        "".join(f", {f.name}" for f in figures), out)
        return results

    def bind(self, arguments) -> RunArguments:
        if len(arguments) != len(self.argument_classes):
            raise TypeError(f"{self.name} takes {len(self.argument_classes)} argument objects "
                            f"({', '.join(c.__name__ for c in self.argument_classes.values())}), got {len(arguments)}.")
        for (role, expected), given in zip(self.argument_classes.items(), arguments):
            if not isinstance(given, expected):
                raise TypeError(f"The {role} arguments must be a {expected.__name__}, got {type(given).__name__}.")
        return RunArguments(**dict(zip(self.argument_classes, arguments)))

    def parser(self) -> HfArgumentParser:
        parser = HfArgumentParser(tuple(self.argument_classes.values()))
        parser.prog, parser.description = f"hf-mmdl train {self.name}", self.description
        return parser

    def run_from_dict(self, settings: dict) -> dict:
        """Run with the recipe's defaults overridden by `settings` (flag names as keys); unknown keys raise."""
        return self.run(*self.parser().parse_dict(settings))

    def main(self, argv: list[str] | None = None) -> dict:
        """The recipe's command line: every `TrainingArguments` flag plus the recipe's own; prints the results
        table and where the run was saved."""
        arguments = self.parser().parse_args_into_dataclasses(args=sys.argv[1:] if argv is None else argv)
        results = self.run(*arguments)
        print(self.results_table(results))
        print(f"Saved to {self.bind(arguments).training.output_dir}")
        return results


def training_summary(trainer: Trainer, train_result, model) -> dict:
    """What every results.json reports about the training itself."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "num_parameters": model.num_parameters(),
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "train_epochs": trainer.state.epoch,
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
    }


__all__ = ["Recipe", "RecipeTrainingArguments", "RunArguments", "training_summary"]
