"""One Trainer-based run shared by every architecture's training recipe.

A run is always the same: arguments → data → model and processor → Trainer → training → evaluation of the model and
of its baselines on held-out data → saved `from_pretrained` folder, `results.json` and figures. What differs between
architectures is small and lives in a [`Recipe`] subclass as hooks; `Recipe.run` is the loop, `Recipe.main` its
command line (`examples/run_*.py`, `hf-mmdl train NAME`), `Recipe.run_from_dict` the quickstart's entry.
"""

import argparse
import dataclasses
import json
import logging
import math
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import datasets
from transformers import (
    HfArgumentParser, PreTrainedModel, ProcessorMixin, Trainer, TrainerCallback, TrainingArguments, set_seed,
)
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
    """One run's parsed argument dataclasses by role (`args.model`, `args.data`, `args.training`, ...), `args.given`
    (the names of the flags the user set, so a recipe never overrides one silently), and what an earlier hook leaves
    for a later one of the same run (e.g. the held-out pixels `load_data` processed once)."""


# A step interval means nothing unless its strategy is "steps": a given interval turns its strategy on.
STEP_INTERVALS = {"save_steps": "save_strategy", "eval_steps": "eval_strategy"}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after every help line, and the description's own line breaks kept (it lists the recipe's options)."""


def _field_default(field: dataclasses.Field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the flags `argv` sets explicitly (argparse fills every other one from its default): the
    same parse with every default suppressed."""
    defaults = {action: action.default for action in parser._actions}
    try:
        for action in parser._actions:
            action.default = argparse.SUPPRESS
        namespace, _ = parser.parse_known_args(argv)
    finally:
        for action, default in defaults.items():
            action.default = default
    return set(vars(namespace))


def changed_fields(arguments) -> set[str]:
    """For argument dataclasses built in Python (no command line to read): the fields that differ from their
    defaults, the closest reading of "given" there is."""
    return {field.name for given in arguments for field in dataclasses.fields(given)
            if field.init and getattr(given, field.name) != _field_default(field)}


def run_steps(training_args: TrainingArguments, num_rows: int) -> int:
    """Optimizer steps of a run over `num_rows` training rows, as Trainer counts them (max_steps wins)."""
    if training_args.max_steps > 0:
        return training_args.max_steps
    batches = math.ceil(num_rows / (training_args.train_batch_size * max(1, training_args.world_size)))
    return max(1, math.ceil(batches / training_args.gradient_accumulation_steps) * math.ceil(training_args.num_train_epochs))


