"""Voken pre-training with Trainer (the voken_lm recipe): data preparation and its refusals, a run with and without
vokens that saves a loadable folder, fine-tuning that folder as a BERT classifier, and an interrupted run resumed to
the uninterrupted result. Learning on a fixed batch is shown by the model contract."""

import json
import subprocess
import sys

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from hf_mmdl.training.voken_lm import (
    VOKEN_LM_RECIPE, finetune_sequence_classification, near_equal_segments, tokenize_with_vokens,
)

from interruption import kill_once_written
from hf_mmdl.processing import train_bert_wordpiece
from voken_lm_helpers import SENTENCES, tiny_tokenizer

VOKEN_SIZE = 7


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer(model_max_length=64).save_pretrained(folder)
    return folder


def vokens_for(tokenizer, text):
    """Fabricated vokens: a function of each token (what a vokenizer does for a context-free word), −100 at the
    special tokens."""
    ids = tokenizer(text)["input_ids"]
    return [-100 if i in tokenizer.all_special_ids else i % VOKEN_SIZE for i in ids]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer_folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    texts = [f"{a} and {b}" for a in SENTENCES for b in SENTENCES] * 2
    rows = datasets.Dataset.from_dict({"text": texts, "vokens": [vokens_for(tokenizer, t) for t in texts]})
    folder = tmp_path_factory.mktemp("corpus")
    rows.save_to_disk(folder)
    return folder


def tiny_run(corpus, tokenizer_folder, output_dir, *extra):
    return ["--dataset_name", str(corpus), "--tokenizer_name", str(tokenizer_folder), "--model_size", "tiny",
            "--voken_size", str(VOKEN_SIZE), "--max_seq_length", "32", "--per_device_train_batch_size", "8",
            "--learning_rate", "3e-3", "--logging_steps", "5", "--use_cpu", "--disable_tqdm", "true",
            "--output_dir", str(output_dir), *extra]


def run(argv):
    arguments, given = VOKEN_LM_RECIPE.parse(argv)
    return VOKEN_LM_RECIPE.run(*arguments, given=given)


def test_voken_pretraining_learns_beyond_the_unigram_baselines_and_saves_a_loadable_folder(corpus, tokenizer_folder,
                                                                                        tmp_path):
    results = run(tiny_run(corpus, tokenizer_folder, tmp_path, "--max_steps", "60"))
    validation, unigram = results["validation"], results["unigram_baseline"]
    # The fabricated vokens are a function of the token, so a model that reads its input beats the voken prior.
    assert validation["voken_accuracy"] > unigram["voken_accuracy"] + 0.2, (validation, unigram)
    assert validation["voken_loss"] < unigram["voken_loss"]
    assert {"mlm_loss", "mlm_accuracy"} <= set(validation) and results["mlm_only"] is False
    assert json.loads((tmp_path / "results.json").read_text())["validation"] == validation
    table = VOKEN_LM_RECIPE.results_table(results)
    assert f"{validation['voken_accuracy']:.1%}" in table and "unigram" in table
    model = AutoModelForMaskedLM.from_pretrained(tmp_path)
    assert model.config.voken_size == VOKEN_SIZE and (tmp_path / "tokenizer.json").is_file()


def test_mlm_only_baseline_reads_no_vokens(corpus, tokenizer_folder, tmp_path):
    results = run(tiny_run(corpus, tokenizer_folder, tmp_path, "--max_steps", "4", "--mlm_only", "true"))
    assert results["mlm_only"] is True
    assert "voken_accuracy" not in results["validation"] and "mlm_loss" in results["validation"]
    assert "| MLM-only model |" in VOKEN_LM_RECIPE.results_table(results)


def test_the_pretrained_folder_fine_tunes_as_a_bert_classifier(corpus, tokenizer_folder, tmp_path):
    run(tiny_run(corpus, tokenizer_folder, tmp_path / "lm", "--max_steps", "2"))
    texts = SENTENCES * 4
    labels = [int("red" in t or "blue" in t or "white" in t or "green" in t) for t in texts]
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": texts, "label": labels}),
                                 "test": datasets.Dataset.from_dict({"text": SENTENCES, "label": labels[:6]})})
    result = finetune_sequence_classification(tmp_path / "lm", data, tmp_path / "classifier", max_steps=3,
                                              per_device_train_batch_size=8, use_cpu=True, disable_tqdm=True)
    assert result["num_labels"] == 2 and result["test_rows"] == 6 and 0 <= result["accuracy"] <= 1
    assert json.loads((tmp_path / "classifier" / "config.json").read_text())["model_type"] == "bert"


@pytest.mark.parametrize("change, match", [
    ("label column missing", "lacks the column"),
    ("float labels", "integer class ids"),
    ("empty text", "empty texts"),
    ("another architecture", "not a \\(voken\\) BERT"),
])
def test_fine_tuning_refuses_bad_data_and_foreign_folders(tmp_path, change, match):
    folder = tmp_path / "lm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "m2_transformer" if change == "another architecture"
                                                    else "voken_bert"}))
    rows = {"text": ["a red apple", "a dog"], "label": [0, 1]}
    if change == "label column missing":
        del rows["label"]
    elif change == "float labels":
        rows["label"] = [0.0, 1.0]
    elif change == "empty text":
        rows["text"] = ["a red apple", "  "]
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)})
    with pytest.raises(ValueError, match=match):
        finetune_sequence_classification(folder, data, tmp_path / "out")


