"""Precomputed detector region features in the original M² HDF5 layout: one dataset `<image_id>_features` of shape
(regions, 2048) per image (bottom-up-attention features, as the original repository's `detections.hdf5`).
Needs h5py (`pip install h5py`, or the `regions` extra: `pip install ".[regions]"` in a clone of the repository)."""

from pathlib import Path

import numpy as np


class RegionFeatureFile:
    """Read-only access to an HDF5 file of region features by image id; the file is opened on first use, so the
    object can be handed to DataLoader workers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"No region feature file at {self.path}.")
        self._file = None

    def _open(self):
        if self._file is None:
            try:
                import h5py
            except ImportError as error:
                raise ImportError("Reading HDF5 region features needs h5py: pip install h5py.") from error
            self._file = h5py.File(self.path, "r")
        return self._file

    def __getitem__(self, image_id) -> np.ndarray:
        key = f"{image_id}_features"
        handle = self._open()
        if key not in handle:
            raise KeyError(f"{self.path} has no dataset {key!r}: is {image_id} an image of this feature file?")
        return np.asarray(handle[key], dtype=np.float32)

    def __contains__(self, image_id) -> bool:
        return f"{image_id}_features" in self._open()


class RegionCaptionCollator:
    """`Trainer` collator for rows with `image_id` and `caption`: looks the image's regions up in a
    `RegionFeatureFile` and runs the M² processor (padding/truncating to its max_regions, with a mask)."""

    def __init__(self, processor, regions: RegionFeatureFile):
        self.processor = processor
        self.regions = regions

    def __call__(self, rows: list[dict]) -> dict:
        features = [self.regions[r["image_id"]] for r in rows]
        return dict(self.processor(region_features=features, text_target=[r["caption"] for r in rows], truncation=True))
