"""Measures of learned representations on frozen features: linear-probe and nearest-neighbour accuracy,
cross-modal retrieval (the small-data evaluation of self-supervised encoders used for data2vec-multimodal), and
modality invariance: how closely two modalities' embeddings of the same rows and concepts agree (matched-minus-
mismatched cosine, linear CKA, the distance between the modalities' centroids) and whether embedding arithmetic
across modalities lands on the intended concept (analogy accuracy).

Features are plain (N, D) tensors and labels (N,) integer class ids, so any encoder can be measured the same way.
Two modalities' features are paired by row: row i of each describes the same example.
"""

import numpy as np
import torch
import torch.nn.functional as F


def linear_probe_accuracy(train_features: torch.Tensor, train_labels, test_features: torch.Tensor, test_labels,
                          seed: int = 0) -> float:
    """Accuracy in [0, 1] on the test rows of a multinomial logistic regression (scikit-learn, L2, lbfgs) fitted on
    standardised train features: the linear probe of self-supervised learning, on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(_numpy(train_features), np.asarray(train_labels))
    return float(probe.score(_numpy(test_features), np.asarray(test_labels)))


def nearest_neighbour_accuracy(train_features: torch.Tensor, train_labels, test_features: torch.Tensor,
                               test_labels) -> float:
    """Share of test rows whose nearest train row by cosine similarity has their label (1-NN)."""
    similarity = F.normalize(test_features.float(), dim=-1) @ F.normalize(train_features.float(), dim=-1).T
    nearest = torch.as_tensor(np.asarray(train_labels))[similarity.argmax(1)]
    return float((nearest == torch.as_tensor(np.asarray(test_labels))).float().mean())


def retrieval_recall(queries: torch.Tensor, gallery: torch.Tensor, labels=None, ks=(1, 5)) -> dict:
    """Cross-modal retrieval of row i of `gallery` for row i of `queries` (paired rows, cosine similarity).

    Returns `R@k` (share of queries whose partner is among the k most similar gallery rows; chance k/N) for each k,
    and with `labels` also `concept R@1` (share whose most similar row has the query's label; chance Σ_c p_c²)."""
    if len(queries) != len(gallery):
        raise ValueError(f"Paired retrieval needs as many queries as gallery rows, got {len(queries)} and {len(gallery)}.")
    similarity = F.normalize(queries.float(), dim=-1) @ F.normalize(gallery.float(), dim=-1).T
    ranking = similarity.argsort(1, descending=True)
    partner = torch.arange(len(queries)).unsqueeze(1)
    result = {f"R@{k}": float((ranking[:, :k] == partner).any(1).float().mean()) for k in ks}
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels))
        result["concept R@1"] = float((labels[ranking[:, 0]] == labels).float().mean())
    return result


def retrieval_chance(num_rows: int, labels=None, ks=(1, 5)) -> dict:
    """What `retrieval_recall` gives for features that carry no information."""
    chance = {f"R@{k}": min(1.0, k / num_rows) for k in ks}
    if labels is not None:
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        chance["concept R@1"] = float(((counts / counts.sum()) ** 2).sum())
    return chance


