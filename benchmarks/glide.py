"""GLIDE sampling cost and quality, every number measured in this run, on this machine (CPU, eval mode, no grad,
float32). Timed rows are medians of `--repeats` rounds after one warm-up call each; a round calls every timed
function once, in an order rotated from round to round, so load from other processes hits them alike and the ratios
within a table stay meaningful. Ratios are times, row / baseline: above 1 is slower.

1. Guided sampling step vs bare UNet forward. Timed: one whole `GlidePipeline(...)` call at guidance 3 for `--steps`
   respaced steps (tokenising, caption encoding, the initial noise, the loop of doubled UNet call + guidance
   combination + scheduler step, conversion to PIL), against `--steps` calls of `GlideModel.denoise` on the same
   doubled batch [conditional; unconditional] at the same timesteps with the caption encoding precomputed, which is
   exactly the call the pipeline's loop makes. Ratio = pipeline time / denoise time, i.e. the cost of one guided
   step relative to one doubled forward, with the pipeline's once-per-call work spread over the steps (so it is an
   upper bound that tightens with `--steps`). Goal ≤ 1.05. Both schedulers are timed: GLIDE's ancestral DDPM
   (`glide_scheduler`, the sampler a trained folder is saved with) and DPM-Solver++ (`glide_fast_scheduler`).
   Before timing, a forward hook checks that each pipeline run makes exactly `--steps` UNet calls of the doubled batch.
2. 25-step DPM-Solver++ vs 250-step ancestral DDPM on a trained pipeline: `score_guidance` (the training script's
   scorer: the scene analyser's colour and position accuracy) on the same `--prompts` evaluation prompts with the
   same seed at guidance 3, and the wall time of each scoring call (sampling plus the analyser, identical work for
   both). One timed run each: these are long. Needs `--pipeline DIR` from examples/run_text_to_image.py; skipped,
   with the command that makes one, when DIR has no pipeline.
3. `GlideModel.denoise` (extra inputs, casts, the pooled caption as class label) vs a bare diffusers
   `UNet2DConditionModel` built from the same config with the same weights, called on the same doubled batch,
   timesteps and precomputed caption states, `--steps` calls per round (the rounds of part 1, which share this
   baseline): time ratio (denoise / bare), and the largest output difference (0) next to the largest output (not 0).

Parts 1 and 3 use the trained pipeline's model when `--pipeline` holds one, else a seeded random model of the
training script's "small" config (`glide_config_for`, 32×32); `--quick` uses the "tiny" config at 16×16 and few steps,
a smoke run whose timings are too short to mean anything.

    python benchmarks/glide.py [--pipeline outputs/glide-scenes] [--batch 4] [--steps 25] [--prompts 24]
                               [--repeats 5] [--threads 2] [--output results.json]
    python benchmarks/glide.py --quick --threads 1   # seconds; what tests/test_glide_benchmark.py runs
"""

import argparse
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from hf_mmdl.data.scenes import COLOURS
from hf_mmdl.data.text_to_image import POSITIONS, PROMPT_SHAPES, scene_caption
from hf_mmdl.modeling import GlideModel
from hf_mmdl.pipelines import GlidePipeline, glide_fast_scheduler, glide_scheduler, respaced_timesteps
from hf_mmdl.processing import GlideProcessor, train_caption_tokenizer
from hf_mmdl.training.text_to_image import evaluation_prompts, glide_config_for, score_guidance
from timing import median_seconds  # benchmarks/timing.py, beside this script

GUIDANCE = 3.0
STEP_GOAL = 1.05
FULL = {"batch": 4, "steps": 25, "prompts": 24, "repeats": 5, "samplers": {"fast": "25", "ancestral": "250"}}
QUICK = {"batch": 2, "steps": 3, "prompts": 2, "repeats": 2, "samplers": {"fast": "4", "ancestral": "10"}}


def random_pipeline(size: str, image_size: int, seed: int) -> GlidePipeline:
    """A randomly initialised GLIDE with the training script's config and its tokenizer (the vocabulary of every
    scene caption, which is what training on the scenes learns)."""
    captions = [scene_caption(s, c, p) for s, c, p in itertools.product(PROMPT_SHAPES, COLOURS, POSITIONS)]
    tokenizer = train_caption_tokenizer(captions, min_count=1)
    torch.manual_seed(seed)
    model = GlideModel(glide_config_for(size, len(tokenizer), tokenizer.pad_token_id, image_size)).eval()
    # ADM zero-initialises the output convolution; left so, every output is 0 and part 3's difference would be 0
    # whatever the two UNets computed.
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    return GlidePipeline(glide=model, processor=GlideProcessor.for_config(model.config, tokenizer),
                         scheduler=glide_scheduler(model))


