"""Modality invariance and cross-modal arithmetic: the measures on constructed features whose answer is known, and
`analyse_invariance` / `hf-mmdl analyse` on saved data2vec-multimodal folders, with their bad inputs."""

import json

import datasets
import pytest
import torch

from hf_mmdl.cli import main
from hf_mmdl.data.trimodal import load_trimodal_dataset
from hf_mmdl.invariance import analyse_invariance, embed, held_out_rows, invariance_report, load_model
from hf_mmdl.representations import analogy_accuracy, centroid_gap, cosine_gap, linear_cka

from test_data2vec_multimodal_pipeline import IMAGE_SIZE, save_tiny_model


def gaussian(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def rotation(width, seed=0):
    return torch.linalg.qr(gaussian(width, width, seed=seed))[0]


# Linear CKA


def hsic_cka(x, y):
    """CKA from its definition with Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XXᵀ, L = YYᵀ."""
    x, y = x.double(), y.double()
    n = len(x)
    centring = torch.eye(n, dtype=torch.float64) - 1 / n
    k, l = centring @ x @ x.T @ centring, centring @ y @ y.T @ centring
    return float((k * l).sum() / ((k * k).sum() * (l * l).sum()).sqrt())


def test_linear_cka_is_one_for_a_rotated_scaled_shifted_copy_and_matches_the_gram_definition():
    x = gaussian(200, 12)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-9)
    # A forgotten centring fails on the shift, a forgotten normalisation on the scale.
    assert linear_cka(x, 3.0 * x @ rotation(12) + 5.0) == pytest.approx(1.0, abs=1e-9)
    y = torch.tanh(x[:, :7] @ gaussian(7, 9, seed=1)) + 0.5 * gaussian(200, 9, seed=2)  # another width, related
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-9)
    assert 0.1 < linear_cka(x, y) < 0.9


def test_linear_cka_of_unrelated_features_is_near_zero():
    assert linear_cka(gaussian(3000, 8, seed=0), gaussian(3000, 8, seed=1)) < 0.02


@pytest.mark.parametrize("a, b, message", [
    (torch.zeros(10, 4), torch.zeros(9, 4), "10 and 9 rows"),
    (torch.zeros(10), torch.zeros(10), "matrices"),
    (torch.ones(10, 4), gaussian(10, 4), "same for every row"),
])
def test_linear_cka_refuses_unpaired_or_constant_features(a, b, message):
    with pytest.raises(ValueError, match=message):
        linear_cka(a, b)


# Matched-minus-mismatched cosine


def test_cosine_gap_is_one_for_identical_orthogonal_embeddings_and_zero_for_unrelated_ones():
    identical = cosine_gap(torch.eye(20), torch.eye(20))
    assert (identical["matched"], identical["mismatched"], identical["gap"]) == (1.0, 0.0, 1.0)
    unrelated = cosine_gap(gaussian(400, 64, seed=0), gaussian(400, 64, seed=1))
    assert abs(unrelated["gap"]) < 0.03
    swapped = cosine_gap(torch.eye(20), -torch.eye(20))  # anti-aligned partners: the gap is negative, not its size
    assert swapped["gap"] == pytest.approx(-1.0)


def test_cosine_gap_by_concept_counts_every_same_concept_pair_as_matched():
    labels = torch.arange(20) // 5  # 4 concepts x 5 rows
    one_hot = torch.nn.functional.one_hot(labels, 4).float()
    by_concept = cosine_gap(one_hot, one_hot, labels)
    assert (by_concept["matched"], by_concept["mismatched"], by_concept["gap"]) == (1.0, 0.0, 1.0)
    by_row = cosine_gap(one_hot, one_hot)  # other rows of the same concept count as mismatched here
    assert by_row["mismatched"] == pytest.approx(4 * 5 * 4 / (20 * 19))


def test_centred_cosine_gap_removes_a_shared_offset_between_modalities():
    x = gaussian(300, 8)
    offset = torch.full((8,), 20.0)  # dominates every cosine until each modality's mean is removed
    assert cosine_gap(x + offset, x - offset)["gap"] < 0.05
    assert cosine_gap(x + offset, x - offset, centred=True)["gap"] == pytest.approx(
        cosine_gap(x - x.mean(0), x - x.mean(0))["gap"], abs=1e-5)
    assert cosine_gap(x + offset, x - offset, centred=True)["gap"] > 0.9