def test_long_rows_are_cut_into_near_equal_framed_segments_with_their_vokens():
    tokenizer = tiny_tokenizer(model_max_length=64)
    text = " ".join(SENTENCES)
    vokens = vokens_for(tokenizer, text)
    rows = datasets.Dataset.from_dict({"text": [text], "vokens": [vokens]})
    segments = tokenize_with_vokens(rows, tokenizer, max_seq_length=12, voken_size=VOKEN_SIZE)
    inner = len(vokens) - 2
    assert len(segments) == -(-inner // 10)
    sizes = [len(ids) - 2 for ids in segments["input_ids"]]
    assert max(sizes) <= 10 and max(sizes) - min(sizes) <= 1
    ids = tokenizer(text)["input_ids"]
    assert [i for seg in segments["input_ids"] for i in seg[1:-1]] == ids[1:-1]
    assert [v for seg in segments["vokens"] for v in seg[1:-1]] == vokens[1:-1]
    assert all(seg[0] == tokenizer.cls_token_id and seg[-1] == tokenizer.sep_token_id for seg in segments["input_ids"])
    assert all(seg[0] == seg[-1] == -100 for seg in segments["vokens"])
    assert near_equal_segments(25, 10) == [(0, 8), (8, 17), (17, 25)]


@pytest.mark.parametrize("change, match", [
    ("vokens not aligned with the tokens", "Row 1: .* vokens for .* tokens"),
    ("voken id >= voken_size", "Row 1 holds voken 7, outside \\[0, 7\\)"),
    ("a voken at a special token", "Row 1 gives a special token"),
    ("empty text", "Row 1 has empty text"),
])
def test_bad_corpus_rows_are_refused_naming_the_row(change, match):
    tokenizer = tiny_tokenizer()
    texts = SENTENCES[:3]
    vokens = [vokens_for(tokenizer, t) for t in texts]
    if change == "vokens not aligned with the tokens":
        vokens[1] = vokens[1][:-2] + [-100]
    elif change == "voken id >= voken_size":
        vokens[1][2] = VOKEN_SIZE
    elif change == "a voken at a special token":
        vokens[1][0] = 3
    else:
        texts[1] = ""
    rows = datasets.Dataset.from_dict({"text": texts, "vokens": vokens})
    with pytest.raises(ValueError, match=match):
        tokenize_with_vokens(rows, tokenizer, max_seq_length=32, voken_size=VOKEN_SIZE)


def test_vokens_written_for_another_tokenizer_are_refused():
    """A corpus vokenized with one WordPiece vocabulary, pre-trained with another: the token counts differ."""
    other = train_bert_wordpiece(["completely different words for another vocabulary entirely"] * 5 + SENTENCES[:1],
                                 vocab_size=80, model_max_length=64)
    rows = datasets.Dataset.from_dict({"text": SENTENCES[:2], "vokens": [vokens_for(tiny_tokenizer(), t)
                                                                         for t in SENTENCES[:2]]})
    assert len(other(SENTENCES[0])["input_ids"]) != len(rows[0]["vokens"])
    with pytest.raises(ValueError, match="Row 0: .* vokens for .* tokens.*--tokenizer_name of the vokenizer"):
        tokenize_with_vokens(rows, other, max_seq_length=32, voken_size=VOKEN_SIZE)


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused_before_anything_is_written(corpus, tokenizer_folder,
                                                                                            tmp_path):
    run(tiny_run(corpus, tokenizer_folder, tmp_path / "saved", "--max_steps", "1"))
    bigger = tmp_path / "bigger_tokenizer"
    train_bert_wordpiece(SENTENCES * 3 + ["zebra giraffe quantum xylophone"] * 3, vocab_size=200).save_pretrained(bigger)
    out = tmp_path / "continued"
    with pytest.raises(ValueError, match="tokenizer has .* tokens but the model's vocabulary .*model's own tokenizer"):
        run(tiny_run(corpus, bigger, out, "--max_steps", "1", "--model_name_or_path", str(tmp_path / "saved")))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("flags, match", [
    (["--voken_size", "0"], "voken_size"),  # the config refuses it
    (["--voken_labels", "masked"], "--voken_labels"),
    (["--vokens_column", "image_ids"], "lacks the column"),
    (["--model_size", "huge"], "--model_size"),
    (["--max_seq_length", "65"], "exceeds the model's"),
])
def test_bad_flags_are_refused(corpus, tokenizer_folder, tmp_path, flags, match):
    argv = tiny_run(corpus, tokenizer_folder, tmp_path, "--max_steps", "1", *flags)
    if "--max_seq_length" in flags:  # tiny models get positions for --max_seq_length; a saved one has fixed ones
        run(tiny_run(corpus, tokenizer_folder, tmp_path / "saved", "--max_steps", "1", "--max_seq_length", "64"))
        argv = [*argv, "--model_name_or_path", str(tmp_path / "saved")]
    with pytest.raises(ValueError, match=match):
        run(argv)


def test_a_fresh_model_needs_its_tokenizer_and_voken_size(corpus, tokenizer_folder, tmp_path):
    argv = tiny_run(corpus, tokenizer_folder, tmp_path, "--max_steps", "1")
    without_voken_size = [a for i, a in enumerate(argv) if a != "--voken_size" and argv[i - 1] != "--voken_size"]
    with pytest.raises(ValueError, match="--voken_size is required"):
        run(without_voken_size)
    without_tokenizer = [a for i, a in enumerate(argv) if a != "--tokenizer_name" and argv[i - 1] != "--tokenizer_name"]
    with pytest.raises(ValueError, match="--tokenizer_name is required"):
        run(without_tokenizer)


def test_a_bert_folder_is_refused_as_a_voken_lm_to_continue(corpus, tokenizer_folder, tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    BertForMaskedLM(BertConfig(vocab_size=120, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                               intermediate_size=8)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="bert"):
        run(tiny_run(corpus, tokenizer_folder, tmp_path / "out", "--max_steps", "1",
                     "--model_name_or_path", str(tmp_path / "bert")))


def test_killed_pretraining_resumes_to_the_same_weights(corpus, tokenizer_folder, tmp_path):
    def command(folder, *extra):
        argv = tiny_run(corpus, tokenizer_folder, folder, "--max_steps", "8", "--save_steps", "3",
                        "--save_total_limit", "3", *extra)
        return [sys.executable, "-c", "import sys; from hf_mmdl.training.voken_lm import main; main(sys.argv[1:])",
                *argv]

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(command(uninterrupted), check=True, capture_output=True)
    kill_once_written(command(interrupted), interrupted / "checkpoint-3" / "trainer_state.json")
    subprocess.run(command(interrupted, "--resume_from_checkpoint", "last"), check=True, capture_output=True)
    full, resumed = load_file(uninterrupted / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert full.keys() == resumed.keys() and "visual_cls_head.decoder.weight" in full
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_continuing_a_saved_model_applies_given_flags_and_refuses_another_voken_set(corpus, tokenizer_folder,
                                                                                   tmp_path):
    run(tiny_run(corpus, tokenizer_folder, tmp_path / "first", "--max_steps", "1", "--max_seq_length", "32"))
    continued = tiny_run(corpus, tokenizer_folder, tmp_path / "second", "--max_steps", "1", "--model_name_or_path",
                         str(tmp_path / "first"), "--mlm_ratio", "0.5", "--voken_labels", "mask")
    results = run(continued)
    saved = json.loads((tmp_path / "second" / "config.json").read_text())
    assert (saved["mlm_ratio"], saved["voken_labels"]) == (0.5, "mask") and results["voken_labels"] == "mask"
    with pytest.raises(ValueError, match=f"classifies {VOKEN_SIZE} vokens"):
        run([*continued[:-4], "--voken_size", "5", "--output_dir", str(tmp_path / "third")])


def test_bf16_mixed_precision_and_two_process_data_parallel_on_cpu(corpus, tokenizer_folder, tmp_path):
    """`hf-mmdl train voken_lm` under Accelerate on CPU: `--bf16` autocast, and two processes (torchrun, gloo)."""
    import os

    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")

    def train(folder, *extra, launcher=(sys.executable, "-m")):
        argv = tiny_run(corpus, tokenizer_folder, folder, "--max_steps", "4", "--save_strategy", "no",
                        "--logging_steps", "1", "--seed", "3", *extra)
        run = subprocess.run([*launcher, "hf_mmdl.cli", "train", "voken_lm", *argv], check=True, capture_output=True,
                             env=env, text=True)
        return json.loads((folder / "results.json").read_text())["history"], run

    bf16, _ = train(tmp_path / "bf16", "--bf16")
    fp32, _ = train(tmp_path / "fp32")
    assert [e["step"] for e in bf16] == [e["step"] for e in fp32] == [1, 2, 3, 4]
    assert torch.isfinite(torch.tensor([e["loss"] for e in bf16 + fp32])).all()
    # bf16 autocast must have run (another loss) and stay close to float32 (measured: 2.2e-5 relative after 4 steps;
    # bf16 keeps 8 mantissa bits, eps 3.9e-3).
    assert bf16[-1]["loss"] != fp32[-1]["loss"]
    assert abs(bf16[-1]["loss"] - fp32[-1]["loss"]) < 1e-3 * abs(fp32[-1]["loss"])

    two, run = train(tmp_path / "two", "--per_device_train_batch_size", "4",
                     launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", "29561", "-m"))
    assert torch.isfinite(torch.tensor([e["loss"] for e in two])).all() and len(two) == 4
    # 2 processes × 4 rows per step see as many rows as one process × 8: the same share of an epoch.
    assert two[-1]["epoch"] == pytest.approx(fp32[-1]["epoch"]), run.stderr[-2000:]
    assert AutoModelForMaskedLM.from_pretrained(tmp_path / "two").config.voken_size == VOKEN_SIZE
