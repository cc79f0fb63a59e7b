"""The `hf-mmdl` command. Its sub-commands come from the architecture declarations (`hf_mmdl.architectures`):
`train NAME` runs an architecture's training recipe, `convert NAME` its checkpoint converter, `quickstart` their
quickstart runs, `push` a saved folder with its model card, `demo` the architecture's Gradio demo for a folder,
`analyse` the modality invariance of a trained data2vec-multimodal folder.

Flags are spelled with underscores, as the training recipes' (transformers') flags are; the hyphenated spelling is
accepted too (`--output-dir`).

A user error (a bad flag value, a missing file or folder: ValueError or FileNotFoundError) prints one line naming
the command and what was wrong, and exits with status 2 as argparse does for a bad flag; any other exception is a
fault in the package and keeps its traceback.
"""

import argparse
import logging
import sys
from pathlib import Path

from .architectures import ARCHITECTURES, resolve


def flag(name: str) -> tuple[str, ...]:
    """`--output_dir` and its alias `--output-dir`."""
    return (f"--{name}", f"--{name.replace('_', '-')}") if "_" in name else (f"--{name}",)


def quickstart(args: argparse.Namespace) -> None:
    from .quickstart import run_quickstart

    output_dir = Path(args.output_dir)
    print("\n" + run_quickstart(args.architectures, output_dir, args.full, args.max_steps, args.num_train_images))
    print(f"Summary written to {output_dir / 'SUMMARY.md'}")


def train(args: argparse.Namespace) -> None:
    ARCHITECTURES[args.architecture].load_recipe().main(args.forwarded)


def run_alias(args: argparse.Namespace) -> None:
    resolve(args.entry_point)(args.forwarded)


def convert(args: argparse.Namespace) -> None:
    converter = args.converter
    keywords = {name: getattr(args, name) for (names, options) in converter.arguments
                for name in [options.get("dest", names[0].lstrip("-"))]}
    print(f"Wrote {resolve(converter.function)(**keywords)}")


def push(args: argparse.Namespace) -> None:
    from .hub import push_folder_to_hub

    print(push_folder_to_hub(args.folder, args.repo_id, private=args.private))


def demo(args: argparse.Namespace) -> None:
    from .demos import build_demo_for, launch

    launch(build_demo_for(args.folder))


def analyse(args: argparse.Namespace) -> None:
    from .invariance import analyse_invariance, invariance_table
    from .training.data2vec_multimodal import COLUMN_FLAGS, SCENE_FLAGS, refuse_inapplicable_data_flags

    # Each dataset option applies to one kind of dataset; given for another, it is refused rather than ignored.
    given = {name for name in (*SCENE_FLAGS, *COLUMN_FLAGS) if getattr(args, name) is not None}
    refuse_inapplicable_data_flags(args.dataset_name, given)
    keys = {"num_train_images": "num_train", "num_test_images": "num_test"}
    options = {"dataset": args.dataset_name, "max_rows": args.max_rows, "seed": args.seed}
    if args.held_out_concepts is not None:
        options["held_out_concepts"] = [name.strip() for name in args.held_out_concepts.split(",") if name.strip()]
    options |= {keys.get(name, name): getattr(args, name) for name in given}
    output_dir = Path(args.output_dir) if args.output_dir else Path(args.folder) / "invariance"
    results = analyse_invariance(args.folder, no_pairs=args.no_pairs, output_dir=output_dir, **options)
    print("\n" + invariance_table(results))
    print(f"Wrote invariance.json, invariance.md and embedding_space*.png to {output_dir}")