def _paired(a: torch.Tensor, b: torch.Tensor, what: str, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
    """a and b as float64 (N, D_a) / (N, D_b) tensors with the same N >= 2 (and `labels` of length N); else
    ValueError."""
    a, b = torch.as_tensor(a).detach().double().cpu(), torch.as_tensor(b).detach().double().cpu()
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{what} needs two (rows, features) matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if len(a) != len(b):
        raise ValueError(f"{what} pairs row i of one modality with row i of the other: got {len(a)} and {len(b)} rows.")
    if len(a) < 2:
        raise ValueError(f"{what} needs at least 2 paired rows, got {len(a)}.")
    if labels is not None and len(labels) != len(a):
        raise ValueError(f"{what}: {len(labels)} labels for {len(a)} rows.")
    return a, b


def cosine_gap(a: torch.Tensor, b: torch.Tensor, labels=None, centred: bool = False) -> dict:
    """How much more similar matched pairs across two modalities are than mismatched ones.

    a (N, D), b (N, D): the two modalities' embeddings in one space, row i of each describing the same example.
    Without `labels`, matched pairs are (a_i, b_i) and mismatched ones (a_i, b_j), i != j; with `labels` (N,), a
    pair is matched when its two rows share a label (same concept, the same row included) and mismatched otherwise.
    Returns `matched` and `mismatched` (mean cosine similarities, each in [-1, 1]) and `gap` = matched −
    mismatched in [-2, 2]: 0 for embeddings that carry no shared information, 1 − (mean mismatched cosine) for
    identical embeddings of the two modalities. With `centred`, each modality's mean embedding is subtracted first:
    a constant offset between the modalities (which `centroid_gap` measures) then no longer dilutes the cosines.
    Raises ValueError for unpaired shapes or different widths, or with `labels` when every row has the same label
    (then no pair is mismatched)."""
    a, b = _paired(a, b, "cosine_gap", labels)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_gap compares embeddings of one space: widths {a.shape[1]} and {b.shape[1]} differ.")
    if centred:
        a, b = a - a.mean(0), b - b.mean(0)
    similarity = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
    if labels is None:
        matched = torch.eye(len(a), dtype=torch.bool)
    else:
        labels = torch.as_tensor(np.asarray(labels))
        matched = labels[:, None] == labels[None, :]
        if matched.all():
            raise ValueError("cosine_gap with labels needs rows of at least two different labels.")
    result = {"matched": float(similarity[matched].mean()), "mismatched": float(similarity[~matched].mean())}
    result["gap"] = result["matched"] - result["mismatched"]
    return result


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al., ICML 2019) between two representations of the same rows:
    ‖B_cᵀA_c‖²_F / (‖A_cᵀA_c‖_F ‖B_cᵀB_c‖_F) with A_c, B_c the column-centred a (N, D_a) and b (N, D_b); the widths
    may differ. In [0, 1]: 1 when b is an orthogonal transform of a, up to scale and offset; near 0 for unrelated
    features when N is much larger than the widths (its value for unrelated features grows with D / N: compare
    with the same measure on shuffled rows). Computed in float64. Raises ValueError for unpaired shapes or a
    representation that is constant over the rows."""
    a, b = _paired(a, b, "linear_cka")
    a, b = a - a.mean(0), b - b.mean(0)
    norms = torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b)
    if norms == 0:
        raise ValueError("linear_cka: a representation is the same for every row (zero variance); CKA is undefined.")
    return float(torch.linalg.matrix_norm(b.T @ a) ** 2 / norms)


def centroid_gap(a: torch.Tensor, b: torch.Tensor) -> dict:
    """The distance between two modalities' mean embeddings, absolute and relative to their spread.

    a (N_a, D), b (N_b, D) in one space (the rows need not be paired). Returns `distance` = ‖mean(a) − mean(b)‖
    (≥ 0, in the embeddings' units), `spread` = the root-mean-square distance of each modality's rows to its own
    centroid, averaged over the two, and `relative` = distance / spread: 0 when the modalities share a centre,
    above 1 when the gap between modalities exceeds the scatter within each (the "modality gap" of contrastive
    models). Raises ValueError for different widths, fewer than 2 rows, or zero spread."""
    a, b = torch.as_tensor(a).detach().float().cpu(), torch.as_tensor(b).detach().float().cpu()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"centroid_gap needs two (rows, features) matrices of one width, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}.")
    if min(len(a), len(b)) < 2:
        raise ValueError(f"centroid_gap needs at least 2 rows per modality, got {len(a)} and {len(b)}.")
    centre_a, centre_b = a.mean(0), b.mean(0)
    spread = 0.5 * (float(((a - centre_a) ** 2).sum(1).mean().sqrt()) + float(((b - centre_b) ** 2).sum(1).mean().sqrt()))
    if spread == 0:
        raise ValueError("centroid_gap: both modalities' embeddings are constant (zero spread).")
    distance = float(torch.linalg.vector_norm(centre_a - centre_b))
    return {"distance": distance, "spread": spread, "relative": distance / spread}


def analogy_accuracy(source: torch.Tensor, offset: torch.Tensor, labels, seed: int = 0,
                     target_concepts=None) -> dict:
    """Cross-modal embedding arithmetic: for every row i (concept a), the query source_i − offset_i + offset_j, with
    j a row of another concept b drawn with `seed`, should be nearest (cosine) to a `source` row of concept b.

    source (N, D): the gallery modality (e.g. images), offset (N, D): the modality that names the change (e.g.
    captions), row i of each describing the same example; labels (N,) concept ids, at least two different ones.
    So with images as source and captions as offset: emb(image of a) − emb(caption of a) + emb(caption of b) should
    retrieve images of b. As in word-analogy tests, the query's own source row is left out of the search (it would
    otherwise win whenever the change is small); other rows of concept a stay in, and landing on one is a miss.
    `target_concepts` (concept ids) limits the targets b to those concepts, e.g. the concepts held out of training;
    a row whose concept is the only one allowed then has no target and makes no query. Without it the draw is the
    same as for all concepts.
    Returns `accuracy` (share of the queries whose nearest other source row has concept b, in [0, 1]),
    `offset_alone` (the same share when offset_j alone is the query, with the same targets and the same row left
    out: what the arithmetic must beat to show that subtracting concept a helps), `chance` (the expected accuracy of
    a query that points nowhere in particular: the mean over queries of the share of concept b among the N − 1
    searched rows) and `queries` (N without `target_concepts`); with `target_concepts` also `in_targets` (share of
    the arithmetic queries whose nearest row has any of those concepts) and its chance `in_targets_chance` (their
    rows' share among the searched rows): when unseen concepts sit together, a query can land among them without
    telling them apart, and `accuracy` / `in_targets` says how often it then picks the right one. Raises ValueError
    for unpaired shapes, different widths, a single concept, or `target_concepts` that leave no query a target."""
    source, offset = _paired(source, offset, "analogy_accuracy", labels)
    if source.shape[1] != offset.shape[1]:
        raise ValueError(f"analogy_accuracy adds and subtracts embeddings of one space: widths {source.shape[1]} and "
                         f"{offset.shape[1]} differ.")
    labels = torch.as_tensor(np.asarray(labels))
    concepts, counts = labels.unique(return_counts=True)
    if len(concepts) < 2:
        raise ValueError("analogy_accuracy needs rows of at least two concepts.")
    generator = torch.Generator().manual_seed(seed)
    # For row i, a uniformly drawn row of another concept: rank a random key and take the first row that qualifies.
    keys = torch.rand(len(labels), len(labels), generator=generator)
    keys[labels[:, None] == labels[None, :]] = -1.0
    if target_concepts is not None:
        allowed = torch.isin(labels, torch.as_tensor(sorted(set(int(c) for c in target_concepts)), dtype=labels.dtype))
        keys[:, ~allowed] = -1.0
    rows = (keys >= 0).any(1).nonzero().squeeze(1)
    if len(rows) == 0:
        raise ValueError(f"analogy_accuracy: no row of target_concepts {sorted(target_concepts)} belongs to another "
                         "concept than some query's, so there is nothing to aim at.")
    target = keys[rows].argmax(1)
    wanted = labels[target]
    searched = F.normalize(source, dim=-1).T
    hits, nearest = {}, {}
    for name, query in (("accuracy", source[rows] - offset[rows] + offset[target]), ("offset_alone", offset[target])):
        similarity = F.normalize(query, dim=-1) @ searched
        similarity[torch.arange(len(rows)), rows] = -float("inf")
        nearest[name] = labels[similarity.argmax(1)]
        hits[name] = float((nearest[name] == wanted).float().mean())
    share = dict(zip(concepts.tolist(), (counts / (len(labels) - 1)).tolist()))
    result = {**hits, "chance": float(np.mean([share[c] for c in wanted.tolist()])), "queries": len(rows)}
    if target_concepts is not None:
        result["in_targets"] = float(torch.isin(nearest["accuracy"], labels[allowed]).float().mean())
        # A query's own row is never searched: the share of target rows among the other N − 1, averaged.
        result["in_targets_chance"] = float(((allowed.sum() - allowed[rows].double()) / (len(labels) - 1)).mean())
    return result


def _numpy(features: torch.Tensor) -> np.ndarray:
    return features.detach().float().cpu().numpy()


__all__ = ["analogy_accuracy", "centroid_gap", "cosine_gap", "linear_cka", "linear_probe_accuracy",
           "nearest_neighbour_accuracy", "retrieval_chance", "retrieval_recall"]
