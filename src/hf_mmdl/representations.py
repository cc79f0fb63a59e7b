"""Measures of learned representations on frozen features: linear-probe and nearest-neighbour accuracy, and
cross-modal retrieval (the small-data evaluation of self-supervised encoders used for data2vec-multimodal).

Features are plain (N, D) tensors and labels (N,) integer class ids, so any encoder can be measured the same way.
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


def _numpy(features: torch.Tensor) -> np.ndarray:
    return features.detach().float().cpu().numpy()


__all__ = ["linear_probe_accuracy", "nearest_neighbour_accuracy", "retrieval_chance", "retrieval_recall"]
