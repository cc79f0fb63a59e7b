"""The Vokenizer matcher's training recipe (`hf-mmdl train vokenizer`): a tiny matcher learns token→image relevance
on built-in scenes in seconds (held-out recall of grounded tokens above chance and above the same matcher embedding
each token alone), the saved folder is a loadable Vokenizer, and the measures are those defined in the recipe."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from hf_mmdl.architectures import ARCHITECTURES
from hf_mmdl.architectures.vokenizer import vokenizer_metrics_section
from hf_mmdl.data.scenes import COLOURS, SHAPES
from hf_mmdl.modeling import VokenizerModel
from hf_mmdl.processing import VokenizerImageProcessor, VokenizerProcessor, train_bert_wordpiece
from hf_mmdl.training.vokenizer import (
    SCENE_GROUNDED_WORDS, VOKENIZER_RECIPE, grounded_positions, grounded_words, token_image_recall,
)
from hf_mmdl.vokenization import Vokenizer
from interruption import kill_once_written
from test_vokenizer_modeling import tiny_config

# Single-shape scenes at 32 px, a 2-layer 32-wide BERT and a 2-stage ResNet: about 12 s of training on one core.
TINY_RUN = dict(model_size="tiny", num_train_images=150, num_key_images=10, num_eval_images=40, image_size=32,
                max_objects=1, vocab_size=200, max_steps=120, per_device_train_batch_size=32, learning_rate=1e-3,
                disable_tqdm=True, logging_steps=1000)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vokenizer")
    results = VOKENIZER_RECIPE.run_from_dict(TINY_RUN | {"output_dir": str(out)})
    return results, out


def test_a_tiny_matcher_grounds_tokens_beyond_chance_and_beyond_tokens_alone(tiny_run):
    results, _ = tiny_run
    grounded = results["recall"]["grounded"]
    assert grounded["tokens"] > 50 and results["recall"]["images"] == 40
    assert (grounded["chance"]["R@1"], grounded["chance"]["R@5"]) == (1 / 40, 5 / 40)
    assert 0 < grounded["chance"]["concept@1"] < 1
    contextual, alone = grounded["contextual"], grounded["non_contextual"]
    # Measured at seeds 0/1/2: R@5 0.52/0.63/0.44 in context, 0.27/0.35/0.29 alone, chance 0.125.
    assert contextual["R@5"] >= 2.5 * grounded["chance"]["R@5"]
    assert contextual["R@5"] > alone["R@5"]
    assert contextual["concept@1"] > grounded["chance"]["concept@1"] + 0.15


def test_the_run_saves_a_loadable_vokenizer_with_thumbnails_its_results_and_the_voken_figure(tiny_run):
    results, out = tiny_run
    vokenizer = Vokenizer.from_pretrained(out)
    assert vokenizer.num_images == results["key_images"] == 10
    assert vokenizer.thumbnails.shape == (10, 32, 32, 3)  # the demo shows each token's voken image
    sentence = vokenizer.vokenize(["a small red circle"])[0]
    assert sentence.vokens[0] == sentence.vokens[-1] == -100 and (sentence.vokens[1:-1] >= 0).all()
    saved = json.loads((out / "results.json").read_text())
    assert saved["recall"] == results["recall"] and saved["dataset"] == "scenes"
    assert (out / "vokens.png").stat().st_size > 1000


def test_the_card_and_table_show_recall_in_context_alone_and_at_chance(tiny_run):
    results, _ = tiny_run
    section = vokenizer_metrics_section(results)
    grounded = results["recall"]["grounded"]
    for name, label in (("contextual", "in context"), ("non_contextual", "token alone"), ("chance", "chance")):
        row = next(line for line in section.splitlines() if line.startswith("| visually grounded") and label in line)
        assert f"{grounded[name]['R@5']:.1%}" in row
    assert ARCHITECTURES["vokenizer"].load_recipe() is VOKENIZER_RECIPE


def test_the_saved_folders_model_card_reports_the_runs_recall_and_data(tiny_run):
    from hf_mmdl.hub import model_card

    results, out = tiny_run
    text = str(model_card(out, "someone/vokenizer-scenes"))
    assert "Vokenization: Improving Language Understanding" in text and "tan2020vokenization" in text
    assert f"| {results['recall']['grounded']['contextual']['R@5']:.1%} |" in text
    assert "token alone (non-contextual)" in text and "built-in procedurally generated scenes" in text
    assert 'Vokenizer.from_pretrained("someone/vokenizer-scenes")' in text


def test_grounded_words_are_the_scene_attributes_or_the_rarer_caption_words():
    assert set(COLOURS) | set(SHAPES) | {"crosses", "small"} <= SCENE_GROUNDED_WORDS
    assert not {"a", "the", "of", "shapes", "there"} & grounded_words("scenes", [])
    captions = [f"an emoji of a {name}" for name in ("cat", "dog", "cat face", "red apple", "dog face")] * 3
    # "an", "emoji", "of" occur in every caption; the names in at most 2 of 5 kinds (6 of 15 captions).
    assert grounded_words("twemoji", captions, max_share=0.5) == {"cat", "dog", "face", "red", "apple"}


def test_grounded_positions_cover_every_word_piece_of_a_grounded_word():
    tokenizer = train_bert_wordpiece(["a red circle", "a blue square", "two circles"] * 5, vocab_size=60)
    texts = ["a bluered circle", "a blue square"]
    encoding, positions = grounded_positions(tokenizer, texts, {"bluered", "square"}, 20)
    pieces = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    assert len(positions[0]) > 1  # "bluered" is cut into several pieces, each one grounded
    assert "".join(pieces[p].removeprefix("##") for p in positions[0]) == "bluered"
    assert set(positions[0].values()) == {"bluered"}
    assert list(positions[1].values()) == ["square"]


def test_recall_counts_a_hit_when_the_own_image_ranks_within_k():
    """A matcher whose token keys equal their caption's image key (by construction) scores recall 1 in context."""
    torch.manual_seed(0)
    tokenizer = train_bert_wordpiece(["a red circle", "a blue square"] * 5, vocab_size=60)
    model = VokenizerModel(tiny_config(text_config={"vocab_size": len(tokenizer), "hidden_size": 32,
                                                    "num_hidden_layers": 2, "num_attention_heads": 2,
                                                    "intermediate_size": 37, "max_position_embeddings": 64})).eval()
    processor = VokenizerProcessor(VokenizerImageProcessor.for_size(32), tokenizer)
    images = [torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8).numpy() for _ in range(3)]
    texts = ["a red circle", "a blue square", "a red square"]
    image_keys = model.get_image_keys(processor(images=images)["pixel_values"]).detach()
    owner_keys = {text: image_keys[i] for i, text in enumerate(texts)}

    def text_keys(input_ids, attention_mask=None, token_type_ids=None):
        rows = [tokenizer.decode(ids, skip_special_tokens=True) for ids in input_ids.tolist()]
        return torch.stack([owner_keys[row].expand(input_ids.shape[1], -1) if row in owner_keys
                            else torch.zeros(input_ids.shape[1], image_keys.shape[1]) for row in rows])

    model.get_text_keys = text_keys
    recall = token_image_recall(model, processor, images, texts, {"red", "square"})
    assert recall["grounded"]["tokens"] == 4 and recall["all"]["tokens"] == 9
    assert recall["grounded"]["contextual"]["R@1"] == recall["all"]["contextual"]["R@1"] == 1.0
    assert recall["grounded"]["chance"]["R@1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("flags, message", [
    (dict(per_device_train_batch_size=5), "even batch size"),
    (dict(num_eval_images=1), "num_eval_images must be at least 2"),
    (dict(model_size="huge"), "model_size must be one of"),
])
def test_the_recipe_refuses_settings_it_cannot_run(flags, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        VOKENIZER_RECIPE.run_from_dict(TINY_RUN | {"output_dir": str(tmp_path), "num_train_images": 4,
                                                   "max_steps": 1} | flags)


def tiny_command(folder, *extra, launcher=(sys.executable, "-m")):
    """`hf-mmdl train vokenizer` on the tiny settings, as a user would start it (through a launcher)."""
    flags = [f"--{name}={value}" for name, value in TINY_RUN.items() if name not in ("max_steps", "logging_steps")]
    return [*launcher, "hf_mmdl.cli", "train", "vokenizer", *flags, "--use_cpu", "--output_dir", str(folder), *extra]


def test_killed_training_resumes_from_its_last_checkpoint_to_the_same_weights(tiny_run, tmp_path):
    # Every part runs in this process's environment (one thread count for all: float sums follow it). Both runs start from one vocabulary (a WordPiece retrained in another process may tie-break differently);
    # the resumed run is given none: it must take its checkpoint's.
    vocabulary = ["--tokenizer_name", str(tiny_run[1])]

    def command(folder, *extra):
        return tiny_command(folder, "--max_steps", "8", "--save_steps", "3", "--save_total_limit", "3", *extra)

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    subprocess.run(command(uninterrupted, *vocabulary), check=True, capture_output=True)
    kill_once_written(command(interrupted, *vocabulary), interrupted / "checkpoint-3" / "trainer_state.json")
    subprocess.run(command(interrupted, "--resume_from_checkpoint", "last"), check=True, capture_output=True)
    assert (VokenizerProcessor.from_pretrained(interrupted).tokenizer.get_vocab()
            == VokenizerProcessor.from_pretrained(tiny_run[1]).tokenizer.get_vocab())
    full, resumed = load_file(uninterrupted / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert full.keys() == resumed.keys() and "visn_model.mlp.3.weight" in full
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_bf16_mixed_precision_and_two_process_data_parallel_on_cpu(tmp_path):
    """The matcher under Accelerate on CPU: `--bf16` autocast, and two processes (torchrun, gloo), each holding the
    even half-batch the paired hinge loss needs for its negatives."""
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")

    def train(folder, *extra, launcher=(sys.executable, "-m")):
        run = subprocess.run(tiny_command(folder, "--max_steps", "4", "--save_strategy", "no", "--logging_steps", "1",
                                          *extra, launcher=launcher), capture_output=True, env=env, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads((folder / "results.json").read_text()), run

    bf16, _ = train(tmp_path / "bf16", "--bf16")
    fp32, _ = train(tmp_path / "fp32")
    assert torch.isfinite(torch.tensor([bf16["train_loss_first"], bf16["train_loss_last"]])).all()
    # bf16 autocast must have run (another loss) and stay close to float32 (bf16 keeps 8 mantissa bits, eps 3.9e-3).
    assert bf16["train_loss_last"] != fp32["train_loss_last"]
    assert abs(bf16["train_loss_last"] - fp32["train_loss_last"]) < 5e-2 * abs(fp32["train_loss_last"])

    two, run = train(tmp_path / "two", "--per_device_train_batch_size", "16",
                     launcher=(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", "29563", "-m"))
    assert torch.isfinite(torch.tensor([two["train_loss_first"], two["train_loss_last"]])).all()
    # 2 processes × 16 rows per step see as many rows as one process × 32: the same share of an epoch.
    assert two["train_epochs"] == pytest.approx(fp32["train_epochs"]), run.stderr[-2000:]
    assert Vokenizer.from_pretrained(tmp_path / "two").num_images == 10
