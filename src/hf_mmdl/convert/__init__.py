"""Converters from the original authors' checkpoint formats to `from_pretrained` folders (`hf-mmdl convert ...`)."""
