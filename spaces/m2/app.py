"""Hugging Face Space: the M² captioner demo.

Runs the checkpoint named by the M2_MODEL environment variable: a local folder written by `hf-mmdl quickstart`
(default: hf_mmdl_quickstart/m2) or a Hub id.

    python spaces/m2/app.py [MODEL_PATH_OR_HUB_ID]
"""

import os
import sys

from hf_mmdl.demos import launch
from hf_mmdl.demos.m2 import build_demo

if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("M2_MODEL", "hf_mmdl_quickstart/m2")
    launch(build_demo(model))  # Gradio picks the server name and port; a Space sets them