class WarmupCheck(TrainerCallback):
    """Warns when a run is too short to leave its learning-rate warm-up: its rate never reaches the peak."""

    def on_train_begin(self, args, state, control, **kwargs):
        warmup = args.get_warmup_steps(state.max_steps)
        if state.max_steps <= warmup:
            logger.warning(
                "This run of %d steps ends inside its %d-step learning-rate warm-up, so the rate never reaches its "
                "peak: give --warmup_steps as a fraction of the run (e.g. 0.1) or fewer steps, or train longer.",
                state.max_steps, warmup,
            )


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
    def run(self, *arguments, given: set[str] | None = None) -> dict:
        """Train, evaluate and save with the parsed argument dataclasses (in `argument_classes` order); returns the
        results that `results.json` holds. `given` names the flags the user set (the command line passes them; from
        Python, the fields that differ from their defaults count as given).

        Raises ValueError for flags that contradict each other (e.g. `--save_steps` with `--save_strategy epoch`)."""
        args = self.bind(arguments, given)
        refuse_fsdp_on_cpu(args.training)
        set_seed(args.training.seed)  # before the model is built, so its initial weights follow the seed too
        data = self.load_data(args)
        model, processor = self.build(args, data)
        results = self.before_training(args, model, processor, data)
        checkpoint = resolve_checkpoint(args.training)
        trainer = self.trainer(args, model, processor, data, checkpoint)
        trainer.add_callback(WarmupCheck())
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

    def bind(self, arguments, given: set[str] | None = None) -> RunArguments:
        if len(arguments) != len(self.argument_classes):
            raise TypeError(f"{self.name} takes {len(self.argument_classes)} argument objects "
                            f"({', '.join(c.__name__ for c in self.argument_classes.values())}), got {len(arguments)}.")
        for (role, expected), argument in zip(self.argument_classes.items(), arguments):
            if not isinstance(argument, expected):
                raise TypeError(f"The {role} arguments must be a {expected.__name__}, got {type(argument).__name__}.")
        args = RunArguments(**dict(zip(self.argument_classes, arguments)))
        args.given = changed_fields(arguments) if given is None else set(given)
        args.training = with_step_intervals(args.training, args.given)
        return args

    # The command line.
    help_notes: str = ""  # what `--help` says about the recipe beyond its options (e.g. how held-out splits are made)

    def own_options(self) -> list[dataclasses.Field]:
        """The recipe's own flags: every field but those transformers' TrainingArguments already has."""
        inherited = {f.name for f in dataclasses.fields(TrainingArguments)}
        return [f for cls in self.argument_classes.values() for f in dataclasses.fields(cls)
                if f.init and f.name not in inherited]

    def changed_training_defaults(self) -> dict:
        """TrainingArguments flags whose default this recipe changes, with the recipe's value."""
        base = {f.name: _field_default(f) for f in dataclasses.fields(TrainingArguments)}
        training = self.argument_classes["training"]
        return {f.name: _field_default(f) for f in dataclasses.fields(training)
                if f.name in base and f.name != "output_dir" and _field_default(f) != base[f.name]}

    def help_description(self) -> str:
        own = "\n".join(f"  --{f.name} (default: {_field_default(f)})" for f in self.own_options())
        changed = ", ".join(f"--{name} {value}" for name, value in self.changed_training_defaults().items())
        return (f"{self.description}\n\nThis recipe's own options (each explained below):\n{own}\n\nTrainingArguments defaults this recipe changes: {changed}. "
                "A given --save_steps / --eval_steps turns --save_strategy / --eval_strategy to 'steps'; a given "
                "--num_train_epochs without --max_steps sets the run's length."
                + (f"\n\n{self.help_notes}" if self.help_notes else ""))

    def parser(self) -> HfArgumentParser:
        parser = HfArgumentParser(tuple(self.argument_classes.values()), formatter_class=_HelpFormatter)
        parser.prog = f"hf-mmdl train {self.name}"
        parser.usage = "%(prog)s [this recipe's options] [any transformers TrainingArguments flag]"
        parser.description = self.help_description()
        # A field a recipe re-declares to change its default loses TrainingArguments' help text: give it back, so
        # the help line shows the flag's meaning next to the recipe's real default.
        base_help = {f.name: f.metadata.get("help") for f in dataclasses.fields(TrainingArguments)}
        for action in parser._actions:
            if not action.help and base_help.get(action.dest):
                action.help = base_help[action.dest]
        return parser

    def parse(self, argv: list[str]) -> tuple[tuple, set[str]]:
        """The argument dataclasses of a command line, and the flags it sets explicitly."""
        parser = self.parser()
        return tuple(parser.parse_args_into_dataclasses(args=argv)), given_flags(parser, argv)

    def run_from_dict(self, settings: dict) -> dict:
        """Run with the recipe's defaults overridden by `settings` (flag names as keys); unknown keys raise."""
        return self.run(*self.parser().parse_dict(settings), given=set(settings))

    def main(self, argv: list[str] | None = None) -> dict:
        """The recipe's command line: every `TrainingArguments` flag plus the recipe's own; prints the results
        table and where the run was saved."""
        arguments, given = self.parse(sys.argv[1:] if argv is None else argv)
        results = self.run(*arguments, given=given)
        print(self.results_table(results))
        print(f"Saved to {self.bind(arguments, given).training.output_dir}")
        return results


def with_step_intervals(training_args: TrainingArguments, given: set[str]) -> TrainingArguments:
    """Flags that would be silently ignored next to a recipe's default take effect. A given `--save_steps` /
    `--eval_steps` switches its strategy to "steps" when the strategy was not given (recipes default to "no" or
    "epoch", which ignore the interval); with a strategy given as something else the two contradict each other,
    which raises ValueError. A given `--num_train_epochs` without `--max_steps` sets the run's length, though the
    recipe's default is a number of steps (which Trainer would let win)."""
    changes = {}
    if "num_train_epochs" in given and "max_steps" not in given and training_args.max_steps > 0:
        logger.info("--num_train_epochs given: the run lasts %g epochs, not the recipe's default %d steps.",
                    training_args.num_train_epochs, training_args.max_steps)
        changes["max_steps"] = -1
    for interval, strategy in STEP_INTERVALS.items():
        if interval not in given or getattr(training_args, strategy) == "steps":
            continue
        if strategy in given:
            raise ValueError(f"--{interval} {getattr(training_args, interval):g} has no effect with --{strategy} "
                             f"{getattr(training_args, strategy).value}: pass --{strategy} steps, or leave out --{interval}.")
        logger.info("--%s given: %s is 'steps'.", interval, strategy)
        changes[strategy] = "steps"
    return dataclasses.replace(training_args, **changes) if changes else training_args


def training_summary(trainer: Trainer, train_result, model) -> dict:
    """What every results.json reports about the training itself."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "num_parameters": model.num_parameters(),
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        # Optimizer steps per second of wall time (of this process's part of the run, when it resumed).
        "train_steps_per_second": train_result.metrics.get("train_steps_per_second"),
        "train_epochs": trainer.state.epoch,
        "train_loss_first": losses[0] if losses else None,
        "train_loss_last": losses[-1] if losses else None,
    }


__all__ = ["Recipe", "RecipeTrainingArguments", "RunArguments", "WarmupCheck", "given_flags", "run_steps", "training_summary",
           "with_step_intervals"]
