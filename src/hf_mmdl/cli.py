"""The `hf-mmdl` command."""

import argparse
import logging
from pathlib import Path

from .quickstart import QUICKSTARTS


def quickstart(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in args.architectures:
        print(f"\n=== hf-mmdl quickstart: {name} ===", flush=True)
        sections.append(QUICKSTARTS[name](output_dir, max_steps=args.max_steps, num_train_images=args.num_train_images))
    summary = "# hf-mmdl quickstart\n\n" + "\n".join(sections)
    (output_dir / "SUMMARY.md").write_text(summary)
    print("\n" + summary)
    print(f"Summary written to {output_dir / 'SUMMARY.md'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-mmdl", description="Multimodal architectures as HuggingFace models.")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "quickstart", help="Train, evaluate and show each architecture on built-in data (CPU, minutes, no download)."
    )
    start.add_argument("--architectures", nargs="+", choices=sorted(QUICKSTARTS), default=list(QUICKSTARTS))
    start.add_argument("--output-dir", default="hf_mmdl_quickstart", help="Where models, figures and SUMMARY.md go.")
    start.add_argument("--max-steps", type=int, default=None, help="Override each architecture's training steps.")
    start.add_argument("--num-train-images", type=int, default=None, help="Override the built-in training set size.")
    start.set_defaults(handler=quickstart)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
