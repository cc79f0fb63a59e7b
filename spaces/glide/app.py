"""Hugging Face Space: the GLIDE text-to-image demo, with text-guided editing when an inpainting pipeline is given.

Runs the pipeline folder named on the command line or by the GLIDE_MODEL environment variable: a local folder
written by `hf-mmdl text-to-image` (default: hf_mmdl_quickstart/glide) or a Hub id. The inpainting pipeline is the
second argument or GLIDE_INPAINT_MODEL, else the folder's `inpaint/` subfolder when it has one.

    python spaces/glide/app.py [MODEL_PATH_OR_HUB_ID [INPAINT_PATH_OR_HUB_ID]]
"""

import os
import sys

from hf_mmdl.demos import launch
from hf_mmdl.demos.glide import build_demo

if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("GLIDE_MODEL", "hf_mmdl_quickstart/glide")
    inpaint = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("GLIDE_INPAINT_MODEL")
    launch(build_demo(model, inpaint))  # Gradio picks the server name and port; a Space sets them
