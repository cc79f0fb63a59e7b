"""Caption metrics: BLEU-1..4, ROUGE-L and METEOR from pycocoevalcap, and CIDEr-D implemented here.

CIDEr-D (Vedantam et al., CVPR 2015, with the clipping and length penalty of the COCO server) is written here
because self-critical training needs its document frequencies from the *training* captions, which pycocoevalcap's
scorer cannot take. With document frequencies from the evaluated references it equals pycocoevalcap's `Cider`.

Captions are compared as the package's caption tokenizer sees them (lower case, punctuation dropped) rather than
through the Java PTB tokenizer, so scores are close to but not identical with the COCO server's.
"""

import logging
import math
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from .processing.tokenization import words_of

logger = logging.getLogger(__name__)

NGram = tuple[str, ...]


def ngram_counts(words: Sequence[str], n: int = 4) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def collapse_repeated_words(caption: str) -> str:
    """'a a red red circle' -> 'a red circle', as the original M² evaluation does before scoring."""
    words = caption.split()
    return " ".join(w for i, w in enumerate(words) if i == 0 or w != words[i - 1])


class CiderD:
    """CIDEr-D with n ≤ 4 and σ = 6. `document_frequency` counts, per n-gram, the documents containing it;
    build it with `from_references` (one document per image's reference set: the COCO evaluation) or
    `from_corpus` (any captions, e.g. one document per training caption, as M²'s self-critical stage does)."""

    def __init__(self, document_frequency: dict[NGram, float], num_documents: int, n: int = 4, sigma: float = 6.0):
        if num_documents < 1:
            raise ValueError("CIDEr-D needs at least one document to compute document frequencies.")
        self.document_frequency = document_frequency
        self.log_num_documents = math.log(float(num_documents))
        self.n = n
        self.sigma = sigma
        # References are scored against many candidates (every beam, every constant-caption candidate): vectorise
        # each text once.
        self._vectors = {}

    @classmethod
    def from_references(cls, references: Iterable[Sequence[str]], **kwargs) -> "CiderD":
        frequency = defaultdict(float)
        count = 0
        for refs in references:
            count += 1
            for ngram in set().union(*(ngram_counts(words_of(r)) for r in refs)):
                frequency[ngram] += 1
        return cls(dict(frequency), count, **kwargs)

    @classmethod
    def from_corpus(cls, captions: Iterable[str], **kwargs) -> "CiderD":
        return cls.from_references(([caption] for caption in captions), **kwargs)

    def _text_vector(self, text: str):
        if text not in self._vectors:
            self._vectors[text] = self._vector(words_of(text))
        return self._vectors[text]

    def _vector(self, words: list[str]):
        vectors = [{} for _ in range(self.n)]
        norms = [0.0] * self.n
        for ngram, tf in ngram_counts(words, self.n).items():
            weight = tf * (self.log_num_documents - math.log(max(1.0, self.document_frequency.get(ngram, 0.0))))
            vectors[len(ngram) - 1][ngram] = weight
            norms[len(ngram) - 1] += weight * weight
        return vectors, [math.sqrt(v) for v in norms], len(words)

    def _similarity(self, hyp, ref) -> list[float]:
        (vec_h, norm_h, len_h), (vec_r, norm_r, len_r) = hyp, ref
        penalty = math.exp(-((len_h - len_r) ** 2) / (2 * self.sigma**2))
        values = []
        for k in range(self.n):
            value = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec_h[k].items())
            if norm_h[k] and norm_r[k]:
                value /= norm_h[k] * norm_r[k]
            values.append(value * penalty)
        return values

    def score(self, candidate: str, references: Sequence[str]) -> float:
        hyp = self._text_vector(candidate)
        total = [0.0] * self.n
        for reference in references:
            for k, value in enumerate(self._similarity(hyp, self._text_vector(reference))):
                total[k] += value
        return 10.0 * sum(total) / self.n / len(references)

    def corpus_score(self, candidates: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets.")
        scores = [self.score(c, refs) for c, refs in zip(candidates, references)]
        return sum(scores) / max(1, len(scores)), scores


def java_available() -> bool:
    return shutil.which("java") is not None


def caption_metrics(
    predictions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L, CIDEr-D (document frequencies from these references) and, where Java is installed,
    METEOR; all as fractions (CIDEr-D ×10 as usual, so 1.0 = 100 on the leaderboard scale)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets.")
    if not predictions:
        raise ValueError("No predictions to score.")
    gts = {i: [" ".join(words_of(r)) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(words_of(p)) or "<empty>"] for i, p in enumerate(predictions)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = CiderD.from_references(references).corpus_score(predictions, references)
    metrics = {f"bleu_{i + 1}": float(b) for i, b in enumerate(bleu)}
    metrics.update(rouge_l=float(rouge), cider_d=float(cider))
    if meteor:
        if java_available():
            from pycocoevalcap.meteor.meteor import Meteor

            metrics["meteor"] = float(Meteor().compute_score(gts, res)[0])
        else:
            logger.warning("METEOR skipped: it runs a Java program and no `java` is on PATH (apt install default-jre).")
    return metrics