def test_cosine_gap_refuses_a_single_concept_and_unpaired_rows():
    with pytest.raises(ValueError, match="two different labels"):
        cosine_gap(gaussian(6, 3), gaussian(6, 3), [1] * 6)
    with pytest.raises(ValueError, match="labels for"):
        cosine_gap(gaussian(6, 3), gaussian(6, 3), [0, 1])
    with pytest.raises(ValueError, match="widths 3 and 4"):
        cosine_gap(gaussian(6, 3), gaussian(6, 4))


# Centroid gap


def test_centroid_gap_measures_a_shift_against_the_spread():
    x = gaussian(300, 5)
    shift = torch.tensor([3.0, 4.0, 0.0, 0.0, 0.0])
    gap = centroid_gap(x, x + shift)
    spread = float(((x - x.mean(0)) ** 2).sum(1).mean().sqrt())
    assert gap["distance"] == pytest.approx(5.0, rel=1e-5)
    assert gap["spread"] == pytest.approx(spread, rel=1e-5)
    assert gap["relative"] == pytest.approx(5.0 / spread, rel=1e-5)
    assert centroid_gap(x, x.flip(0))["distance"] == pytest.approx(0.0, abs=1e-5)  # rows need not be paired


def test_centroid_gap_refuses_different_widths_and_constant_embeddings():
    with pytest.raises(ValueError, match="one width"):
        centroid_gap(gaussian(5, 3), gaussian(5, 4))
    with pytest.raises(ValueError, match="zero spread"):
        centroid_gap(torch.ones(5, 3), torch.zeros(5, 3))


# Analogy accuracy


def offset_modalities(num_concepts=6, rows_per_concept=50, gap=6.0):
    """Two modalities sharing concept vectors but offset from each other by a large constant (a modality gap)."""
    labels = torch.arange(num_concepts).repeat_interleave(rows_per_concept)
    concepts = 3.0 * gaussian(num_concepts, 16, seed=1)
    direction = gap * torch.nn.functional.normalize(gaussian(16, seed=2), dim=0) * 4
    noise = 0.3 * gaussian(2, len(labels), 16, seed=3)
    return concepts[labels] + direction + noise[0], concepts[labels] - direction + noise[1], labels


def test_analogy_arithmetic_finds_the_target_concept_across_a_modality_gap():
    images, captions, labels = offset_modalities()
    result = analogy_accuracy(images, captions, labels)
    assert result["accuracy"] == 1.0 and result["queries"] == len(labels)
    assert result["chance"] == pytest.approx(50 / 299)
    # The sign of the change matters: adding a and subtracting b moves away from b.
    assert analogy_accuracy(images, -captions, labels)["accuracy"] < 0.2
    # Without a change the query stays at concept a, which is never the target: the target is another concept.
    assert analogy_accuracy(images, torch.zeros_like(captions), labels)["accuracy"] == 0.0


def test_offset_alone_queries_with_the_target_rows_offset_embedding():
    images, captions, labels = offset_modalities()
    # A caption modality equal to the images: caption(b) alone finds images of b.
    assert analogy_accuracy(images, images.clone(), labels)["offset_alone"] == 1.0
    # Captions that know nothing of the concepts: caption(b) alone lands on b only by chance.
    unrelated = analogy_accuracy(images, gaussian(len(labels), 16, seed=9), labels)
    assert abs(unrelated["offset_alone"] - unrelated["chance"]) < 0.06


def held_out_modalities(num_concepts=6, rows_per_concept=30, held_out=(4, 5)):
    """Images carry every concept; captions carry the concepts a model was trained on and only noise for the
    held-out ones (it never learned to place them)."""
    labels = torch.arange(num_concepts).repeat_interleave(rows_per_concept)
    concepts = 3.0 * gaussian(num_concepts, 16, seed=1)
    images = concepts[labels] + 0.3 * gaussian(len(labels), 16, seed=2)
    captions = concepts[labels] + 0.3 * gaussian(len(labels), 16, seed=3)
    unseen = torch.isin(labels, torch.tensor(held_out))
    captions[unseen] = 3.0 * gaussian(int(unseen.sum()), 16, seed=4)
    return images, captions, labels


