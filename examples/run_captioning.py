"""Train an M² meshed-memory captioner with cross-entropy (the paper's first stage) and score it.

Built-in scenes by default; any `datasets` image-caption dataset with --dataset_name (Hub name or local folder),
--image_column and --captions_column. Every TrainingArguments flag works (bf16, gradient accumulation, resume, ...).

    python examples/run_captioning.py --output_dir outputs/m2 --max_steps 1500
    python examples/run_captioning.py --dataset_name twemoji --num_train_epochs 20
    python examples/run_captioning.py --help
"""

import logging

from transformers import HfArgumentParser

from hf_mmdl.training.captioning import (
    CaptioningDataArguments,
    CaptioningModelArguments,
    CaptioningTrainingArguments,
    results_table,
    run_captioning,
)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = HfArgumentParser((CaptioningModelArguments, CaptioningDataArguments, CaptioningTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    results = run_captioning(model_args, data_args, training_args)
    print(results_table(results))
    print(f"Saved to {training_args.output_dir}")


if __name__ == "__main__":
    main()
