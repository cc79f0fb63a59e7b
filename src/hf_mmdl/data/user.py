"""The one loader for a user's own data (a `datasets` Hub name, a local `imagefolder`, or a folder saved with
`save_to_disk`), shared by every recipe: split names read the same way everywhere, missing held-out splits carved
from train the same way, and nothing ever written into the user's folder.

`datasets` writes cache files next to a `save_to_disk` folder's Arrow files for every `map`, `filter` or
`train_test_split` that is not kept in memory; the captioning script once did so and broke the folder for the next
loader. Every transformation here keeps its result in memory.
"""

import logging
import math
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np

logger = logging.getLogger(__name__)

HELD_OUT_FRACTION = 0.05  # of train, for each missing held-out split
HELD_OUT_SEED = 0
SPLIT_NAMES = ("train", "validation", "test")
# Other names datasets give their validation split; read as "validation", never ignored.
VALIDATION_ALIASES = ("val", "valid", "dev")


def held_out_help(splits: tuple[str, ...] = ("validation", "test")) -> str:
    """What `--help` says about the held-out `splits` a recipe needs."""
    names = " or ".join("validation (or val/valid/dev)" if split == "validation" else split for split in splits)
    return (f"A dataset without a {names} split gets it carved from train: {HELD_OUT_FRACTION:.0%} of train each, seed "
            f"{HELD_OUT_SEED}, and the run logs it.")


HELD_OUT_HELP = held_out_help()


class UserData(NamedTuple):
    data: datasets.DatasetDict
    origins: dict[str, str]  # split name → where its rows came from, as results.json reports it


def _is_saved_to_disk(name: str) -> bool:
    folder = Path(name)
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def read_dataset(name: str) -> datasets.DatasetDict:
    """A `save_to_disk` folder through `load_from_disk`, anything else through `load_dataset` (whose caches go to
    the datasets cache, not to the data's folder); a single Dataset becomes the `train` split."""
    data = datasets.load_from_disk(name, keep_in_memory=True) if _is_saved_to_disk(name) else datasets.load_dataset(name)
    return datasets.DatasetDict({"train": data}) if isinstance(data, datasets.Dataset) else data


def named_splits(data: datasets.DatasetDict, name: str) -> tuple[datasets.DatasetDict, dict[str, str]]:
    """`train` / `validation` / `test`, with val/valid/dev read as validation. Raises ValueError for a dataset
    without train, with two validation splits, or with a split of another name (it would be silently unused)."""
    splits, origins = {}, {}
    for split, rows in data.items():
        target = "validation" if split in VALIDATION_ALIASES else split
        if target not in SPLIT_NAMES:
            raise ValueError(f"Dataset {name!r} has a split {split!r} (splits: {sorted(data)}): name its splits train, "
                             f"validation ({'/'.join(VALIDATION_ALIASES)} also read as validation) and test.")
        if target in splits:
            raise ValueError(f"Dataset {name!r} has two validation splits ({sorted(s for s in data if s in ('validation',) + VALIDATION_ALIASES)}): keep one.")
        splits[target], origins[target] = rows, f"the dataset's {split!r} split"
    if "train" not in splits:
        raise ValueError(f"Dataset {name!r} has no 'train' split (splits: {sorted(data)}).")
    return datasets.DatasetDict(splits), origins


def carve_held_out(data: datasets.DatasetDict, origins: dict[str, str], held_out: tuple[str, ...]) -> None:
    """Cut each missing split of `held_out` from train ({HELD_OUT_FRACTION:.0%}, seed 0), in memory, and log it."""
    for split in held_out:
        if split in data:
            continue
        if len(data["train"]) < 3:
            raise ValueError(f"Only {len(data['train'])} training rows: too few to hold out a {split} split; add a "
                             f"{split} split to the dataset.")
        # Not `train_test_split`: on a dataset read from disk it writes index files next to the data.
        order = np.random.default_rng(HELD_OUT_SEED).permutation(len(data["train"]))
        cut = math.ceil(HELD_OUT_FRACTION * len(order))
        data[split] = data["train"].select(np.sort(order[:cut]), keep_in_memory=True)
        data["train"] = data["train"].select(np.sort(order[cut:]), keep_in_memory=True)
        origins[split] = f"{HELD_OUT_FRACTION:.0%} of train (seed {HELD_OUT_SEED}), the dataset having no {split} split"
        logger.warning("No %s split: %d rows carved from train (%s), %d left for training.", split, len(data[split]),
                       origins[split], len(data["train"]))


def load_user_dataset(name: str, columns: dict[str, str], held_out: tuple[str, ...] = ("validation", "test")) -> UserData:
    """A user's dataset with its `columns` (source name → name the recipe reads) only, split into train and the
    `held_out` splits. Raises ValueError naming a missing column and the flag that names it
    (`columns` maps e.g. {"picture": "image"}; the flag is `--image_column` for target "image")."""
    data, origins = named_splits(read_dataset(name), name)
    missing = sorted(set(columns) - set(data["train"].column_names))
    if missing:
        flags = " / ".join(f"--{target}_column" for source, target in columns.items() if source in missing)
        raise ValueError(f"Dataset {name!r} lacks the column(s) {missing} (it has {data['train'].column_names}); "
                         f"pass {flags} naming its columns.")
    data = datasets.DatasetDict({
        split: rows.select_columns(list(columns)).rename_columns({s: t for s, t in columns.items() if s != t})
        for split, rows in data.items() if split == "train" or split in held_out
    })
    carve_held_out(data, origins, held_out)
    return UserData(data, {split: origins[split] for split in data})
