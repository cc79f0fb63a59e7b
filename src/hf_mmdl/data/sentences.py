"""Offline English text for language-model pre-training and text classification, and a built-in classification
task whose answer lies in visually grounded words.

- `load_movie_review_polarity`: the 200 labelled movie-review sentences (100 negative, 100 positive; Pang & Lee's
  sentence polarity data) shipped in gensim's test data (`pip install gensim`, the `data` extra).
- `load_news_sentences`: the sentences of the 300 Australian news articles of the Lee corpus (Lee, Pincombe & Welsh
  2005), also in gensim's test data: real English prose for pre-training.
- `load_scene_first_colour`: two-shape scene descriptions ("a small red circle to the left of a large blue square",
  "a red circle and a blue square", ...) labelled with the colour of the shape named first (6 classes): the answer
  lies in a visually grounded word and in which of the two colour words comes first.
"""

import importlib.util
import random
import re
from pathlib import Path

import datasets

from .scenes import COLOURS, SHAPES, SIZES, SceneObject, relation

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def gensim_test_data(name: str) -> Path:
    """The path of a file in gensim's bundled test data, located without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        raise ImportError("The offline English text comes from gensim's test data: pip install gensim (the data "
                          "extra: pip install \".[data]\").")
    path = Path(spec.origin).parent / "test" / "test_data" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this gensim installation does not ship its test data.")
    return path


def load_movie_review_polarity(num_test: int = 60, seed: int = 0) -> datasets.DatasetDict:
    """The 200 movie-review sentences of gensim's `pang_lee_polarity.cor` as `train` / `test` splits (`text`, `label`
    0 = negative, 1 = positive), a seeded shuffle with `num_test` sentences held out, balanced by label."""
    rows = []
    for line in gensim_test_data("pang_lee_polarity.cor").read_text(encoding="latin-1").splitlines():
        tag, _, text = line.partition(" ")
        if text.strip():
            rows.append({"text": text.strip(), "label": int(tag == "__label__pos")})
    if not 2 <= num_test <= len(rows) - 2:
        raise ValueError(f"num_test={num_test} must leave at least 2 of the {len(rows)} sentences on each side.")
    by_label = [[r for r in rows if r["label"] == label] for label in (0, 1)]
    rng = random.Random(seed)
    for group in by_label:
        rng.shuffle(group)
    test = [r for group in by_label for r in group[:num_test // 2]]
    train = [r for group in by_label for r in group[num_test // 2:]]
    rng.shuffle(train)
    return datasets.DatasetDict({"train": datasets.Dataset.from_list(train), "test": datasets.Dataset.from_list(test)})


def load_news_sentences(min_words: int = 4) -> list[str]:
    """The sentences (of at least `min_words` words) of the 300 news articles in gensim's `lee_background.cor`."""
    text = gensim_test_data("lee_background.cor").read_text(encoding="latin-1")
    sentences = [s.strip() for line in text.splitlines() for s in SENTENCE_END.split(line)]
    return [s for s in sentences if len(s.split()) >= min_words]


def _two_shape_caption(rng: random.Random) -> tuple[str, str]:
    """A description of two shapes in one of the scenes' caption templates, and the first-named shape's colour."""
    a, b = (SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES)), box)
            for box in ((0, 0, 10, 10), (20, 0, 30, 10)))
    if rng.random() < 0.5:
        a, b = b, a
    template = rng.randrange(3)
    if template == 0:
        text = f"a {a.phrase} {relation(a, b)} a {b.phrase}"
    elif template == 1:
        text = f"a {a.colour} {a.shape} and a {b.colour} {b.shape}"
    else:
        text = f"two shapes a {a.phrase} and a {b.phrase}"
    return text, a.colour


def load_scene_first_colour(num_train: int = 400, num_test: int = 300, seed: int = 0) -> datasets.DatasetDict:
    """Two-shape scene descriptions in the scenes' caption wording (`text`) with `label` = the index in
    `scenes.COLOURS` of the colour of the shape named first (6 classes; chance 1/6); a seeded draw, train and test
    drawn apart. The second shape's colour is drawn independently, so a bag of colour words does not suffice."""
    names = list(COLOURS)
    splits = {}
    for split, count in (("train", num_train), ("test", num_test)):
        rng = random.Random(f"first-colour-{seed}-{split}")
        rows = [_two_shape_caption(rng) for _ in range(count)]
        splits[split] = datasets.Dataset.from_dict({"text": [text for text, _ in rows],
                                                    "label": [names.index(colour) for _, colour in rows]})
    return datasets.DatasetDict(splits)


__all__ = ["gensim_test_data", "load_movie_review_polarity", "load_news_sentences", "load_scene_first_colour"]
