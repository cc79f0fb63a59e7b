"""Beam-search captioning speed of M²: KV cache vs none, vs transformers' VisionEncoderDecoderModel of comparable
size, and per-token decode time vs caption length. Every number is measured in this run, on this machine.

    python benchmarks/m2_generation.py [--batch-size 16] [--repeats 3] [--threads 2]
"""

import argparse
import time

import torch
from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

from hf_mmdl import M2ForConditionalGeneration
from hf_mmdl.processing import train_caption_tokenizer
from hf_mmdl.training.captioning import m2_config_for


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def comparable_vision_encoder_decoder(m2: M2ForConditionalGeneration, image_size: int) -> VisionEncoderDecoderModel:
    """ViT encoder + GPT-2 decoder with cross-attention, widths and depths matching the small M²."""
    c = m2.config
    encoder = ViTConfig(
        hidden_size=c.d_model, num_hidden_layers=c.encoder_layers, num_attention_heads=c.num_attention_heads,
        intermediate_size=c.d_ff, image_size=image_size, patch_size=8,
    )
    decoder = GPT2Config(
        vocab_size=c.vocab_size, n_embd=c.d_model, n_layer=c.decoder_layers, n_head=c.num_attention_heads,
        n_inner=c.d_ff, n_positions=64, add_cross_attention=True, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
    )
    model = VisionEncoderDecoderModel(VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder))
    model.config.decoder_start_token_id = c.bos_token_id
    model.config.pad_token_id = c.pad_token_id
    model.generation_config.decoder_start_token_id = c.bos_token_id
    model.generation_config.pad_token_id = c.pad_token_id
    model.generation_config.eos_token_id = c.eos_token_id
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    words = [f"w{i}" for i in range(1000)]
    tokenizer = train_caption_tokenizer([" ".join(words)], min_count=1)
    m2 = M2ForConditionalGeneration(m2_config_for("small", len(tokenizer), args.image_size, tokenizer)).eval()
    ved = comparable_vision_encoder_decoder(m2, args.image_size)
    pixels = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    # Force full-length captions so every variant decodes the same number of steps.
    beam = dict(num_beams=5, max_new_tokens=20, min_new_tokens=20, length_penalty=0.0)

    with torch.inference_mode():
        cached = timed(lambda: m2.generate(pixel_values=pixels, **beam), args.repeats)
        uncached = timed(lambda: m2.generate(pixel_values=pixels, use_cache=False, **beam), args.repeats)
        peer = timed(lambda: ved.generate(pixel_values=pixels, **beam), args.repeats)
        print(f"Beam-5, 20 tokens, batch {args.batch_size}, {args.threads} threads, {args.image_size}px images")
        print(f"  parameters: M² {m2.num_parameters() / 1e6:.2f}M, VisionEncoderDecoder (ViT+GPT-2) {ved.num_parameters() / 1e6:.2f}M")
        print(f"  M² with KV cache        {cached:7.3f} s")
        print(f"  M² without cache        {uncached:7.3f} s   ratio uncached/cached = {uncached / cached:.2f}x")
        print(f"  VisionEncoderDecoder    {peer:7.3f} s   ratio peer/M² = {peer / cached:.2f}x")

        print("\nPer-token decode time vs caption length (M², beam 5, cached vs uncached):")
        print("  tokens | cached ms/token | uncached ms/token")
        for length in (5, 10, 20, 40):
            fixed = dict(num_beams=5, max_new_tokens=length, min_new_tokens=length, length_penalty=0.0)
            c = timed(lambda: m2.generate(pixel_values=pixels, **fixed), args.repeats)
            u = timed(lambda: m2.generate(pixel_values=pixels, use_cache=False, **fixed), args.repeats)
            print(f"  {length:6d} | {1000 * c / length:15.2f} | {1000 * u / length:17.2f}")


if __name__ == "__main__":
    main()
