"""Train a multimodal VAE on images and captions with the transformers Trainer, and score cross-modal latent
arithmetic and generation against chance and an image-only VAE trained in the same run.

On the built-in attribute scenes (no download), e.g.:

    python examples/run_multimodal_vae.py --output_dir outputs/multimodal_vae
    python examples/run_multimodal_vae.py --fusion moe --max_steps 1500 --output_dir outputs/multimodal_vae_moe

Every TrainingArguments flag applies (`--max_steps`, `--bf16`, `--resume_from_checkpoint last`, ...); see `--help`.
The scores go to `results.json`; the arithmetic grid (source | multimodal result | image-only result | target) to
`arithmetic.png`, images drawn from captions to `cross_modal.png`.
"""

import sys

from hf_mmdl.cli import main

if __name__ == "__main__":
    # Through `hf-mmdl train multimodal_vae`: its logging, and one line instead of a traceback for a user error.
    main(["train", "multimodal_vae", *sys.argv[1:]])
