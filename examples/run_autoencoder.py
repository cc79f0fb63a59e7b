"""Train an image autoencoder — the continuous VAE or the DALL-E dVAE — with the transformers Trainer.

On the built-in data (no download), e.g.:

    python examples/run_autoencoder.py --model_type vae --dataset_name mnist --output_dir outputs/vae-mnist
    python examples/run_autoencoder.py --model_type dvae --dataset_name twemoji --output_dir outputs/dvae-twemoji

Any datasets dataset with an image column works too (`--dataset_name user/name --image_column img`). Every
TrainingArguments flag applies (`--max_steps`, `--bf16`, `--resume_from_checkpoint last`, ...); see `--help`.
Held-out metrics against the mean-image baseline go to `results.json`, figures to PNG files in `--output_dir`.
"""

import logging

from hf_mmdl.training.autoencoder import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
