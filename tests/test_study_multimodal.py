"""The design and size study of data2vec-multimodal (`examples/study_multimodal.py`): the whole study at its
`--quick` size (tiny models, 60 rows; well under 90 s on one core), its table and JSON, the recipe flags it is built
on (width and depth, the skipped baselines, unimodal runs measured on their modality only), and its refusals."""

import importlib.util
import json
from pathlib import Path

import datasets
import pytest
from transformers import AutoConfig

from hf_mmdl.cli import main as hf_mmdl_main
from hf_mmdl.data.trimodal import load_trimodal_dataset

from hf_mmdl.modeling.configuration_data2vec_multimodal import MODALITIES, data2vec_multimodal_config_for
from hf_mmdl.training.data2vec_multimodal import DATA2VEC_MULTIMODAL_RECIPE

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "study_multimodal.py"
spec = importlib.util.spec_from_file_location("study_multimodal", SCRIPT)
study_multimodal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study_multimodal)

DESIGN = ["experts", "shared", "separate", "experts+fusion", "experts, no pairs"]
UNIMODAL = [f"unimodal {m}" for m in MODALITIES]
SWEEP = ["experts 16x1", "experts 48x3"]  # with the design runs' 32x2 between them
COLUMNS = ["run", "blocks", "width×depth", "parameters", "steps/s", "train s", "probe text", "probe image",
           "probe audio", "1-NN text", "1-NN image", "1-NN audio", "R@1 text↔image", "R@1 mean of 6"]


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    study = study_multimodal.main(["--quick", "--output_dir", str(out)])
    return study, out


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_the_quick_study_has_every_run_and_column(quick_study):
    study, out = quick_study
    assert [r["run"] for r in study["runs"]] == DESIGN + UNIMODAL + SWEEP
    assert study["complete"] and json.loads((out / "study.json").read_text()) == json.loads(json.dumps(study))
    lines = (out / "study.md").read_text().strip().splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert cells(table[0]) == COLUMNS
    body = [cells(line) for line in table[2:]]
    assert [row[0] for row in body] == DESIGN + UNIMODAL + SWEEP + ["random init (experts 32x2)", "chance"]
    assert all(len(row) == len(COLUMNS) for row in body)
    for figure in ("quality_vs_parameters.png", "quality_vs_training_time.png"):
        assert (out / figure).stat().st_size > 5000


def test_each_run_trained_the_model_its_row_names(quick_study):
    study, out = quick_study
    rows = {r["run"]: r for r in study["runs"]}
    for name, row in rows.items():
        folder = out / "runs" / name.replace(" ", "_").replace(",", "").replace("+", "_")
        config = AutoConfig.from_pretrained(folder)
        assert (config.block_sharing, config.num_fusion_layers, config.hidden_size, config.num_hidden_layers) == (
            row["block_sharing"], row["num_fusion_layers"], row["width"], row["depth"]), name
        assert json.loads((folder / "results.json").read_text())["num_parameters"] == row["parameters"]
    assert [rows[n]["block_sharing"] for n in DESIGN[:3]] == ["experts", "shared", "separate"]
    assert rows["experts+fusion"]["num_fusion_layers"] == 1 and rows["experts"]["num_fusion_layers"] == 0
    # Same model, other data: the no-pairs and unimodal runs have the experts run's parameters exactly.
    same_model = ["experts", "experts, no pairs", *UNIMODAL]
    assert {rows[n]["parameters"] for n in same_model} == {rows["experts"]["parameters"]}
    # One FFN for all < one per modality < attention per modality too; fusion blocks add parameters.
    assert rows["shared"]["parameters"] < rows["experts"]["parameters"] < rows["separate"]["parameters"]
    assert rows["experts+fusion"]["parameters"] > rows["experts"]["parameters"]


def test_parameters_grow_along_the_size_sweep(quick_study):
    study, _ = quick_study
    sweep = [r for r in study["runs"] if r["run"] in ("experts 16x1", "experts", "experts 48x3")]
    assert [(r["width"], r["depth"]) for r in sweep] == [(32, 2), (16, 1), (48, 3)]
    by_size = sorted(sweep, key=lambda r: r["width"])
    assert by_size[0]["parameters"] < by_size[1]["parameters"] < by_size[2]["parameters"]


def test_unimodal_runs_report_only_their_modality(quick_study):
    study, out = quick_study
    rows = {r["run"]: r for r in study["runs"]}
    table = {cells(line)[0]: cells(line) for line in (out / "study.md").read_text().splitlines()
             if line.startswith("| ")}
    for m in MODALITIES:
        row = rows[f"unimodal {m}"]
        assert row["modalities"] == [m]
        assert set(row["probe"]) == set(row["nearest_neighbour"]) == {m}
        assert row["retrieval_R@1"] == {} and row["R@1_mean"] is None and row["R@1_text_image"] is None
        line = table[f"unimodal {m}"]
        for other in MODALITIES:
            for measure in ("probe", "1-NN"):
                cell = line[COLUMNS.index(f"{measure} {other}")]
                assert (cell == "—") == (other != m), (m, measure, other, cell)
        assert line[-2:] == ["—", "—"]
    for name in DESIGN + SWEEP:
        assert set(rows[name]["probe"]) == set(MODALITIES) and len(rows[name]["retrieval_R@1"]) == 6


