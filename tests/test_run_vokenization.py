"""`examples/run_vokenization.py` at its `--quick` size (tiny models, two seeds: about a minute on one core): both
stages run, the corpus is vokenized in line with the shared tokenizer, and results.json / results.md / the figure
hold every variant, task and seed; plus the offline text data it is built on."""

import importlib.util
import json
import re
from pathlib import Path

import datasets
import pytest
from transformers import AutoTokenizer

from hf_mmdl.data.scenes import COLOURS
from hf_mmdl.data.sentences import load_movie_review_polarity, load_news_sentences, load_scene_first_colour

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "run_vokenization.py"
spec = importlib.util.spec_from_file_location("run_vokenization", SCRIPT)
run_vokenization = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_vokenization)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vokenization")
    results = run_vokenization.main(["--quick", "--seeds", "0", "1", "--num_train_images", "40", "--corpus_news",
                                     "60", "--output_dir", str(out)])
    return results, out


def test_every_variant_task_and_seed_is_measured_and_written(quick_run):
    results, out = quick_run
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert list(results["variants"]) == ["voken + MLM", "MLM only"]
    assert results["tasks"] == ["scene first colour", "movie-review polarity"]
    assert [(r["variant"], r["seed"]) for r in results["runs"]] == [
        ("voken + MLM", 0), ("MLM only", 0), ("voken + MLM", 1), ("MLM only", 1)]
    for variant, row in results["variants"].items():
        for task in results["tasks"]:
            values = [r[task] for r in results["runs"] if r["variant"] == variant]
            assert row["accuracy"][task]["values"] == values
            assert row["accuracy"][task]["mean"] == pytest.approx(sum(values) / 2)
    assert "voken_accuracy" in results["variants"]["voken + MLM"]
    assert "voken_accuracy" not in results["variants"]["MLM only"]  # the baseline never sees a voken
    assert results["task_sizes"]["movie-review polarity"] == {"train": 140, "test": 60}
    table = (out / "results.md").read_text()
    for variant in results["variants"]:
        assert re.search(rf"\| {re.escape(variant)} \| \d+\.\d% ± \d+\.\d% \|", table)
    assert "| visually grounded" in table and "token alone" in table
    assert "| chance; unigram / most frequent voken | 16.7% | 50.0% |" in table
    assert (out / "downstream.png").stat().st_size > 1000 and (out / "matcher" / "vokens.png").is_file()


def test_the_corpus_is_vokenized_in_line_with_the_language_models_tokenizer(quick_run):
    results, out = quick_run
    corpus = datasets.load_from_disk(str(out / "corpus"))
    tokenizer = AutoTokenizer.from_pretrained(out / "lm" / "voken-seed0")
    assert len(corpus) == results["corpus"]["rows"] == results["corpus"]["captions"] + 60
    for row in corpus.select(range(20)):
        ids = tokenizer(row["text"])["input_ids"]
        assert len(row["vokens"]) == len(ids)
        assert row["vokens"][0] == row["vokens"][-1] == -100
        assert all(0 <= v < results["voken_size"] for v in row["vokens"][1:-1])


def test_one_seed_is_refused_for_want_of_a_spread(tmp_path):
    with pytest.raises(SystemExit, match="at least 2 seeds"):
        run_vokenization.main(["--quick", "--seeds", "0", "--output_dir", str(tmp_path)])


def test_scene_first_colour_labels_are_the_first_colour_word():
    data = load_scene_first_colour(num_train=200, num_test=20, seed=3)
    assert load_scene_first_colour(num_train=200, num_test=20, seed=3)["train"]["text"] == data["train"]["text"]
    for split in ("train", "test"):
        for text, label in zip(data[split]["text"], data[split]["label"]):
            colours = [word for word in text.split() if word in COLOURS]
            assert len(colours) == 2 and label == list(COLOURS).index(colours[0])
    assert set(data["train"]["label"]) == set(range(len(COLOURS)))
    # The second colour is drawn on its own: knowing which colours occur does not give the label.
    assert sum(text.split().count(list(COLOURS)[label]) == 1 for text, label in
               zip(data["train"]["text"], data["train"]["label"])) > 150


def test_the_real_english_sources_are_balanced_and_disjoint():
    polarity = load_movie_review_polarity(num_test=60)
    assert sum(polarity["test"]["label"]) == 30 and sum(polarity["train"]["label"]) == 70
    assert not set(polarity["train"]["text"]) & set(polarity["test"]["text"])
    news = load_news_sentences()
    assert len(news) > 2000 and all(len(s.split()) >= 4 for s in news)
    assert news[0].startswith("Hundreds of people have been forced to vacate their homes")
    with pytest.raises(ValueError, match="num_test"):
        load_movie_review_polarity(num_test=199)
