"""Inference speed of the two image autoencoders, every number measured in this run, on this machine (eval mode, no
grad, float32). Each number is the median of `--repeats` rounds after one warm-up call; a round times every variant
of a table once, so load from other processes hits them alike and ratios within a table stay meaningful.

1. `ImageVAEModel` vs diffusers' `AutoencoderKL`: encode + decode of the posterior mean, in images/s. Our model is
   `convert_autoencoder_kl` of the very `AutoencoderKL` it is timed against (same blocks, same weights, spatial
   latent), so the ratio should be ≈ 1 and the outputs equal (checked). The vector-latent variant is timed too.
2. `DiscreteVAEModel` (DALL-E dVAE): tokenisation (`get_codebook_indices`) and detokenisation (`decode_code`) in
   images/s and tokens/s, and the decoder fed a K-way one-hot (the textbook path, a 1×1 conv over K channels) vs
   the embedding lookup `decode_code` uses: same numbers (checked), no K-wide tensor. Small config at 32×32 by
   default; `--released` adds the released 97.6 M-parameter config at 256×256 (minutes on a 2-core CPU).

    python benchmarks/autoencoders.py [--batch-size 32] [--repeats 10] [--threads 2] [--widths 32 64 64] [--released]
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from hf_mmdl import DiscreteVAEConfig, DiscreteVAEModel, ImageVAEConfig, ImageVAEModel
from hf_mmdl.modeling import convert_autoencoder_kl

SMALL_DVAE = DiscreteVAEConfig(group_count=3, n_blk_per_group=1, n_hid=32, vocab_size=512, n_init=64)


def median_seconds(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function over `repeats` rounds, after one warm-up call each. Every round calls every
    function once, so load from other processes falls on all of them alike and their ratios stay meaningful."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def print_table(seconds: dict[str, float], batch_size: int, baseline: str, tokens_per_image: int = 0) -> None:
    """One line per timed function: images/s, tokens/s when it makes or reads tokens, and for the rows after
    `baseline` their speed relative to it (baseline time / row time: > 1 is faster)."""
    ratio_to = None
    for name, time_s in seconds.items():
        line = f"  {name:36s} {batch_size / time_s:10.2f} img/s"
        if tokens_per_image:
            line += f" {batch_size * tokens_per_image / time_s:11.0f} tok/s"
        if name == baseline:
            ratio_to = time_s
            line += "   (baseline)"
        elif ratio_to is not None:
            line += f"   {ratio_to / time_s:.2f}x baseline"
        print(line)


def reconstruct(model, pixels: torch.Tensor) -> torch.Tensor:
    """Encode, take the posterior mean, decode: the same calls on `AutoencoderKL` and `ImageVAEModel`."""
    return model.decode(model.encode(pixels).latent_dist.mode()).sample


def build_autoencoder_kl(widths: list[int], image_size: int) -> AutoencoderKL:
    levels = len(widths)
    return AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(widths),
        norm_num_groups=16,
        latent_channels=4,
        sample_size=image_size,
    ).eval()


def benchmark_image_vae(args: argparse.Namespace) -> None:
    reference = build_autoencoder_kl(args.widths, args.image_size)
    ours = convert_autoencoder_kl(reference)
    vector = ImageVAEModel(ImageVAEConfig.from_dict(ours.config.to_dict(), latent_type="vector")).eval()
    pixels = torch.rand(args.batch_size, 3, args.image_size, args.image_size) * 2 - 1

    expected, actual = reconstruct(reference, pixels), reconstruct(ours, pixels)
    torch.testing.assert_close(actual, expected)
    diff = (actual - expected).abs().max().item()
    seconds = median_seconds(
        {
            "diffusers AutoencoderKL": lambda: reconstruct(reference, pixels),
            "ImageVAEModel (converted, spatial)": lambda: reconstruct(ours, pixels),
            "ImageVAEModel (vector latent)": lambda: reconstruct(vector, pixels),
        },
        args.repeats,
    )

    print(
        f"Image VAE encode + decode (posterior mean), widths {tuple(args.widths)}, {args.image_size}px, "
        f"batch {args.batch_size}, threads {args.threads}"
    )
    print(
        f"  parameters: AutoencoderKL {reference.num_parameters() / 1e6:.2f}M, vector-latent ImageVAEModel "
        f"{vector.num_parameters() / 1e6:.2f}M; max |ours − diffusers| = {diff:.2e}"
    )
    print_table(seconds, args.batch_size, baseline="diffusers AutoencoderKL")


def benchmark_dvae(name: str, config: DiscreteVAEConfig, image_size: int, batch_size: int, repeats: int) -> None:
    model = DiscreteVAEModel(config).eval()
    pixels = model.map_pixels(torch.rand(batch_size, 3, image_size, image_size))
    indices = model.get_codebook_indices(pixels)

    def one_hot_decoder():
        return model.decoder(F.one_hot(indices, config.vocab_size).permute(0, 3, 1, 2).float())

    def embedding_decoder():
        return model.decoder.decode_indices(indices)

    expected, actual = one_hot_decoder(), embedding_decoder()
    torch.testing.assert_close(actual, expected)
    diff = (actual - expected).abs().max().item()
    seconds = median_seconds(
        {
            "get_codebook_indices": lambda: model.get_codebook_indices(pixels),
            "decode_code": lambda: model.decode_code(indices),
            "decoder(one-hot codes)": one_hot_decoder,
            "decoder.decode_indices (embedding)": embedding_decoder,
        },
        repeats,
    )

    side = indices.shape[-1]
    print(
        f"\ndVAE {name}: {model.num_parameters() / 1e6:.1f}M parameters, {image_size}px → {side}×{side} tokens of "
        f"{config.vocab_size}, batch {batch_size}; max |one-hot − embedding| = {diff:.2e}"
    )
    print_table(seconds, batch_size, baseline="decoder(one-hot codes)", tokens_per_image=indices[0].numel())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 64], help="AutoencoderKL block_out_channels")
    parser.add_argument("--released", action="store_true", help="also time the released dVAE config at 256×256")
    parser.add_argument("--released-batch-size", type=int, default=2)
    parser.add_argument("--released-repeats", type=int, default=3, help="the released config takes seconds per call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with torch.inference_mode():
        benchmark_image_vae(args)
        benchmark_dvae("small", SMALL_DVAE, args.image_size, args.batch_size, args.repeats)
        if args.released:
            benchmark_dvae("released", DiscreteVAEConfig(), 256, args.released_batch_size, args.released_repeats)


if __name__ == "__main__":
    main()
