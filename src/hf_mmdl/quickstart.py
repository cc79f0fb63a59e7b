"""`hf-mmdl quickstart`: train, evaluate and show each architecture on built-in data.

Each architecture adds one function to `QUICKSTARTS`; it trains a small model on built-in data, compares it with a
baseline measured in the same run, saves a `from_pretrained`-loadable folder and PNG figures under `output_dir`, and
returns a short markdown summary.
"""

from collections.abc import Callable
from pathlib import Path


def m2_quickstart(output_dir: Path, max_steps: int | None = None, num_train_images: int | None = None) -> str:
    """M² captioner on the built-in scenes: cross-entropy training, then test CIDEr-D against the best constant
    caption and nearest-neighbour retrieval on raw pixels."""
    from .training.captioning import (
        CaptioningDataArguments,
        CaptioningModelArguments,
        CaptioningTrainingArguments,
        results_table,
        run_captioning,
    )

    data_args = CaptioningDataArguments(num_train_images=num_train_images or 4000, num_eval_images=250)
    training_args = CaptioningTrainingArguments(
        output_dir=str(output_dir / "m2"),
        max_steps=max_steps or 1200,
        warmup_steps=min(500, max_steps or 500),
        eval_strategy="no",
        save_strategy="no",
        logging_steps=100,
        seed=1234,
    )
    results = run_captioning(CaptioningModelArguments(model_size="small"), data_args, training_args)
    return (
        f"## M² meshed-memory captioner ({results['num_parameters'] / 1e6:.2f}M parameters, "
        f"{results['train_runtime_s']:.0f} s of training)\n\n{results_table(results)}\n\n"
        f"Model and processor: {output_dir / 'm2'} (AutoModelForImageTextToText / AutoProcessor); "
        f"figure: {output_dir / 'm2' / 'test_captions.png'}\n"
    )


QUICKSTARTS: dict[str, Callable[..., str]] = {"m2": m2_quickstart}
