import logging

from pycocoevalcap.cider.cider import Cider

from hf_mmdl import metrics
from hf_mmdl.metrics import CiderD, caption_metrics, collapse_repeated_words

REFERENCES = [
    ["a red circle to the left of a blue square", "a blue square to the right of a red circle"],
    ["a green star", "there is one green star"],
    ["two shapes a red cross and a white star", "a red cross and a white star"],
]
PREDICTIONS = ["a red circle to the left of a square", "a green star", "a red star"]


def test_cider_d_with_reference_document_frequencies_equals_pycocoevalcap():
    ours, per_image = CiderD.from_references(REFERENCES).corpus_score(PREDICTIONS, REFERENCES)
    theirs, their_per_image = Cider().compute_score(dict(enumerate(REFERENCES)), {i: [p] for i, p in enumerate(PREDICTIONS)})
    assert abs(ours - theirs) < 1e-9
    assert max(abs(a - b) for a, b in zip(per_image, their_per_image)) < 1e-9


def test_cider_d_rewards_the_right_caption_and_training_corpus_frequencies_change_it():
    scorer = CiderD.from_references(REFERENCES)
    assert scorer.score("a green star", REFERENCES[1]) > scorer.score("a red circle", REFERENCES[1])
    corpus = CiderD.from_corpus([c for refs in REFERENCES for c in refs] + ["a green star"] * 20)
    assert corpus.score("a green star", REFERENCES[1]) < scorer.score("a green star", REFERENCES[1])


def test_caption_metrics_report_bleu_rouge_cider_and_skip_meteor_without_java(monkeypatch, caplog):
    monkeypatch.setattr(metrics, "java_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        scores = caption_metrics(PREDICTIONS, REFERENCES)
    assert {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider_d"} == set(scores)
    assert "METEOR skipped" in caplog.text
    perfect = caption_metrics([r[0] for r in REFERENCES], REFERENCES, meteor=False)
    assert perfect["bleu_4"] > scores["bleu_4"] and perfect["cider_d"] > scores["cider_d"]


def test_repeated_words_collapse():
    assert collapse_repeated_words("a a red red circle with a") == "a red circle with a"
