"""Design and size study of data2vec-multimodal: which blocks to share, whether top fusion blocks help, whether one
model of text, images and audio matches a unimodal model of the same size, and what width and depth buy.

Every run is one `hf-mmdl train data2vec_multimodal` run (the recipe's public API) on the same data, seed and step
budget; only the design flags differ:

- design runs at the reference size (`--design_size`, default the `small` preset's 64x4):
  shared attention + modality-expert FFNs (`experts`), fully shared blocks (`shared`), separate per-modality
  blocks (`separate`), experts with top fusion blocks (`experts+fusion`), experts without paired batches
  (`experts, no pairs`), and a unimodal data2vec per modality (the same model trained and measured on that
  modality alone: `--modality_ratios text=1 --paired_fraction 0`, ...);
- a size sweep of the `experts` design over `--sizes` (width x depth; FFN 4 x width, one head per 16 channels).

On the built-in scenes by default (no download), or on any datasets set with image, text, audio and concept columns:

    OMP_NUM_THREADS=1 python examples/study_multimodal.py --output_dir outputs/study-multimodal
    python examples/study_multimodal.py --max_steps 250 --num_train_images 600 --num_test_images 300
    python examples/study_multimodal.py --dataset_name user/set --audio_column speech --max_steps 2000
    python examples/study_multimodal.py --quick   # tiny models, whole study in about a minute (tests)

Flags other than the study's own (below) go to every run unchanged (`--dataset_name`, `--image_size`,
`--per_device_train_batch_size`, `--learning_rate`, ...: see `hf-mmdl train data2vec_multimodal --help`); the flags
that tell the runs apart are the study's to set and are refused. Writes `study.md` (the table), `study.json`
(every number), `quality_vs_parameters.png`, `quality_vs_training_time.png` and each run's saved model and
`results.json` under `--output_dir/runs/<run>`.
"""

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hf_mmdl.modeling.configuration_data2vec_multimodal import MODALITIES
from hf_mmdl.training.data2vec_multimodal import (
    DATA2VEC_MULTIMODAL_RECIPE, SCENE_FLAGS, Data2VecDataArguments, parse_ratios, trained_modalities,
)

logger = logging.getLogger("study_multimodal")

# The flags the study sets per run: a user's value would silently make the runs differ in more than their design.
STUDY_SET_FLAGS = ("output_dir", "max_steps", "model_size", "block_sharing", "num_fusion_layers", "modality_ratios",
                   "paired_fraction", "no_pairs_baseline", "random_init_baseline", "hidden_size",
                   "num_hidden_layers", "num_attention_heads", "intermediate_size", "model_name_or_path", "seed")
QUICK_DATA = ["--num_train_images", "60", "--num_test_images", "30", "--image_size", "24", "--vocab_size", "300",
              "--per_device_train_batch_size", "8"]


@dataclass
class Run:
    """One training run of the study: its name, the group it belongs to ("design", "unimodal" or "size") and the
    recipe flags that make it what it is."""

    name: str
    group: str
    flags: dict = field(default_factory=dict)
    width: int = 64
    depth: int = 4

    @property
    def modalities(self) -> tuple[str, ...]:
        """What the recipe trains and measures for these flags."""
        ratios = parse_ratios(self.flags.get("modality_ratios", Data2VecDataArguments.modality_ratios))
        paired_fraction = float(self.flags.get("paired_fraction", Data2VecDataArguments.paired_fraction))
        return trained_modalities(ratios, paired_fraction)


def flag_value(argv: list[str], name: str, default: str) -> str:
    """The value of `--name value` or `--name=value` in `argv` (the last one given), else `default`."""
    value = default
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"--{name}="):
            value = arg.partition("=")[2]
    return value


def parse_size(text: str) -> tuple[int, int]:
    """'64x4' → (width 64, depth 4); anything else raises ValueError naming the expected form."""
    width, sep, depth = text.strip().partition("x")
    try:
        size = int(width), int(depth)
    except ValueError:
        size = None
    if not sep or size is None or min(size) < 1 or size[0] % 16 and size[0] > 16:
        raise ValueError(f"A size is WIDTHxDEPTH with a width of at most 16 or a multiple of 16 (one attention head "
                         f"per 16 channels) and a positive depth, e.g. 64x4; got {text!r}.")
    return size


