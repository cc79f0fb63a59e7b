"""Modality invariance and cross-modal embedding arithmetic of a trained data2vec-multimodal model, next to the same
measures for the network at its random initialisation and for a model trained without paired batches.

`analyse_invariance(folder)` embeds the held-out rows of a tri-modal dataset (the built-in scenes by default, or a
user's image/text/audio/concept dataset) with each model, in two spaces:

- `shared`: the unit-length projections that retrieval and zero-shot classification use
  (`get_{text,image,audio}_features`);
- `pooled`: the mean-pooled output of the blocks before the projection (one width for every modality).

For each pair of modalities it measures the matched-minus-mismatched mean cosine (pairs of the same row, and pairs
of the same concept), linear CKA (with the CKA of row-shuffled pairs as the no-correspondence level) and the gap
between the modality centroids; for each of the six ordered pairs retrieval R@1 / R@5 / concept R@1; and for each
ordered (gallery, offset) pair the analogy accuracy of emb_gallery(a) − emb_offset(a) + emb_offset(b) retrieving
concept b (`hf_mmdl.representations`), next to offset(b) alone as the query; when the training run held concepts
out (`--held_out_concepts`, listed in the folder's results.json), the analogies are also reported for targets b
among those never-trained concepts and among the seen ones. It writes `invariance.json`, `invariance.md` (the
tables) and one 2-D embedding figure per model. The command is `hf-mmdl analyse FOLDER`.
"""

import json
import logging
from itertools import combinations, permutations
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import AutoProcessor
from transformers.utils import logging as transformers_logging

from .data.trimodal import concepts_as_class_labels, load_trimodal_dataset
from .modeling import Data2VecMultimodalModel
from .modeling.configuration_data2vec_multimodal import MODALITIES
from .representations import (
    analogy_accuracy, centroid_gap, cosine_gap, linear_cka, retrieval_chance, retrieval_recall,
)
from .training.data2vec_multimodal import encode_rows
from .visualization import embedding_scatter

logger = logging.getLogger(__name__)

MODEL_TYPE = "data2vec_multimodal"
REQUIRED_COLUMNS = ("image", "text", "audio", "concept")
SPACES = ("shared", "pooled")
# The scenes' test split leaves out every drawing of its training split; 1,200 is the recipe's largest built-in run.
SCENES_TRAIN_ROWS = 1200
SMALLEST_SCENE = 24


