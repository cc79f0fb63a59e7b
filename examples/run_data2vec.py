"""Pre-train data2vec-multimodal on text, images and audio with the transformers Trainer.

On the built-in data (scenes with captions and espeak-ng spoken captions; no download), e.g.:

    python examples/run_data2vec.py --output_dir outputs/data2vec-multimodal
    python examples/run_data2vec.py --block_sharing shared --num_mask_copies 4 --output_dir outputs/d2v-shared

Any datasets dataset with image, text, audio and concept columns works too (`--dataset_name user/name
--audio_column speech`). Every TrainingArguments flag applies (`--max_steps`, `--bf16`, `--resume_from_checkpoint
last`, ...); see `--help`. Probe, 1-NN and retrieval figures against their baselines go to `results.json`, the
shared embedding space and the training curves to PNG files in `--output_dir`.
"""

import sys

from hf_mmdl.cli import main

if __name__ == "__main__":
    # Through the `hf-mmdl data2vec` command: its logging, and one line instead of a traceback for a user error.
    main(["data2vec", *sys.argv[1:]])
