"""Train an image autoencoder — the continuous VAE or the DALL-E dVAE — with the transformers Trainer.

On the built-in data (no download), e.g.:

    python examples/run_autoencoder.py --model_type vae --dataset_name mnist --output_dir outputs/vae-mnist
    python examples/run_autoencoder.py --model_type dvae --dataset_name twemoji --output_dir outputs/dvae-twemoji

Any datasets dataset with an image column works too (`--dataset_name user/name --image_column img`). Every
TrainingArguments flag applies (`--max_steps`, `--bf16`, `--resume_from_checkpoint last`, ...); see `--help`.
Held-out metrics against the mean-image baseline go to `results.json`, figures to PNG files in `--output_dir`.
"""

import sys

from hf_mmdl.cli import main

if __name__ == "__main__":
    # Through the `hf-mmdl autoencoder` command: its logging, and one line instead of a traceback for a user error.
    main(["autoencoder", *sys.argv[1:]])