def _config_of(folder: str | Path, role: str) -> dict:
    """The folder's config.json after checking that it is a data2vec-multimodal folder; FileNotFoundError /
    ValueError otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"The {role} folder {folder} does not exist: pass a folder saved by a "
                                "data2vec-multimodal run (e.g. hf_mmdl_quickstart/data2vec_multimodal).")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"The {role} folder {folder} has no config.json: pass a folder saved with "
                                "save_pretrained by a data2vec-multimodal run.")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_file} is not valid JSON ({error}).") from None
    if config.get("model_type") != MODEL_TYPE:
        raise ValueError(f"The {role} folder {folder} holds a {config.get('model_type')!r} model; the invariance "
                         f"analysis measures {MODEL_TYPE!r} models (shared embeddings of text, images and audio).")
    return config


def load_model(folder: str | Path, role: str = "model") -> tuple[Data2VecMultimodalModel, object]:
    """The encoder (a pre-training folder's student) in eval mode and the processor of a data2vec-multimodal
    folder. Raises FileNotFoundError for a missing folder or config, ValueError for another architecture's folder
    or one whose weights lack part of the encoder (it would be measured with random weights there)."""
    _config_of(folder, role)
    # A pre-training folder also holds the teacher and heads, which the encoder leaves out: transformers' report of
    # those keys is noise here, while a missing encoder key is an error below.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = Data2VecMultimodalModel.from_pretrained(folder, output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    if info["missing_keys"]:
        raise ValueError(f"The {role} folder {folder} lacks encoder weights {sorted(info['missing_keys'])[:5]}...; "
                         "save the whole model (save_pretrained) and analyse that folder.")
    return model.eval(), AutoProcessor.from_pretrained(folder)


def _with_concept_ids(rows: datasets.Dataset) -> tuple[datasets.Dataset, list[str] | None]:
    """Rows whose `concept` holds integer ids, and the concept names when known (`concepts_as_class_labels`: a
    ClassLabel keeps its names, string concepts become ids in sorted order, integers stay). Other types raise
    ValueError."""
    rows = concepts_as_class_labels({"rows": rows})["rows"]
    feature = rows.features["concept"]
    return rows, list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def held_out_rows(dataset="scenes", split: str = "test", image_size: int = 32, max_rows: int | None = None,
                  **options) -> tuple[datasets.Dataset, list[str] | None]:
    """The rows to analyse and their concept names (None when the concepts are bare ids).

    `dataset`: `"scenes"` / `"twemoji"` (built in; scenes take `num_train` (default 1,200: the test split avoids
    every drawing of that many training rows) and `num_test` (300)), a `datasets` name or saved folder (through
    `hf_mmdl.data.load_trimodal_dataset`, with `image_column`, `text_column`, `audio_column`, `concept_column`
    options), or a loaded `datasets.Dataset` / `DatasetDict` with `image`, `text`, `audio` (16 kHz waveforms) and
    `concept` columns. `split` picks the held-out split of a DatasetDict, `max_rows` keeps its first rows.
    Raises ValueError for missing columns or split, fewer than two rows or a single concept."""
    if isinstance(dataset, str):
        if dataset == "scenes":
            options = {"num_train": SCENES_TRAIN_ROWS, "num_test": 300, "image_size": max(SMALLEST_SCENE, image_size),
                       **options}
        elif dataset == "twemoji":
            options = {"image_size": image_size, **options}
        else:
            options = {"concept_column": "concept", **options}
        dataset = load_trimodal_dataset(dataset, **options)
    elif options:
        raise TypeError(f"Options {sorted(options)} apply to a dataset loaded by name, not to a loaded dataset.")
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"The dataset has no {split!r} split (splits: {sorted(dataset)}); pass split=.")
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"dataset must be a name, a datasets.Dataset or a DatasetDict, got {type(dataset).__name__}.")
    missing = [column for column in REQUIRED_COLUMNS if column not in dataset.column_names]
    if missing:
        raise ValueError(f"The dataset lacks the column(s) {missing} (it has {dataset.column_names}); the analysis "
                         "needs image, text, audio (16 kHz) and concept columns of the same rows (name yours with "
                         "--image_column / --text_column / --audio_column / --concept_column).")
    if max_rows is not None:
        if max_rows < 2:
            raise ValueError(f"max_rows={max_rows}: the analysis compares rows, keep at least 2.")
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    rows, names = _with_concept_ids(dataset)
    if len(rows) < 2 or len(set(rows["concept"])) < 2:
        raise ValueError(f"The analysis needs held-out rows of at least two concepts; got {len(rows)} rows of "
                         f"{len(set(rows['concept']))} concept(s).")
    # Waveforms as numpy arrays: as Python lists of floats, reading them costs more than the model (as in training).
    return rows.with_format("numpy", columns=["audio"], output_all_columns=True), names


def embed(model, processor, rows: datasets.Dataset) -> dict[str, dict[str, torch.Tensor]]:
    """{space: {modality: (N, width)}}: the shared-space projections and the mean-pooled block outputs of every
    modality of `rows`."""
    spaces = {space: {} for space in SPACES}
    for modality in MODALITIES:
        pooled, projected = encode_rows(model, processor, rows, modality)
        spaces["shared"][modality], spaces["pooled"][modality] = projected, pooled
    return spaces


def invariance_report(embeddings: dict[str, torch.Tensor], labels, seed: int = 0, held_out=()) -> dict:
    """Every invariance and arithmetic measure of one model's embeddings in one space.

    embeddings: {modality: (N, D)} with row i of each describing the same example; labels: (N,) concept ids;
    held_out: the ids of concepts the model never trained on.
    Returns `pairs` (per unordered pair "a–b": `cosine_rows`, `cosine_concepts` and `cosine_concepts_centred`
    (`cosine_gap` without labels, with labels, and with labels after removing each modality's mean), `cka`,
    `cka_shuffled` (CKA after permuting b's rows with `seed`: the no-correspondence level) and `centroid`
    (`centroid_gap`)), `retrieval` (per ordered pair "a→b": `retrieval_recall`) and `analogy` (per ordered pair
    "gallery−offset": `analogy_accuracy`); with `held_out`, also `analogy_by_target`: {"held_out": ..., "seen": ...},
    the same analogies with the targets b limited to the held-out concepts or to the others (a group without
    concepts among `labels` is left out)."""
    labels = np.asarray(labels)
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    report = {"pairs": {}, "retrieval": {}, "analogy": {}}
    present = set(labels.tolist())
    groups = {"held_out": present & set(held_out), "seen": present - set(held_out)} if held_out else {}
    groups = {group: concepts for group, concepts in groups.items() if concepts}
    if groups:
        report["analogy_by_target"] = {group: {} for group in groups}
    for a, b in combinations(embeddings, 2):
        x, y = embeddings[a], embeddings[b]
        report["pairs"][f"{a}–{b}"] = {
            "cosine_rows": cosine_gap(x, y), "cosine_concepts": cosine_gap(x, y, labels),
            "cosine_concepts_centred": cosine_gap(x, y, labels, centred=True),
            "cka": linear_cka(x, y), "cka_shuffled": linear_cka(x, y[permutation]), "centroid": centroid_gap(x, y),
        }
    for a, b in permutations(embeddings, 2):
        report["retrieval"][f"{a}→{b}"] = retrieval_recall(embeddings[a], embeddings[b], labels)
        report["analogy"][f"{a}−{b}"] = analogy_accuracy(embeddings[a], embeddings[b], labels, seed=seed)
        for group, concepts in groups.items():
            report["analogy_by_target"][group][f"{a}−{b}"] = analogy_accuracy(
                embeddings[a], embeddings[b], labels, seed=seed, target_concepts=concepts)
    return report


def held_out_of(model_folder: Path) -> list[str]:
    """The concepts the run that saved `model_folder` held out of training (its results.json's
    `held_out_concepts`), or [] when it held none out or left no results.json."""
    results_file = model_folder / "results.json"
    if not results_file.is_file():
        return []
    try:
        names = json.loads(results_file.read_text()).get("held_out_concepts") or []
    except json.JSONDecodeError as error:
        raise ValueError(f"{results_file} is not valid JSON ({error}).") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{results_file}: held_out_concepts must be a list of concept names, got {names!r}.")
    return names


def concept_ids(wanted: list[str], labels: np.ndarray, names: list[str] | None, where: str) -> list[int]:
    """The ids of concept names among the analysed rows' concepts (bare ids are named by their number, "3");
    ValueError naming those that the rows do not hold."""
    present = sorted(set(labels.tolist()))
    name_of = {c: names[c] if names else str(c) for c in present}
    ids = {name: c for c, name in name_of.items()}
    unknown = [n for n in wanted if n not in ids]
    if unknown:
        raise ValueError(f"The held-out concept(s) {unknown} ({where}) are not among the analysed rows' concepts "
                         f"{list(ids)[:40]}: analyse a dataset that holds them, or pass held_out_concepts=[] "
                         "(--held_out_concepts '') to analyse without the split.")
    return sorted(ids[n] for n in wanted)


def analyse_invariance(model_folder: str | Path, dataset="scenes", no_pairs: str | Path | None = None,
                       output_dir: str | Path | None = None, random_init: bool = True, seed: int = 0,
                       split: str = "test", max_rows: int | None = None, held_out_concepts: list[str] | None = None,
                       **dataset_options) -> dict:
    """Measure how far a trained data2vec-multimodal model's modalities agree, against its baselines.

    model_folder: a data2vec-multimodal folder (`AutoModel` or pre-training; the student is measured). `dataset`,
    `split`, `max_rows` and `dataset_options`: the held-out rows (`held_out_rows`; built-in scenes drawn at the
    model's image size by default). Baselines: with `random_init`, the same configuration freshly initialised with
    `seed`; `no_pairs`, a folder of the same model trained without paired batches — by default
    `model_folder/no_pairs` when it holds a model (what the training recipe's `--no_pairs_baseline` saves).
    `held_out_concepts`: names of concepts the model never trained on, whose analogies are reported apart from the
    seen concepts' (`analogy_by_target`); by default those that `model_folder/results.json` lists (the recipe's
    `--held_out_concepts`), `[]` for no split. Writes `invariance.json` (everything below), `invariance.md` (the
    tables) and `embedding_space[_BASELINE].png` (PCA of the shared-space embeddings: colour = concept, marker =
    modality) to `output_dir` (default
    `model_folder/invariance`) and returns the JSON's content: `models` ({name: {space: `invariance_report`}}),
    `chance` (retrieval and analogy chance, and with held-out concepts `analogy_by_target`), `rows`, `concepts`,
    `held_out_concepts` and the folders measured.

    Raises FileNotFoundError for a missing folder, ValueError for a folder of another architecture, a dataset
    without image/text/audio/concept columns, or held-out concepts that the analysed rows do not hold."""
    model_folder = Path(model_folder)
    model, processor = load_model(model_folder)
    if isinstance(held_out_concepts, str):
        raise TypeError(f"held_out_concepts={held_out_concepts!r}: pass a list of concept names, e.g. "
                        "['red circle', 'blue square'].")
    from_folder = held_out_concepts is None
    if from_folder:
        held_out_concepts = held_out_of(model_folder)
    if no_pairs is None and (model_folder / "no_pairs" / "config.json").is_file():
        no_pairs = model_folder / "no_pairs"
        logger.info("Comparing with the no-pairs model saved by the training run: %s", no_pairs)
    models = {"trained": (model, processor)}
    if random_init:
        with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
            torch.manual_seed(seed)
            models["random_init"] = (Data2VecMultimodalModel(model.config).eval(), processor)
    if no_pairs is not None:
        models["no_pairs"] = load_model(no_pairs, role="no-pairs model")
    rows, names = held_out_rows(dataset, split=split, image_size=model.config.vision_config.image_size,
                                max_rows=max_rows, **dataset_options)
    labels = np.asarray(rows["concept"])
    held_out = concept_ids(list(held_out_concepts), labels, names,
                           f"listed in {model_folder / 'results.json'}" if from_folder else "given")
    logger.info("Embedding %d held-out rows with %s", len(rows), ", ".join(models))
    embeddings = {name: embed(m, p, rows) for name, (m, p) in models.items()}
    reports = {name: {space: invariance_report(spaces[space], labels, seed, held_out) for space in SPACES}
               for name, spaces in embeddings.items()}
    shared = reports["trained"]["shared"]
    results = {
        "model_folder": str(model_folder), "no_pairs_folder": None if no_pairs is None else str(no_pairs),
        "dataset": dataset if isinstance(dataset, str) else "given", "split": split, "rows": len(rows),
        "concepts": len(set(labels.tolist())), "seed": seed, "held_out_concepts": list(held_out_concepts),
        "models": reports,
        # Analogy chance depends only on the labels and the seed's choice of target rows, the same for every model.
        "chance": {"retrieval": retrieval_chance(len(rows), labels),
                   "analogy": {key: value["chance"] for key, value in shared["analogy"].items()}},
    }
    if "analogy_by_target" in shared:
        results["chance"]["analogy_by_target"] = {
            group: {key: value["chance"] for key, value in measures.items()}
            for group, measures in shared["analogy_by_target"].items()}
    out = Path(output_dir) if output_dir is not None else model_folder / "invariance"
    out.mkdir(parents=True, exist_ok=True)
    (out / "invariance.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (out / "invariance.md").write_text(invariance_table(results) + "\n")
    concept_names = names if names and len(names) <= 40 else None
    for name, spaces in embeddings.items():
        title = {"trained": "trained", "random_init": "random init", "no_pairs": "no pairs"}[name]
        embedding_scatter(spaces["shared"], labels.tolist(),
                          out / ("embedding_space.png" if name == "trained" else f"embedding_space_{name}.png"),
                          title=f"{model_folder.name} ({title}): {len(rows)} held-out rows, shared space (PCA)",
                          concept_names=concept_names)
    logger.info("Wrote invariance.json, invariance.md and the embedding figures to %s", out)
    return results


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _number(value: float) -> str:
    return f"{value:.3f}"


# (row label, how to read the value from one pair's measures, format): the rows of the invariance table.
PAIR_MEASURES = (
    ("cosine gap, same row", lambda m: m["cosine_rows"]["gap"], _number),
    ("cosine gap, same concept", lambda m: m["cosine_concepts"]["gap"], _number),
    ("cosine gap, same concept, centred", lambda m: m["cosine_concepts_centred"]["gap"], _number),
    ("linear CKA", lambda m: m["cka"], _number),
    ("centroid distance / spread", lambda m: m["centroid"]["relative"], _number),
)


def invariance_table(results: dict) -> str:
    """Markdown tables of `analyse_invariance` results: per space the pair measures, then retrieval and analogy in
    the shared space (with held-out concepts, analogy towards held-out and towards seen targets too); a column per
    measured model and one for chance (or the no-correspondence level)."""
    names = list(results["models"])
    titles = {"trained": "trained", "random_init": "random init", "no_pairs": "no pairs"}
    header = "| " + " | ".join(titles.get(n, n) for n in names)
    rule = "|---" * (len(names) + 2) + "|"
    lines = []
    for space in SPACES:
        lines += [f"**{space} space** ({results['rows']} held-out rows, {results['concepts']} concepts)", "",
                  f"| pair: measure {header} | chance |", rule]
        for pair in results["models"]["trained"][space]["pairs"]:
            for label, read, fmt in PAIR_MEASURES:
                values = [fmt(read(results["models"][n][space]["pairs"][pair])) for n in names]
                reference = {"cosine gap, same row": "0", "cosine gap, same concept": "0",
                             "cosine gap, same concept, centred": "0",
                             "linear CKA": _number(results["models"]["trained"][space]["pairs"][pair]["cka_shuffled"])
                             + " (shuffled)", "centroid distance / spread": ""}[label]
                lines.append(f"| {pair}: {label} | " + " | ".join(values) + f" | {reference} |")
        lines.append("")
    shared = {n: results["models"][n]["shared"] for n in names}
    lines += ["**retrieval** of the paired row (shared space): R@1 / R@5 / concept R@1", "",
              f"| direction {header} | chance |", rule]
    chance = results["chance"]["retrieval"]
    for direction in shared["trained"]["retrieval"]:
        cells = [" / ".join(_percent(shared[n]["retrieval"][direction][k]) for k in ("R@1", "R@5", "concept R@1"))
                 for n in names]
        lines.append(f"| {direction} | " + " | ".join(cells) + " | "
                     + " / ".join(_percent(chance[k]) for k in ("R@1", "R@5", "concept R@1")) + " |")
    by_target = results["chance"].get("analogy_by_target", {})
    groups = [(None, "**analogy**: gallery(a) − offset(a) + offset(b) nearest to a gallery row of concept b (shared "
                     "space)", results["chance"]["analogy"])]
    if "held_out" in by_target:
        groups.append(("held_out", f"**analogy towards held-out concepts**: targets b among the "
                       f"{len(results['held_out_concepts'])} concepts never trained on "
                       f"({', '.join(results['held_out_concepts'])})", by_target["held_out"]))
    if "seen" in by_target:
        groups.append(("seen", "**analogy towards seen concepts**: targets b among the concepts trained on",
                       by_target["seen"]))
    for group, title, chance in groups:
        measures = {n: shared[n]["analogy"] if group is None else shared[n]["analogy_by_target"][group] for n in names}
        # Within a group: how often the trained model's query lands on any of the group's concepts (and its chance).
        landing = "" if group is None else " trained, lands on any of them (chance) |"
        lines += ["", f"{title}; the trained model with offset(b) alone as the query (same targets, the query's own "
                  "row left out)" + ("" if group is None else ", and how often its arithmetic lands on any concept of "
                                     "the group"), "",
                  f"| gallery − offset {header} | chance | trained, offset(b) alone |{landing}",
                  rule + "---|" + ("---|" if landing else "")]
        for key in chance:
            trained = measures["trained"][key]
            lines.append(f"| {key} | " + " | ".join(_percent(measures[n][key]["accuracy"]) for n in names)
                         + f" | {_percent(chance[key])} | {_percent(trained['offset_alone'])} |"
                         + ("" if group is None else
                            f" {_percent(trained['in_targets'])} ({_percent(trained['in_targets_chance'])}) |"))
    return "\n".join(lines)


__all__ = ["analyse_invariance", "embed", "held_out_rows", "invariance_report", "invariance_table", "load_model"]
