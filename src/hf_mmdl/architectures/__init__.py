"""The architecture registry: one declaration per architecture (`base.Architecture`), in the order the quickstart
runs them. A new architecture adds its own files and one entry here."""

from .autoencoders import DVAE, IMAGE_VAE
from .data2vec_multimodal import DATA2VEC_MULTIMODAL
from .base import Architecture, AutoEntry, CardText, Converter, Quickstart, resolve
from .glide import GLIDE
from .m2 import M2
from .multimodal_vae import MULTIMODAL_VAE
from .vokenizer import VOKEN_LM, VOKENIZER

ARCHITECTURES: dict[str, Architecture] = {architecture.name: architecture for architecture in (
    M2, IMAGE_VAE, DVAE, GLIDE, DATA2VEC_MULTIMODAL, MULTIMODAL_VAE, VOKENIZER, VOKEN_LM)}


def architecture_of(model_type: str) -> Architecture:
    """The declaration that owns `model_type` (a config's `model_type`); a clear error for any other."""
    for architecture in ARCHITECTURES.values():
        if model_type in architecture.model_types:
            return architecture
    known = sorted(t for a in ARCHITECTURES.values() for t in a.model_types)
    raise ValueError(f"model_type {model_type!r} is not an hf_mmdl architecture; known: {known}.")


__all__ = ["ARCHITECTURES", "Architecture", "AutoEntry", "CardText", "Converter", "Quickstart", "architecture_of", "resolve"]
