"""Train a small GLIDE on the built-in one-object scenes ("a red circle in the top left") with the hybrid loss and 20 %
caption dropout, then sample fixed prompts at guidance 0, 1 and 3 and score them with the scene analyser.

    python examples/run_text_to_image.py --output_dir outputs/glide-scenes --max_steps 3000
    python examples/run_text_to_image.py --help

Every TrainingArguments flag works. Saves a `GlidePipeline` folder, `results.json` and `samples_by_guidance.png`.
"""

import sys

from hf_mmdl.cli import main

if __name__ == "__main__":
    # Through the `hf-mmdl text-to-image` command: its logging, and one line instead of a traceback for a user error.
    main(["text-to-image", *sys.argv[1:]])