def test_analogy_towards_held_out_targets_is_scored_apart_from_seen_ones():
    images, captions, labels = held_out_modalities()
    towards_held_out = analogy_accuracy(images, captions, labels, target_concepts=[4, 5])
    towards_seen = analogy_accuracy(images, captions, labels, target_concepts=[0, 1, 2, 3])
    everything = analogy_accuracy(images, captions, labels)
    assert towards_held_out["accuracy"] < 0.1 and towards_held_out["offset_alone"] < 0.2
    assert towards_seen["accuracy"] > 0.8  # sources of held-out concepts miss sometimes: their captions are noise
    assert towards_held_out["accuracy"] < everything["accuracy"] < towards_seen["accuracy"]
    # Every row aims somewhere: a held-out row at the other held-out concept, so the chance is 30 of 179 rows.
    assert towards_held_out["queries"] == towards_seen["queries"] == 180
    assert towards_held_out["chance"] == pytest.approx(30 / 179)
    # With one allowed concept, its own rows have nothing to aim at and make no query.
    assert analogy_accuracy(images, captions, labels, target_concepts=[5])["queries"] == 150
    with pytest.raises(ValueError, match="nothing to aim at"):
        analogy_accuracy(images, captions, labels, target_concepts=[9])


def test_landing_among_the_target_concepts_is_told_apart_from_naming_the_right_one():
    images, captions, labels = held_out_modalities()
    # A model that places the two held-out concepts at one point: its queries reach them but cannot tell them apart.
    unseen = labels >= 4
    centre = images[unseen].mean(0)
    images[unseen] = centre + 0.3 * gaussian(int(unseen.sum()), 16, seed=5)
    captions[unseen] = centre + 0.3 * gaussian(int(unseen.sum()), 16, seed=6)
    result = analogy_accuracy(images, captions, labels, target_concepts=[4, 5])
    assert result["in_targets"] > 0.9 and 0.3 < result["accuracy"] < 0.7
    # Each query searches the other 179 rows, 60 of them held out unless it is one of those itself.
    assert result["in_targets_chance"] == pytest.approx((180 * 60 - 60) / (180 * 179))
    assert "in_targets" not in analogy_accuracy(images, captions, labels)


def test_invariance_report_splits_the_analogies_by_held_out_and_seen_targets():
    images, captions, labels = held_out_modalities()
    report = invariance_report({"text": captions, "image": images}, labels, held_out=[4, 5])
    by_target = report["analogy_by_target"]
    assert set(by_target) == {"held_out", "seen"} and set(by_target["seen"]) == {"text−image", "image−text"}
    assert by_target["held_out"]["image−text"]["accuracy"] < 0.1 < 0.8 < by_target["seen"]["image−text"]["accuracy"]
    assert by_target["held_out"]["image−text"] == analogy_accuracy(images, captions, labels, target_concepts=[4, 5])
    assert report["analogy"]["image−text"] == analogy_accuracy(images, captions, labels)
    assert "analogy_by_target" not in invariance_report({"text": captions, "image": images}, labels)


def test_analogy_accuracy_of_unrelated_features_is_near_chance():
    labels = torch.arange(600) % 6
    result = analogy_accuracy(gaussian(600, 32, seed=0), gaussian(600, 32, seed=1), labels)
    assert abs(result["accuracy"] - result["chance"]) < 0.05


def test_analogy_chance_is_the_share_of_the_target_concept_among_the_other_rows():
    labels = [0, 0, 0, 1, 1]  # rows of concept 0 aim at concept 1 (2 of 4 other rows), and the reverse (3 of 4)
    result = analogy_accuracy(gaussian(5, 4), gaussian(5, 4, seed=1), labels)
    assert result["chance"] == pytest.approx((3 * 2 / 4 + 2 * 3 / 4) / 5)


def test_analogy_accuracy_refuses_one_concept_and_mixed_widths():
    with pytest.raises(ValueError, match="two concepts"):
        analogy_accuracy(gaussian(4, 3), gaussian(4, 3), [2, 2, 2, 2])
    with pytest.raises(ValueError, match="widths"):
        analogy_accuracy(gaussian(4, 3), gaussian(4, 5), [0, 1, 0, 1])


def test_invariance_report_of_identical_modalities_gives_every_measure_its_ideal():
    labels = torch.arange(40) % 8
    shared = gaussian(40, 16)
    report = invariance_report({"text": shared, "image": shared.clone(), "audio": shared @ rotation(16)}, labels)
    assert set(report["pairs"]) == {"text–image", "text–audio", "image–audio"}
    assert len(report["retrieval"]) == len(report["analogy"]) == 6
    pair = report["pairs"]["text–image"]
    assert pair["cka"] == pytest.approx(1.0) and pair["cka_shuffled"] < 0.9
    assert pair["centroid"]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert pair["cosine_rows"]["matched"] == pytest.approx(1.0)
    assert report["retrieval"]["text→image"]["R@1"] == 1.0
    assert report["pairs"]["text–audio"]["cka"] == pytest.approx(1.0)  # CKA ignores the rotation ...
    assert report["pairs"]["text–audio"]["cosine_rows"]["gap"] < 0.5  # ... the cosine in one space does not


