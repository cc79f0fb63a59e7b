"""Saving and loading rules that every architecture's configuration and model share.

- A configuration refuses a folder of another architecture (`model_type` mismatch) with a `ValueError`, where
  transformers only logs a warning and the model then loads with random weights.
- A model refuses to `save_pretrained` onto an existing file (transformers only logs an error and writes nothing),
  and a damaged weights file (e.g. a truncated download) is named in the error.
"""

import os
from pathlib import Path

from safetensors import SafetensorError, safe_open


class ModelTypeCheckedConfig:
    """Mixin for a `PretrainedConfig` subclass: `from_pretrained` (and so every model's `from_pretrained`) raises a
    `ValueError` when the folder's `config.json` is of another `model_type`. A composite folder that holds this
    configuration under `base_config_key` or as a nested dict of the same `model_type` still loads, as in
    transformers."""

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        found = config_dict.get("model_type")
        nested = [v for v in config_dict.values() if isinstance(v, dict) and v.get("model_type") == cls.model_type]
        if cls.base_config_key and cls.base_config_key in config_dict:
            found = config_dict[cls.base_config_key].get("model_type", found)
        elif found != cls.model_type and nested:
            found = cls.model_type
        if found is not None and found != cls.model_type:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a `{found}` model, not a `{cls.model_type}` one "
                f"({cls.__name__}). Load it with the classes of its own architecture (e.g. transformers' AutoModel), "
                f"or pass a folder saved from a `{cls.model_type}` model."
            )
        return config_dict, kwargs


def _damaged_safetensors(folder: Path) -> list[str]:
    damaged = []
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(path, framework="pt") as weights:
                weights.keys()
        except (SafetensorError, OSError) as error:
            damaged.append(f"{path} ({error})")
    return damaged


class CheckedSaveLoadMixin:
    """Mixin for an architecture's `PreTrainedModel` base class (listed before it): clear errors for saving onto a
    file and for loading damaged weights files."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as error:
            folder = Path(os.fspath(pretrained_model_name_or_path))
            subfolder = kwargs.get("subfolder") or ""
            damaged = _damaged_safetensors(folder / subfolder) if (folder / subfolder).is_dir() else []
            where = "; ".join(damaged) if damaged else f"a weights file of {pretrained_model_name_or_path}"
            raise OSError(
                f"Cannot read the weights of {cls.__name__}: {where} is damaged or incomplete (e.g. an interrupted "
                "download or copy). Save or download it again."
            ) from error

    def save_pretrained(self, save_directory, *args, **kwargs):
        if os.path.isfile(save_directory):
            raise FileExistsError(
                f"Cannot save {type(self).__name__} to {save_directory}: it is an existing file. Pass a folder path "
                "(it is created if missing)."
            )
        return super().save_pretrained(save_directory, *args, **kwargs)


__all__ = ["CheckedSaveLoadMixin", "ModelTypeCheckedConfig"]