def test_the_numbers_agree_with_each_other(quick_study):
    study, _ = quick_study
    steps = study["settings"]["max_steps"]
    assert steps == 12
    for row in study["runs"]:
        # Trainer's steps/s is steps / runtime, both rounded: they must tell the same story.
        assert row["train_steps_per_second"] == pytest.approx(steps / row["train_runtime_s"], rel=0.05), row["run"]
        scores = [*row["probe"].values(), *row["nearest_neighbour"].values(), *row["retrieval_R@1"].values()]
        assert all(0 <= s <= 1 for s in scores)
        if row["retrieval_R@1"]:
            r1 = row["retrieval_R@1"]
            assert row["R@1_mean"] == pytest.approx(sum(r1.values()) / 6)
            assert row["R@1_text_image"] == pytest.approx((r1["text→image"] + r1["image→text"]) / 2)
    assert study["chance_R@1"] == pytest.approx(1 / study["test_rows"])
    assert set(study["random_init"]["probe"]) == set(MODALITIES)


@pytest.mark.parametrize("argv, message", [
    (["--block_sharing", "shared"], "block_sharing"),
    (["--hidden_size=64"], "hidden_size"),
    (["--sizes", "64"], "WIDTHxDEPTH"),
    (["--sizes", "16x1,32x0,48x3"], "WIDTHxDEPTH"),
    (["--sizes", "40x2,32x2,48x3"], "multiple of 16"),
    (["--sizes", "16x1,48x3"], "at least three"),
    (["--sizes", "16x1,48x3,64x4"], "design_size"),
    (["--fusion_layers", "0"], "fusion_layers"),
    (["--max_steps", "-3"], "max_steps"),
])
def test_bad_study_flags_are_refused_before_any_run(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        study_multimodal.main(["--quick", "--output_dir", str(tmp_path), *argv])
    assert not (tmp_path / "runs").exists()


def test_width_and_depth_replace_the_presets_blocks():
    config = data2vec_multimodal_config_for("small", vocab_size=100, mask_token_id=4, hidden_size=96,
                                            num_hidden_layers=3, num_attention_heads=6, intermediate_size=384)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        96, 3, 6, 384)
    assert config.text_config.hidden_size == config.vision_config.hidden_size == config.audio_config.hidden_size == 96
    assert config.projection_dim == 96 and config.top_k_layers == {m: 2 for m in MODALITIES}
    assert 96 % config.audio_config.num_conv_pos_embedding_groups == 0
    assert data2vec_multimodal_config_for("small", vocab_size=100, mask_token_id=4).audio_config \
        .num_conv_pos_embedding_groups == 16  # the preset itself is unchanged
    for bad in ({"hidden_size": 0}, {"num_hidden_layers": 2.5}, {"intermediate_size": True}):
        with pytest.raises(ValueError, match="positive integers"):
            data2vec_multimodal_config_for("small", vocab_size=100, mask_token_id=4, **bad)


def test_fresh_model_flags_next_to_a_saved_model_are_refused(tmp_path):
    arguments, given = DATA2VEC_MULTIMODAL_RECIPE.parse(
        ["--model_name_or_path", str(tmp_path), "--num_hidden_layers", "6", "--output_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="--num_hidden_layers shape a fresh model"):
        DATA2VEC_MULTIMODAL_RECIPE.run(*arguments, given=given)


def test_a_unimodal_runs_own_table_shows_its_modality_without_baselines_or_retrieval(quick_study):
    _, out = quick_study
    results = json.loads((out / "runs" / "unimodal_audio" / "results.json").read_text())
    assert results["modalities"] == ["audio"] and "random_init" not in results and "no_pairs" not in results
    table = DATA2VEC_MULTIMODAL_RECIPE.results_table(results)
    assert table.splitlines()[2].startswith("| audio | ") and table.splitlines()[2].count("—") == 2
    assert len(table.splitlines()) == 3 and "retrieval" not in table


def save_user_trimodal_dataset(folder: Path) -> Path:
    """60 training and 30 test scenes as a user would save them: their own column names, concept names as strings
    and audio as {"array", "sampling_rate"} dicts."""
    scenes = load_trimodal_dataset("scenes", num_train=60, num_test=30, image_size=24)

    def user(rows):
        names = rows.features["concept"].names
        return datasets.Dataset.from_dict({
            "picture": rows["image"], "caption": rows["text"],
            "speech": [{"array": clip, "sampling_rate": 16000} for clip in rows["audio"]],
            "label": [names[c] for c in rows["concept"]]})

    datasets.DatasetDict({"train": user(scenes["train"]), "test": user(scenes["test"])}).save_to_disk(str(folder))
    return folder


def test_a_users_dataset_saved_to_disk_runs_through_the_study_and_the_analysis_command(tmp_path, capsys):
    data = save_user_trimodal_dataset(tmp_path / "data")
    columns = ["--dataset_name", str(data), "--image_column", "picture", "--text_column", "caption",
               "--audio_column", "speech", "--concept_column", "label"]
    # --quick's scene sizes stay out (the user's splits decide the rows); string concepts are read as class ids.
    study = study_multimodal.main(["--quick", "--max_steps", "2", "--output_dir", str(tmp_path / "study"), *columns,
                                   "--held_out_concepts", "red circle"])
    assert study["complete"] and study["dataset"] == str(data)
    assert (study["train_rows"], study["test_rows"]) == (58, 30)
    assert [r["run"] for r in study["runs"]] == DESIGN + UNIMODAL + SWEEP
    run = tmp_path / "study" / "runs" / "experts"
    assert json.loads((run / "results.json").read_text())["held_out_concepts"] == ["red circle"]
    hf_mmdl_main(["analyse", str(run), *columns, "--output_dir", str(tmp_path / "analysis")])
    out = capsys.readouterr().out
    assert "| text→image |" in out and "(red circle)" in out and "analogy towards seen concepts" in out
    results = json.loads((tmp_path / "analysis" / "invariance.json").read_text())
    assert (results["rows"], results["concepts"], results["held_out_concepts"]) == (30, 30, ["red circle"])