def load_pipeline(path: Path) -> GlidePipeline | None:
    if not (path / "model_index.json").is_file():
        return None
    pipe = GlidePipeline.from_pretrained(path)
    pipe.glide.eval()
    return pipe


def count_unet_batches(pipe: GlidePipeline, run: Callable[[], object]) -> list[int]:
    """The batch size of every UNet call that `run` makes."""
    batches = []
    handle = pipe.glide.unet.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:
        run()
    finally:
        handle.remove()
    return batches


def benchmark_unet_calls(pipe: GlidePipeline, batch: int, steps: int, repeats: int, seed: int) -> dict:
    """Parts 1 and 3 in one set of interleaved rounds, so that their shared baseline is measured once."""
    model = pipe.glide
    captions = [scene_caption(*p) for p in evaluation_prompts(batch, seed)]
    ancestral = GlidePipeline(glide=model, processor=pipe.processor, scheduler=glide_scheduler(model))
    fast = GlidePipeline(glide=model, processor=pipe.processor, scheduler=glide_fast_scheduler(model))
    for p in (ancestral, fast):
        p.set_progress_bar_config(disable=True)

    # What the pipeline's loop feeds the UNet at guidance ≠ 1: prompts then empty captions, the noise twice.
    captions_then_empty = pipe.processor(text=captions + [""] * batch)
    input_ids, mask = captions_then_empty["input_ids"], captions_then_empty["attention_mask"]
    text = model.encode_text(input_ids, mask)
    size = model.config.image_size
    noise = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    doubled = torch.cat([noise, noise])
    timesteps = torch.tensor(respaced_timesteps(model.config.num_train_timesteps, steps))

    reference = UNet2DConditionModel.from_config(model.unet.config).eval()
    reference.load_state_dict(model.unet.state_dict())

    def sample(p: GlidePipeline) -> Callable[[], object]:
        return lambda: p(captions, guidance_scale=GUIDANCE, num_inference_steps=str(steps),
                         generator=torch.Generator().manual_seed(seed))

    def ours(t: torch.Tensor) -> torch.Tensor:
        return model.denoise(doubled, t.expand(2 * batch), input_ids, mask, text_outputs=text)

    def bare(t: torch.Tensor) -> torch.Tensor:
        return reference(doubled, t.expand(2 * batch), encoder_hidden_states=text.last_hidden_state,
                         class_labels=text.pooler_output).sample

    # The ratios below divide a pipeline run by `steps` forwards: that only holds if it makes exactly those calls.
    for name, p in (("ancestral", ancestral), ("fast", fast)):
        calls = count_unet_batches(p, sample(p))
        if calls != [2 * batch] * steps:
            raise RuntimeError(f"The {name} pipeline made UNet calls of batch {calls}, expected {steps} × {2 * batch}.")
    outputs = [(ours(t), bare(t)) for t in timesteps]
    max_diff = max((a - b).abs().max().item() for a, b in outputs)
    # A difference of 0 only means something if the outputs are not all 0 (an untrained ADM output convolution).
    max_output = max(b.abs().max().item() for _, b in outputs)
    del outputs

    def every_step(forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            # One output alive at a time, as in the pipeline's loop.
            for t in timesteps:
                forward(t)
        return run

    seconds = median_seconds({
        "denoise": every_step(ours),
        "bare_unet": every_step(bare),
        "pipeline_ancestral": sample(ancestral),
        "pipeline_fast": sample(fast),
    }, repeats)
    per_step = {name: s / steps for name, s in seconds.items()}
    return {
        "guided_step": {
            "unet_batch": 2 * batch,
            "steps": steps,
            "seconds_per_step": {k: per_step[k] for k in ("denoise", "pipeline_ancestral", "pipeline_fast")},
            "ratio": per_step["pipeline_ancestral"] / per_step["denoise"],
            "ratio_fast_scheduler": per_step["pipeline_fast"] / per_step["denoise"],
            "goal": STEP_GOAL,
        },
        "denoise_vs_unet": {
            "calls": steps,
            "seconds_per_call": {k: per_step[k] for k in ("bare_unet", "denoise")},
            "ratio": per_step["denoise"] / per_step["bare_unet"],
            "max_abs_diff": max_diff,
            "max_abs_output": max_output,
        },
    }


def benchmark_samplers(pipe: GlidePipeline, num_prompts: int, samplers: dict[str, str], seed: int) -> dict:
    """Part 2: the same prompts and noise seed through each sampler, scored by the training script's analyser."""
    model = pipe.glide
    prompts = evaluation_prompts(num_prompts)
    results = {}
    for name, scheduler in (("ancestral", glide_scheduler(model)), ("fast", glide_fast_scheduler(model))):
        runner = GlidePipeline(glide=model, processor=pipe.processor, scheduler=scheduler)
        runner.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        scores, _ = score_guidance(runner, prompts, [GUIDANCE], samplers[name], seed)
        results[name] = {"steps": samplers[name], "seconds": time.perf_counter() - start, **scores[str(GUIDANCE)]}

    def ratio(key: str) -> float | None:
        return results["fast"][key] / results["ancestral"][key] if results["ancestral"][key] else None

    return {
        "prompts": num_prompts,
        "guidance_scale": GUIDANCE,
        "seed": seed,
        "samplers": results,
        "chance": {"colour_accuracy": 1 / len(COLOURS), "position_accuracy": 1 / len(POSITIONS)},
        "ratio_time": ratio("seconds"),
        "ratio_colour_accuracy": ratio("colour_accuracy"),
        "ratio_position_accuracy": ratio("position_accuracy"),
    }


def fmt_ratio(value: float | None) -> str:
    return "n/a (ancestral 0)" if value is None else f"{value:.3f}"


def print_guided_step(results: dict, batch: int) -> None:
    step = results["guided_step"]
    ms = {k: 1000 * v for k, v in step["seconds_per_step"].items()}
    verdict = "met" if step["ratio"] <= STEP_GOAL else "NOT met"
    print(f"\n1. Guided sampling step (guidance {GUIDANCE:g}, {batch} prompts → UNet batch {step['unet_batch']}, "
          f"{step['steps']} steps); time ratio = row / baseline")
    print(f"  {'GlideModel.denoise on the doubled batch':52s} {ms['denoise']:9.2f} ms/step   (baseline)")
    print(f"  {'GlidePipeline, ancestral DDPM (glide_scheduler)':52s} {ms['pipeline_ancestral']:9.2f} ms/step   "
          f"ratio {step['ratio']:.3f}   goal ≤ {STEP_GOAL}: {verdict}")
    print(f"  {'GlidePipeline, DPM-Solver++ (glide_fast_scheduler)':52s} {ms['pipeline_fast']:9.2f} ms/step   "
          f"ratio {step['ratio_fast_scheduler']:.3f}")


def print_denoise_vs_unet(results: dict) -> None:
    unet = results["denoise_vs_unet"]
    ms = {k: 1000 * v for k, v in unet["seconds_per_call"].items()}
    print(f"\n3. GlideModel.denoise vs bare diffusers UNet2DConditionModel (same config, weights and inputs; "
          f"{unet['calls']} calls per round); time ratio = row / baseline")
    print(f"  {'diffusers UNet2DConditionModel':52s} {ms['bare_unet']:9.2f} ms/call   (baseline)")
    print(f"  {'GlideModel.denoise':52s} {ms['denoise']:9.2f} ms/call   ratio {unet['ratio']:.3f}   "
          f"max |ours − diffusers| = {unet['max_abs_diff']:.3g} (max |output| {unet['max_abs_output']:.3g})")


def print_sampler_table(part: dict, path: Path) -> None:
    print(f"\n2. Fast deterministic vs ancestral sampling on {path} ({part['prompts']} prompts, guidance "
          f"{part['guidance_scale']:g}, seed {part['seed']}, the same prompts and noise for both; one run each)")
    print(f"  {'sampler':38s} {'steps':>5s} {'colour acc':>11s} {'position acc':>13s} {'wall s':>9s}")
    for name, label in (("ancestral", "ancestral DDPM (glide_scheduler)"), ("fast", "DPM-Solver++ (glide_fast_scheduler)")):
        row = part["samplers"][name]
        print(f"  {label:38s} {row['steps']:>5s} {row['colour_accuracy']:11.1%} {row['position_accuracy']:13.1%} "
              f"{row['seconds']:9.2f}")
    chance = part["chance"]
    print(f"  {'chance':38s} {'':>5s} {chance['colour_accuracy']:11.1%} {chance['position_accuracy']:13.1%}")
    print(f"  ratios fast / ancestral: time {fmt_ratio(part['ratio_time'])}, colour accuracy "
          f"{fmt_ratio(part['ratio_colour_accuracy'])}, position accuracy {fmt_ratio(part['ratio_position_accuracy'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, default=Path("outputs/glide-scenes"),
                        help="trained GlidePipeline folder (examples/run_text_to_image.py --output_dir)")
    parser.add_argument("--batch", type=int, help=f"prompts per sampling run in parts 1 and 3 (default {FULL['batch']})")
    parser.add_argument("--steps", type=int, help=f"sampling steps per timed run in parts 1 and 3 (default {FULL['steps']})")
    parser.add_argument("--prompts", type=int, help=f"evaluation prompts scored in part 2 (default {FULL['prompts']})")
    parser.add_argument("--repeats", type=int, help=f"timed rounds in parts 1 and 3 (default {FULL['repeats']})")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in seconds: tiny random model at 16px unless --pipeline holds one, defaults "
                             + ", ".join(f"--{k} {v}" for k, v in QUICK.items() if k != "samplers") + ", part 2 with "
                             + f"{QUICK['samplers']['fast']} vs {QUICK['samplers']['ancestral']} steps")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    # --quick changes the defaults only, so `--quick --repeats 10` still takes the explicit value.
    defaults = QUICK if args.quick else FULL
    for key in ("batch", "steps", "prompts", "repeats"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    samplers = defaults["samplers"]
    torch.set_num_threads(args.threads)

    trained = load_pipeline(args.pipeline)
    pipe = trained or random_pipeline("tiny" if args.quick else "small", 16 if args.quick else 32, args.seed)
    pipe.set_progress_bar_config(disable=True)
    model = pipe.glide
    source = f"trained pipeline {args.pipeline}" if trained else "random init (config of glide_config_for)"
    print(f"GLIDE benchmark: {model.num_parameters() / 1e6:.2f}M parameters, {model.config.image_size}px, "
          f"{source}; torch {torch.__version__}, CPU, {args.threads} threads, medians of {args.repeats} rounds")

    results = {
        "model": {"source": str(args.pipeline) if trained else "random", "parameters": model.num_parameters(),
                  "image_size": model.config.image_size},
        "threads": args.threads, "repeats": args.repeats, "batch": args.batch, "quick": args.quick,
    }
    with torch.inference_mode():
        results |= benchmark_unet_calls(pipe, args.batch, args.steps, args.repeats, args.seed)
        print_guided_step(results, args.batch)
        if trained:
            results["fast_vs_ancestral"] = benchmark_samplers(trained, args.prompts, samplers, args.seed)
            print_sampler_table(results["fast_vs_ancestral"], args.pipeline)
        else:
            reason = (f"no trained pipeline at {args.pipeline}: make one with `python examples/run_text_to_image.py "
                      f"--output_dir {args.pipeline}` (trains the small GLIDE on the built-in scenes), then rerun "
                      f"with --pipeline {args.pipeline}")
            results["fast_vs_ancestral"] = {"skipped": reason}
            print(f"\n2. Fast vs ancestral sampling: skipped, {reason}.")
        print_denoise_vs_unet(results)

    sampling = results["fast_vs_ancestral"]
    print("\nSummary (time ratios):")
    print(f"  guided step / doubled UNet forward      {results['guided_step']['ratio']:.3f}  (goal ≤ {STEP_GOAL})")
    print(f"  fast {samplers['fast']}-step / ancestral {samplers['ancestral']}-step time    "
          + ("skipped" if "skipped" in sampling else f"{fmt_ratio(sampling['ratio_time'])}  (accuracy ratios: colour "
             f"{fmt_ratio(sampling['ratio_colour_accuracy'])}, position {fmt_ratio(sampling['ratio_position_accuracy'])})"))
    print(f"  GlideModel.denoise / diffusers UNet     {results['denoise_vs_unet']['ratio']:.3f}  "
          f"(max |diff| {results['denoise_vs_unet']['max_abs_diff']:.3g})")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
        print(f"Results written to {args.output}")


if __name__ == "__main__":
    main()
