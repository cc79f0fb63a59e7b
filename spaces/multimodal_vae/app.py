"""Hugging Face Space: the multimodal VAE demo (image ± attribute, caption → image, image → caption).

Runs the checkpoint named on the command line or by the MULTIMODAL_VAE_MODEL environment variable: a local folder
written by `hf-mmdl quickstart` (default: hf_mmdl_quickstart/multimodal_vae) or a Hub id.

    python spaces/multimodal_vae/app.py [MODEL_PATH_OR_HUB_ID]
"""

import os
import sys

from hf_mmdl.demos import launch
from hf_mmdl.demos.multimodal_vae import build_demo

if __name__ == "__main__":
    default = "hf_mmdl_quickstart/multimodal_vae"
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MULTIMODAL_VAE_MODEL", default)
    launch(build_demo(model))  # Gradio picks the server name and port; a Space sets them
