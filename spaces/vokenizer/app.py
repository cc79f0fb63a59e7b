"""Hugging Face Space: the Vokenizer demo (type a sentence, see each token's retrieved image and score).

Runs the Vokenizer folder named on the command line or by the VOKENIZER_MODEL environment variable: a folder written
by `Vokenizer.save_pretrained` (model, processor and key store; default: hf_mmdl_quickstart/vokenizer) or a Hub id.

    python spaces/vokenizer/app.py [VOKENIZER_FOLDER_OR_HUB_ID]
"""

import os
import sys

from hf_mmdl.demos import launch
from hf_mmdl.demos.vokenizer import build_demo

if __name__ == "__main__":
    default = "hf_mmdl_quickstart/vokenizer"
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("VOKENIZER_MODEL", default)
    launch(build_demo(model))  # Gradio picks the server name and port; a Space sets them
