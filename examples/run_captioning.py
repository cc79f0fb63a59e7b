"""Train an M² meshed-memory captioner: cross-entropy (the paper's first stage), or with --scst self-critical training
from a cross-entropy checkpoint (the second stage); then score it on the test split next to two baselines.

Built-in scenes by default; any `datasets` image-caption dataset with --dataset_name (Hub name or local folder),
--image_column and --captions_column. Every TrainingArguments flag works (bf16, gradient accumulation, resume, ...).
The same command line is `hf-mmdl captioning ...`.

    python examples/run_captioning.py --output_dir outputs/m2 --max_steps 1200
    python examples/run_captioning.py --scst --model_name_or_path outputs/m2 --output_dir outputs/m2-scst --max_steps 400
    python examples/run_captioning.py --dataset_name twemoji --num_train_epochs 20
    python examples/run_captioning.py --help
"""

import sys

from hf_mmdl.cli import main

if __name__ == "__main__":
    # Through the `hf-mmdl captioning` command: its logging, and one line instead of a traceback for a user error.
    main(["captioning", *sys.argv[1:]])
