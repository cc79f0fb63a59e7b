"""Hugging Face Space: the data2vec-multimodal demo (nearest neighbours across text, images and audio).

Runs the checkpoint named on the command line or by the DATA2VEC_MODEL environment variable: a local folder written
by `hf-mmdl quickstart` (default: hf_mmdl_quickstart/data2vec_multimodal) or a Hub id.

    python spaces/data2vec_multimodal/app.py [MODEL_PATH_OR_HUB_ID]
"""

import os
import sys

from hf_mmdl.demos import launch
from hf_mmdl.demos.data2vec_multimodal import build_demo

if __name__ == "__main__":
    default = "hf_mmdl_quickstart/data2vec_multimodal"
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DATA2VEC_MODEL", default)
    launch(build_demo(model))  # Gradio picks the server name and port; a Space sets them
