"""`hf-mmdl quickstart`: train, evaluate and show each registered architecture on built-in data.

Each architecture's declaration (`hf_mmdl.architectures`) gives the flags of its training recipe for the default
run (its measured duration on 2 CPU cores in `Quickstart.minutes`) and for `--full`; the run beats a baseline
measured in the same run, saves a `from_pretrained`-loadable folder and PNG figures under `output_dir`, and its
results table goes into SUMMARY.md.
"""

import time
from pathlib import Path

from .architectures import ARCHITECTURES, Architecture


def quickstart_settings(architecture: Architecture, output_dir: Path, full: bool = False, max_steps: int | None = None,
                        num_train_images: int | None = None) -> dict:
    """The recipe flags of one architecture's quickstart run, with the command line's overrides."""
    plan = architecture.quickstart
    settings = dict(plan.full_settings if full else plan.settings, output_dir=str(output_dir / architecture.name))
    if max_steps is not None:
        settings["max_steps"] = max_steps
        if "warmup_steps" in settings:
            settings["warmup_steps"] = min(settings["warmup_steps"], max_steps)
    if num_train_images is not None:
        settings["num_train_images"] = num_train_images
    return settings


def run_quickstart(names: list[str], output_dir: Path, full: bool = False, max_steps: int | None = None,
                   num_train_images: int | None = None) -> str:
    """Run the named architectures' quickstarts one after another; returns (and writes) SUMMARY.md."""
    output_dir.mkdir(parents=True, exist_ok=True)
    sections, started = [], time.perf_counter()
    for index, name in enumerate(names, start=1):
        architecture = ARCHITECTURES[name]
        print(f"\n=== hf-mmdl quickstart {index}/{len(names)}: {architecture.title} "
              f"({time.perf_counter() - started:.0f} s elapsed) ===", flush=True)
        recipe, begun = architecture.load_recipe(), time.perf_counter()
        settings = quickstart_settings(architecture, output_dir, full, max_steps, num_train_images)
        results = recipe.run_from_dict(settings)
        folder = Path(settings["output_dir"])
        sections.append(
            f"## {architecture.title}: {architecture.quickstart.summary}\n\n"
            f"{results['num_parameters'] / 1e6:.2f}M parameters, {results['train_runtime_s']:.0f} s of training, "
            f"{time.perf_counter() - begun:.0f} s in all.\n\n{recipe.results_table(results)}\n\n"
            f"Saved to {folder} (`from_pretrained`); figures: "
            + ", ".join(str(folder / figure) for figure in architecture.quickstart.figures) + "\n"
        )
    summary = (f"# hf-mmdl quickstart{' --full' if full else ''}\n\n{len(names)} architecture(s) in "
               f"{time.perf_counter() - started:.0f} s.\n\n" + "\n".join(sections))
    (output_dir / "SUMMARY.md").write_text(summary)
    return summary


__all__ = ["quickstart_settings", "run_quickstart"]