def size_flags(width: int, depth: int) -> dict:
    """The recipe's block flags for a width and depth: FFN 4 x width, one head per 16 channels (the `small` preset's
    proportions: 64x4 reproduces it)."""
    return {"hidden_size": width, "num_hidden_layers": depth, "num_attention_heads": max(1, width // 16),
            "intermediate_size": 4 * width}


def plan(design_size: tuple[int, int], sizes: list[tuple[int, int]], fusion_layers: int) -> list[Run]:
    """The study's runs, in order. The size sweep reuses the `experts` design run at the reference size."""
    width, depth = design_size

    def run(name, group, w=width, d=depth, **flags):
        return Run(name, group, {"block_sharing": "experts", **flags, **size_flags(w, d)}, w, d)

    runs = [run("experts", "design", random_init_baseline=True),
            run("shared", "design", block_sharing="shared"),
            run("separate", "design", block_sharing="separate"),
            run("experts+fusion", "design", num_fusion_layers=fusion_layers),
            run("experts, no pairs", "design", paired_fraction=0)]
    runs += [run(f"unimodal {m}", "unimodal", modality_ratios=f"{m}=1", paired_fraction=0) for m in MODALITIES]
    runs += [run(f"experts {w}x{d}", "size", w, d) for w, d in sizes if (w, d) != design_size]
    return runs


def run_flags(run: Run, shared: list[str], steps: int, out: Path) -> list[str]:
    flags = {"output_dir": out / "runs" / run.name.replace(" ", "_").replace(",", "").replace("+", "_"),
             "max_steps": steps, "no_pairs_baseline": "false", "random_init_baseline": "false", **run.flags}
    return [*shared, *(item for name, value in flags.items() for item in (f"--{name}", str(value)))]


def row_of(run: Run, results: dict) -> dict:
    """The study's numbers of one run: size, speed, per-modality probes of the modalities it trained, R@1."""
    trained = results["trained"]
    retrieval = {direction: scores["R@1"] for direction, scores in trained["retrieval"].items()}
    pair = [retrieval[d] for d in ("text→image", "image→text") if d in retrieval]
    return {
        "run": run.name, "group": run.group, "block_sharing": results["block_sharing"],
        "num_fusion_layers": results["num_fusion_layers"], "width": results["hidden_size"],
        "depth": results["num_hidden_layers"], "modalities": results["modalities"],
        "parameters": results["num_parameters"], "train_steps_per_second": results["train_steps_per_second"],
        "train_runtime_s": results["train_runtime_s"],
        "probe": trained["probe"], "nearest_neighbour": trained["nearest_neighbour"],
        "retrieval_R@1": retrieval,
        "R@1_text_image": sum(pair) / len(pair) if pair else None,
        "R@1_mean": sum(retrieval.values()) / len(retrieval) if retrieval else None,
    }


def percent(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def study_table(study: dict) -> str:
    """Markdown: one row per run (— where a run does not measure that modality or pair), then the random-init
    network of the reference run and retrieval chance."""
    header = ["run", "blocks", "width×depth", "parameters", "steps/s", "train s",
              *(f"probe {m}" for m in MODALITIES), *(f"1-NN {m}" for m in MODALITIES), "R@1 text↔image",
              "R@1 mean of 6"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in study["runs"]:
        blocks = row["block_sharing"] + (f" + {row['num_fusion_layers']} fusion" if row["num_fusion_layers"] else "")
        lines.append("| " + " | ".join([
            row["run"], blocks, f"{row['width']}×{row['depth']}", f"{row['parameters'] / 1e6:.2f}M",
            f"{row['train_steps_per_second']:.2f}", f"{row['train_runtime_s']:.0f}",
            *(percent(row["probe"].get(m)) for m in MODALITIES),
            *(percent(row["nearest_neighbour"].get(m)) for m in MODALITIES),
            percent(row["R@1_text_image"]), percent(row["R@1_mean"])]) + " |")
    random_init = study.get("random_init")
    if random_init:
        lines.append("| " + " | ".join([
            f"random init ({random_init['run']})", "", "", "", "", "",
            *(percent(random_init["probe"].get(m)) for m in MODALITIES),
            *(percent(random_init["nearest_neighbour"].get(m)) for m in MODALITIES),
            percent(random_init["R@1_text_image"]), percent(random_init["R@1_mean"])]) + " |")
    chance = study["chance_R@1"]
    lines.append("| chance | " + " | " * 11 + f"{chance:.1%} | {chance:.1%} |")
    return "\n".join(lines)


def plot(study: dict, out: Path) -> list[Path]:
    """Two PNGs of 2 x 2 panels (one per modality: linear probe and 1-NN; one for retrieval R@1), each with the
    random-init network's score (dotted) where the study measured it: the size sweep's quality against parameters,
    and every run's quality against its training time (each run only in the panels of the modalities it measures)."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("The study's plots need matplotlib: pip install matplotlib (or the package's `data` "
                          "extra).") from None
    random_init = study.get("random_init")
    panels = [*((m, [("probe", "linear probe"), ("nearest_neighbour", "1-NN")]) for m in MODALITIES),
              ("cross-modal retrieval", [("R@1_mean", "R@1, mean of 6 directions"),
                                         ("R@1_text_image", "R@1 text↔image")])]

    def value(row: dict, modality: str, measure: str):
        return row[measure] if modality not in MODALITIES else row[measure].get(modality)

    def decorate(axis, modality: str, x_label: str):
        if random_init:
            for i, (measure, _) in enumerate(dict(panels)[modality]):
                if value(random_init, modality, measure) is not None:
                    axis.axhline(value(random_init, modality, measure), color=f"C{i}", linestyle=":", linewidth=1)
        if modality not in MODALITIES:
            axis.axhline(study["chance_R@1"], color="grey", linestyle="--", linewidth=1, label="chance")
        axis.set(title=modality, xlabel=x_label, ylabel="held-out score")
        axis.legend(fontsize=7)

    note = (f"{study['test_rows']} held-out rows of {study['dataset']}, {study['settings']['max_steps']} steps per run"
            + (f"; dotted: random init ({random_init['run']})" if random_init else ""))
    sweep = sorted((r for r in study["runs"] if r["group"] == "size" or r["run"] == "experts"),
                   key=lambda r: r["parameters"])
    paths = []
    figure, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for axis, (modality, measures) in zip(axes.flat, panels):
        for i, (measure, label) in enumerate(measures):
            axis.plot([r["parameters"] for r in sweep], [value(r, modality, measure) for r in sweep], marker="o",
                      color=f"C{i}", label=label)
        for r in sweep:
            axis.annotate(f"{r['width']}×{r['depth']}", (r["parameters"], value(r, modality, measures[0][0])),
                          textcoords="offset points", xytext=(3, 3), fontsize=7)
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # 3×10⁵, 4×10⁵, ... overlap
        decorate(axis, modality, "parameters")
    figure.suptitle(f"data2vec-multimodal, shared attention + modality experts: quality against size\n{note}",
                    fontsize=10)
    figure.tight_layout()
    paths.append(out / "quality_vs_parameters.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)

    markers = {"design": "o", "unimodal": "s", "size": "^"}
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for axis, (modality, measures) in zip(axes.flat, panels):
        for r in study["runs"]:
            if value(r, modality, measures[0][0]) is None:
                continue
            for i, (measure, _) in enumerate(measures):
                axis.scatter(r["train_runtime_s"], value(r, modality, measure), marker=markers[r["group"]],
                             color=f"C{i}")
            axis.annotate(r["run"], (r["train_runtime_s"], value(r, modality, measures[0][0])),
                          textcoords="offset points", xytext=(3, 3), fontsize=6)
        for i, (_, label) in enumerate(measures):
            axis.scatter([], [], color=f"C{i}", label=label)
        decorate(axis, modality, "training time (s)")
    figure.suptitle("data2vec-multimodal designs and sizes: quality against training time "
                    f"(o design, □ unimodal, △ size sweep)\n{note}", fontsize=10)
    figure.tight_layout()
    paths.append(out / "quality_vs_training_time.png")
    figure.savefig(paths[-1], dpi=110)
    plt.close(figure)
    return paths


def parser() -> argparse.ArgumentParser:
    study = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [study options] [any `hf-mmdl train data2vec_multimodal` flag but the ones the study sets]")
    study.add_argument("--output_dir", default="outputs/study-multimodal", help="Where the table, JSON, plots and "
                       "runs go.")
    study.add_argument("--max_steps", type=int, default=None,
                       help="Optimizer steps of every run (default 250; 12 with --quick).")
    study.add_argument("--design_size", default=None, help="WIDTHxDEPTH of the design and unimodal runs "
                       "(default 64x4, the small preset; 32x2 with --quick).")
    study.add_argument("--sizes", default=None, help="Comma-separated WIDTHxDEPTH of the size sweep of the experts "
                       "design (default 32x2,64x4,128x4; 16x1,32x2,48x3 with --quick).")
    study.add_argument("--fusion_layers", type=int, default=1, help="Fusion blocks of the experts+fusion run.")
    study.add_argument("--seed", type=int, default=0, help="Seed of every run (model initialisation, batches).")
    study.add_argument("--quick", action="store_true", help="Tiny models on 60 training rows: the whole study in "
                       "about a minute on one core (tests, smoke checks); data flags given still win.")
    return study


def main(argv: list[str] | None = None) -> dict:
    """Run the study; returns what `study.json` holds. Raises ValueError for a flag the study sets per run, a bad
    size, or a recipe flag the recipe refuses (checked before the first run)."""
    options, shared = parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    given = {arg[2:].partition("=")[0] for arg in shared if arg.startswith("--")}
    clash = sorted(given & set(STUDY_SET_FLAGS))
    if clash:
        raise ValueError(f"--{', --'.join(clash)} tell the study's runs apart, so the study sets them: use "
                         "--max_steps, --design_size, --sizes, --fusion_layers and --seed instead.")
    if options.fusion_layers < 1:
        raise ValueError(f"--fusion_layers must be at least 1 (the run without fusion is `experts`), got "
                         f"{options.fusion_layers}.")
    steps = options.max_steps if options.max_steps is not None else 12 if options.quick else 250
    if steps < 1:
        raise ValueError(f"--max_steps must be positive, got {steps}.")
    design_size = parse_size(options.design_size or ("32x2" if options.quick else "64x4"))
    sizes = [parse_size(s) for s in (options.sizes or ("16x1,32x2,48x3" if options.quick else "32x2,64x4,128x4"))
             .split(",")]
    if len(sizes) < 3 or len(set(sizes)) != len(sizes) or design_size not in sizes:
        raise ValueError(f"--sizes needs at least three different WIDTHxDEPTH, one of them --design_size "
                         f"{design_size[0]}x{design_size[1]}; got {options.sizes!r}.")
    # --quick's small data and batches, except where the user gave their own; the scenes' sizes only for the scenes
    # (a user dataset's splits decide its rows, and the recipe refuses them there).
    dataset_name = flag_value(shared, "dataset_name", Data2VecDataArguments.dataset_name)
    skip = given | (set() if dataset_name == "scenes" else set(SCENE_FLAGS))
    quick = [item for i in range(0, len(QUICK_DATA), 2) if QUICK_DATA[i][2:] not in skip
             for item in QUICK_DATA[i:i + 2]] if options.quick else []
    shared = [*(["--model_size", "tiny"] if options.quick else []), "--seed", str(options.seed),
              "--disable_tqdm", "true", "--logging_steps", str(max(1, steps // 5)), *quick, *shared]
    out = Path(options.output_dir)
    runs = plan(design_size, sizes, options.fusion_layers)
    for run in runs:  # every run's flags through the recipe's parser before hours of training
        DATA2VEC_MULTIMODAL_RECIPE.parse(run_flags(run, shared, steps, out))
    study = {"settings": {"max_steps": steps, "seed": options.seed, "design_size": list(design_size),
                          "sizes": [list(s) for s in sizes], "fusion_layers": options.fusion_layers,
                          "shared_flags": shared}, "runs_planned": [run.name for run in runs], "runs": [],
             "complete": False}
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for index, run in enumerate(runs, 1):
        print(f"[study] run {index} of {len(runs)}: {run.name} ({run.width}x{run.depth}, "
              f"{'/'.join(run.modalities)}) — {time.perf_counter() - started:.0f} s so far", flush=True)
        arguments, given_flags = DATA2VEC_MULTIMODAL_RECIPE.parse(run_flags(run, shared, steps, out))
        results = DATA2VEC_MULTIMODAL_RECIPE.run(*arguments, given=given_flags)
        row = row_of(run, results)
        study["runs"].append(row)
        if "random_init" in results:
            report = results["random_init"]
            study["random_init"] = (row_of(run, results | {"trained": report})
                                    | {"run": f"{run.name} {run.width}x{run.depth}"})
        study["chance_R@1"] = results["chance"]["R@1"]
        study["dataset"], study["train_rows"], study["test_rows"] = (results["dataset"], results["train_rows"],
                                                                     results["test_rows"])
        # After every run, so that an interrupted study keeps what it measured ("complete": false says so).
        (out / "study.json").write_text(json.dumps(study, indent=2))
        print(f"[study] run {index} of {len(runs)} done: {row['parameters'] / 1e6:.2f}M parameters, "
              f"{row['train_steps_per_second']:.2f} steps/s, probe "
              + ", ".join(f"{m} {v:.1%}" for m, v in row["probe"].items())
              + (f", R@1 mean {row['R@1_mean']:.1%}" if row["R@1_mean"] is not None else ""), flush=True)
    study["total_time_s"], study["complete"] = time.perf_counter() - started, True
    table = study_table(study)
    (out / "study.md").write_text(
        f"{study['test_rows']} held-out rows of {study['dataset']} ({study['train_rows']} training rows), "
        f"{steps} steps per run, seed {options.seed}.\n\n{table}\n")
    (out / "study.json").write_text(json.dumps(study, indent=2))
    figures = plot(study, out)
    print(table)
    print(f"[study] {len(runs)} runs in {study['total_time_s']:.0f} s; saved study.md, study.json, "
          + ", ".join(f.name for f in figures) + f" to {out}")
    return study


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (ValueError, TypeError) as error:
        sys.exit(f"study_multimodal: {error}")