def add_analysis(commands) -> None:
    analysis = commands.add_parser(
        "analyse", help="Modality invariance and cross-modal arithmetic of a trained data2vec-multimodal folder.",
        description="Embed held-out rows (built-in scenes by default, or your image/text/audio/concept dataset) with a "
                    "trained data2vec-multimodal model, the same network at random initialisation and, when given "
                    "(or saved by the training run in FOLDER/no_pairs), the model trained without paired batches; "
                    "report matched-minus-mismatched cosine, linear CKA and centroid gap per pair of modalities, "
                    "retrieval in all six directions and analogy accuracy (gallery(a) - offset(a) + offset(b) finds "
                    "concept b; apart for targets held out of training), with chance. Writes invariance.json, "
                    "invariance.md and embedding figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    analysis.add_argument("folder", help="A saved data2vec-multimodal folder (e.g. hf_mmdl_quickstart/data2vec_multimodal).")
    analysis.add_argument(*flag("no_pairs"), default=None,
                          help="The same model trained without paired batches (default: FOLDER/no_pairs if it exists).")
    analysis.add_argument(*flag("dataset_name"), default="scenes",
                          help="'scenes' or 'twemoji' (built in), or a datasets name / saved folder.")
    analysis.add_argument(*flag("image_column"), default=None, help="Image column of a user dataset (default image).")
    analysis.add_argument(*flag("text_column"), default=None, help="Text column of a user dataset (default text).")
    analysis.add_argument(*flag("audio_column"), default=None, help="Audio column of a user dataset (default audio).")
    analysis.add_argument(*flag("concept_column"), default=None,
                          help="Concept (label) column of a user dataset (default concept).")
    analysis.add_argument(*flag("num_train_images"), type=int, default=None,
                          help="Scenes: training rows whose drawings the held-out rows avoid, at least the run's "
                               "(default 1200).")
    analysis.add_argument(*flag("num_test_images"), type=int, default=None, help="Scenes: held-out rows (default 300).")
    analysis.add_argument(*flag("max_rows"), type=int, default=None, help="Analyse only the first held-out rows.")
    analysis.add_argument(*flag("held_out_concepts"), default=None,
                          help="Comma-separated concepts the model never trained on, whose analogy accuracy is "
                               "reported apart from the seen ones (default: those FOLDER/results.json lists, as "
                               "the recipe's --held_out_concepts records them); '' for no split.")
    analysis.add_argument(*flag("seed"), type=int, default=0, help="Random-init weights, shuffles and analogy targets.")
    analysis.add_argument(*flag("output_dir"), default=None, help="Where the results go (default: FOLDER/invariance).")
    analysis.set_defaults(handler=analyse)


def add_quickstart(commands) -> None:
    plans = {name: architecture.quickstart for name, architecture in ARCHITECTURES.items() if architecture.quickstart}
    names = list(plans)
    durations = ", ".join(f"{name} {plan.minutes}" for name, plan in plans.items())
    total = sum(plan.minutes for plan in plans.values())
    start = commands.add_parser(
        "quickstart",
        help=f"Train, evaluate and show every architecture on built-in data (CPU, no download; about {total} minutes "
             "on 2 cores).",
        description=f"Train, evaluate and show each architecture on built-in data: each beats a baseline measured in "
                    f"the same run and saves a from_pretrained folder, PNG figures and its table in SUMMARY.md. It "
                    f"takes about {total} minutes on 2 CPU cores ({durations} minutes); --architectures runs some of "
                    f"them only, --max_steps shortens every run (for a check, not for the README's numbers).",
    )
    start.add_argument(*flag("architectures"), nargs="+", choices=names, default=names)
    start.add_argument(*flag("full"), action="store_true", help="The runs behind the README's numbers.")
    start.add_argument(*flag("output_dir"), default="hf_mmdl_quickstart", help="Where models, figures and SUMMARY.md go.")
    start.add_argument(*flag("max_steps"), type=int, default=None, help="Override each architecture's training steps.")
    start.add_argument(*flag("num_train_images"), type=int, default=None, help="Override the training set size.")
    start.set_defaults(handler=quickstart)


def add_training(commands) -> None:
    recipes = {name: architecture for name, architecture in ARCHITECTURES.items() if architecture.recipe}
    training = commands.add_parser(
        "train", help="Train and score an architecture with its recipe (`hf-mmdl train NAME --help` lists its flags).",
        add_help=False,
    )
    training.add_argument("architecture", choices=sorted(recipes))
    training.set_defaults(handler=train, forwards_arguments=True)
    aliases: dict[str, tuple[str, list[str]]] = {}
    for name, architecture in recipes.items():
        for alias, entry_point in architecture.command_aliases.items():
            aliases.setdefault(alias, (entry_point, []))[1].append(name)
    for alias, (entry_point, names) in aliases.items():
        command = commands.add_parser(
            alias, help=f"Older name of `hf-mmdl train {'|'.join(names)}` (see `hf-mmdl {alias} --help`).", add_help=False
        )
        command.set_defaults(handler=run_alias, entry_point=entry_point, forwards_arguments=True)


def add_conversion(commands) -> None:
    conversion = commands.add_parser("convert", help="Convert an original checkpoint into a from_pretrained folder.")
    converters = conversion.add_subparsers(dest="converter_name", required=True)
    for architecture in ARCHITECTURES.values():
        for converter in architecture.converters:
            command = converters.add_parser(converter.name, help=converter.help)
            for names, options in converter.arguments:
                command.add_argument(*names, **options)
            command.set_defaults(handler=convert, converter=converter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-mmdl", description="Multimodal architectures as HuggingFace models.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_quickstart(commands)
    add_training(commands)
    add_conversion(commands)
    add_analysis(commands)
    upload = commands.add_parser("push", help="Upload a saved model + processor folder with a generated model card.")
    upload.add_argument("folder", help="A folder written by the package (e.g. hf_mmdl_quickstart/m2).")
    upload.add_argument("repo_id", help="Hub repository, e.g. your-name/m2-scenes.")
    upload.add_argument(*flag("private"), action="store_true")
    upload.set_defaults(handler=push)
    show = commands.add_parser("demo", help="Open the Gradio demo of a saved folder's architecture.")
    show.add_argument("folder", help="A folder written by the package or a Hub id.")
    show.set_defaults(handler=demo)
    return parser


USER_ERRORS = (ValueError, FileNotFoundError)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, forwarded = parser.parse_known_args(argv)
    if forwarded and not getattr(args, "forwards_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(forwarded)}")
    args.forwarded = forwarded
    try:
        args.handler(args)
    except USER_ERRORS as error:
        command = " ".join(["hf-mmdl", args.command, *([args.architecture] if args.command == "train" else [])])
        print(f"{command}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
