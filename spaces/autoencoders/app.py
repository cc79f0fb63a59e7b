"""Hugging Face Space: the image autoencoder demo (image VAE or DALL-E dVAE, whichever the checkpoint holds).

Runs the checkpoint named on the command line or by the AUTOENCODER_MODEL environment variable: a local folder
written by `hf-mmdl quickstart` (default: hf_mmdl_quickstart/vae) or a Hub id.

    python spaces/autoencoders/app.py [MODEL_PATH_OR_HUB_ID]
"""

import os
import sys

from hf_mmdl.demos import launch
from hf_mmdl.demos.autoencoders import build_demo

if __name__ == "__main__":
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("AUTOENCODER_MODEL", "hf_mmdl_quickstart/vae")
    launch(build_demo(model))  # Gradio picks the server name and port; a Space sets them