# analyse_invariance on saved folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny model folder holding a second model as its `no_pairs` baseline, as the training recipe saves them."""
    root = tmp_path_factory.mktemp("d2v-invariance")
    save_tiny_model(root / "model", seed=1)
    save_tiny_model(root / "model" / "no_pairs", seed=2)
    save_tiny_model(root / "alone", seed=1)
    return root


@pytest.fixture(scope="module")
def scenes():
    return load_trimodal_dataset("scenes", num_train=30, num_test=30, image_size=IMAGE_SIZE)


def test_analysis_measures_the_model_and_its_baselines_and_writes_tables_and_figures(folders, scenes, tmp_path):
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    results = analyse_invariance(folders / "model", dataset=scenes, output_dir=tmp_path, max_rows=20)
    assert torch.equal(torch.rand(3), expected_draw), "seeding the random-init network moved the caller's RNG"
    assert results["no_pairs_folder"] == str(folders / "model" / "no_pairs")
    assert set(results["models"]) == {"trained", "random_init", "no_pairs"}
    for spaces in results["models"].values():
        assert set(spaces) == {"shared", "pooled"}
        assert len(spaces["shared"]["pairs"]) == 3 and len(spaces["pooled"]["retrieval"]) == 6
    trained, random_init = results["models"]["trained"]["shared"], results["models"]["random_init"]["shared"]
    assert trained["pairs"]["text–image"]["cka"] != random_init["pairs"]["text–image"]["cka"]
    assert results["rows"] == 20 and results["chance"]["retrieval"]["R@1"] == pytest.approx(1 / 20)
    assert json.loads((tmp_path / "invariance.json").read_text()) == json.loads(json.dumps(results))
    table = (tmp_path / "invariance.md").read_text()
    assert "| text→image |" in table and "| image−text |" in table and "linear CKA" in table
    assert "offset(b) alone" in table and "centred" in table
    for figure in ("embedding_space.png", "embedding_space_random_init.png", "embedding_space_no_pairs.png"):
        assert (tmp_path / figure).stat().st_size > 0


def test_a_model_given_as_its_own_baseline_measures_the_same(folders, scenes, tmp_path):
    results = analyse_invariance(folders / "alone", dataset=scenes["test"], no_pairs=folders / "alone",
                                 random_init=False, output_dir=tmp_path, max_rows=12)
    assert set(results["models"]) == {"trained", "no_pairs"}
    assert results["models"]["no_pairs"] == results["models"]["trained"]


def test_a_users_dataset_is_read_by_its_column_names_with_string_concepts(folders, scenes, tmp_path):
    rows = scenes["test"].select(range(12))
    names = rows.features["concept"].names
    user = datasets.Dataset.from_dict({
        "picture": rows["image"], "caption": rows["text"], "speech": rows["audio"],
        "label": [names[c] for c in rows["concept"]],
    }, features=datasets.Features({"picture": datasets.Image(), "caption": datasets.Value("string"),
                                   "speech": datasets.List(datasets.Value("float32")),
                                   "label": datasets.Value("string")}))
    datasets.DatasetDict({"train": user, "test": user}).save_to_disk(str(tmp_path / "data"))
    analysed, concept_names = held_out_rows(str(tmp_path / "data"), image_column="picture", text_column="caption",
                                            audio_column="speech", concept_column="label", sampling_rate=16000)
    assert concept_names == sorted(set(user["label"]))
    assert [concept_names[c] for c in analysed["concept"]] == user["label"]
    results = analyse_invariance(folders / "alone", dataset=str(tmp_path / "data"), output_dir=tmp_path / "out",
                                 image_column="picture", text_column="caption", audio_column="speech",
                                 concept_column="label", sampling_rate=16000)
    assert results["rows"] == 12 and results["concepts"] == len(set(user["label"]))


def test_the_concepts_a_run_held_out_are_read_from_its_results_and_scored_apart(folders, scenes, tmp_path):
    folder = save_tiny_model(tmp_path / "held-out", seed=1)
    (folder / "results.json").write_text(json.dumps({"held_out_concepts": ["red circle", "blue square"]}))
    results = analyse_invariance(folder, dataset=scenes, output_dir=tmp_path / "out", random_init=False)
    names = scenes["test"].features["concept"].names
    assert results["held_out_concepts"] == ["red circle", "blue square"]
    held_out = {names.index("red circle"), names.index("blue square")}
    shared = results["models"]["trained"]["shared"]
    assert set(shared["analogy_by_target"]) == {"held_out", "seen"}
    assert shared["analogy_by_target"]["held_out"]["image−text"] == invariance_report(
        *embedded(folder, scenes["test"]), held_out=held_out)["analogy_by_target"]["held_out"]["image−text"]
    test_labels = scenes["test"]["concept"]
    share = sum(c in held_out for c in test_labels) / 2 / (len(test_labels) - 1)  # one held-out concept per query
    assert results["chance"]["analogy_by_target"]["held_out"]["image−text"] == pytest.approx(share)
    table = (tmp_path / "out" / "invariance.md").read_text()
    assert "analogy towards held-out concepts" in table and "red circle, blue square" in table
    assert "trained, lands on any of them (chance)" in table
    assert "analogy towards seen concepts" in table
    # Given explicitly, [] turns the split off; names that the rows lack are refused.
    assert "analogy_by_target" not in analyse_invariance(folder, dataset=scenes, output_dir=tmp_path / "none",
                                                         random_init=False, held_out_concepts=[])["chance"]
    with pytest.raises(ValueError, match=r"\['pink circle'\] \(given\) are not among"):
        analyse_invariance(folder, dataset=scenes, random_init=False, held_out_concepts=["pink circle"])
    with pytest.raises(TypeError, match="list of concept names"):
        analyse_invariance(folder, dataset=scenes, random_init=False, held_out_concepts="red circle")


def embedded(folder, rows):
    """The trained model's shared-space embeddings of `rows` and their labels, as `analyse_invariance` takes them."""
    model, processor = load_model(folder)
    rows = rows.with_format("numpy", columns=["audio"], output_all_columns=True)
    return embed(model, processor, rows)["shared"], rows["concept"]


def test_the_command_explains_itself(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["analyse", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert stop.value.code == 0 and "--no_pairs" in out and "linear CKA" in out and "analogy accuracy" in out


def test_the_command_prints_the_tables_and_writes_next_to_the_folder(folders, capsys):
    main(["analyse", str(folders / "alone"), "--num_train_images", "30", "--num_test_images", "30", "--max_rows", "10"])
    out = capsys.readouterr().out
    assert "| text→image |" in out and "analogy" in out
    assert (folders / "alone" / "invariance" / "invariance.json").is_file()


def test_the_command_scores_the_held_out_concepts_it_is_given(folders, capsys, tmp_path):
    main(["analyse", str(folders / "alone"), "--num_train_images", "30", "--num_test_images", "30",
          "--held_out_concepts", "red circle, blue square", "--output_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "analogy towards held-out concepts**: targets b among the 2 concepts never trained on (red circle, blue " \
           "square)" in out and "analogy towards seen concepts" in out
    assert json.loads((tmp_path / "invariance.json").read_text())["held_out_concepts"] == ["red circle", "blue square"]


# Bad input


@pytest.mark.parametrize("arguments, message", [
    (["--image_column", "picture"], "--image_column does not apply to --dataset_name scenes"),
    (["--dataset_name", "my/set", "--num_test_images", "50"], "--num_test_images does not apply to --dataset_name my/set"),
])
def test_the_command_refuses_a_dataset_option_that_does_not_apply(folders, arguments, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["analyse", str(folders / "alone"), "--output_dir", str(tmp_path), *arguments])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "invariance.json").exists()


def test_a_missing_folder_is_a_one_line_command_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["analyse", str(tmp_path / "nowhere")])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("hf-mmdl analyse: error:") and "nowhere does not exist" in error
    with pytest.raises(FileNotFoundError, match="does not exist"):
        analyse_invariance(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        analyse_invariance(tmp_path / "empty")


def test_another_architectures_folder_is_refused_by_name(folders, tmp_path):
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / "config.json").write_text(json.dumps({"model_type": "m2_transformer"}))
    with pytest.raises(ValueError, match="'m2_transformer' model.*data2vec_multimodal"):
        analyse_invariance(tmp_path / "m2")
    with pytest.raises(ValueError, match="no-pairs model folder"):
        analyse_invariance(folders / "alone", no_pairs=tmp_path / "m2")


def test_a_dataset_without_the_needed_columns_is_refused(folders, scenes):
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['audio'\].*--audio_column"):
        analyse_invariance(folders / "alone", dataset=scenes["test"].remove_columns("audio"))
    with pytest.raises(ValueError, match="no 'validation' split"):
        analyse_invariance(folders / "alone", dataset=scenes, split="validation")
    with pytest.raises(ValueError, match="at least two concepts"):
        analyse_invariance(folders / "alone", dataset=scenes["test"].filter(lambda row: row["concept"] == 0))
