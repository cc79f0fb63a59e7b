"""data2vec-multimodal training and inference cost, every number measured in this run, on this machine (CPU,
float32). Timed rows are medians of `--repeats` rounds after one warm-up call each; a round calls every timed
function of a table once, in an order rotated from round to round, so load from other processes hits them alike and
the ratios within a table stay meaningful. Ratios are times, row / baseline (above 1 is slower), except part 3's
throughput ratio (ours / theirs: above 1 is faster).

Data: the built-in tri-modal scenes (`load_trimodal_dataset("scenes")`: 32 px images, captions, spoken captions at
16 kHz) through `Data2VecMultimodalProcessor.for_texts` (a byte-level BPE trained on the training captions). Model:
the training recipe's config (`data2vec_multimodal_config_for(--size)`, "small" = H 64, 4 blocks, modality experts).

1. data2vec step vs plain masked-prediction step, per modality, on one batch of `--batch` real rows, training mode.
   Timed: one whole data2vec step (`Data2VecMultimodalForPreTraining(**inputs)`: the EMA teacher's target pass on
   the unmasked input, masking, the student on the masked input, the regression loss on masked steps; backward;
   AdamW step; `update_teacher`) against one plain masked-prediction step of the same network: the same input
   checks, masks (same seeds), student forward (`student_masks` + `student_hidden`), regression head and loss on
   the masked steps, but regressing a fixed random target tensor, so no teacher pass and no EMA update; backward;
   AdamW step. Each variant has its own copy of the same initial weights and its own optimizer. Ratio = data2vec /
   plain, i.e. what the teacher costs. Goal ≤ 1.35.
2. data2vec 2.0 multi-mask (`num_mask_copies` M = 8; and M = 8 with `encode_unmasked_only`, the image student on
   visible patches + conv decoder) vs data2vec 1.0 (M = 1) in time to reach the same image probe accuracy. All
   start from the same weights and see the same batches of `--batch` distinct training images per step (a fresh
   shuffle each epoch), with the recipe's optimiser (AdamW lr 5e-4, β2 0.98, wd 0.05, 10 % warmup, cosine) and τ
   schedule (τn = half the steps), for `--steps` steps; step i of every variant runs before step i + 1 of any, in a
   rotated order, and only the steps are timed. At `--checkpoints` evenly spaced steps (and at 0) the image linear
   probe and 1-NN concept accuracy of frozen mean-pooled features (`encode_rows`, `hf_mmdl.representations`;
   `--probe-train` rows → `--probe-test` held-out rows, 30 concepts) are measured. Reported per variant: seconds
   per step, the accuracy curve, and for each metric the first trained checkpoint (step, cumulative training
   seconds) at or above the accuracy data2vec 1.0 ends at (or "not reached"); saving = 1.0's time / the
   variant's. Probe accuracies on a few dozen held-out rows move in steps of several points: read them with that
   resolution.
3. Our encoder forward vs transformers' `Data2VecTextModel` / `Data2VecVisionModel` / `Data2VecAudioModel` at an
   equal config (the blocks of `--size`; vision in the released pre-trained layout: BEiT's shared relative
   position bias, layer scale 0.1), eval, no grad, a batch of `--batch` real rows. Ours is the transformers model
   converted with `hf_mmdl.convert.data2vec_unimodal` (`block_sharing="separate"`, every parameter of the source
   perturbed first so no weight is trivially 0 or 1), so the hidden states must be equal: the largest difference
   over every hidden state is reported (and checked ≤ 1e-4). Throughput ratio = their time / our time. Goal ≥ 1.0.

`--quick` is a smoke run in seconds (what tests/test_data2vec_benchmark.py runs): fewer rows, steps and rounds;
its timings and accuracies are too short to mean anything.

    python benchmarks/data2vec.py [--size small] [--batch 32] [--repeats 10] [--steps 300] [--checkpoints 6]
                                  [--threads 2] [--output results.json]
    python benchmarks/data2vec.py --quick --threads 1
"""

import argparse
import copy
import json
import math
import random
import time
from collections.abc import Callable

import numpy as np
import torch
from transformers import (
    Data2VecAudioConfig, Data2VecAudioModel, Data2VecTextConfig, Data2VecTextModel, Data2VecVisionConfig,
    Data2VecVisionModel, get_cosine_schedule_with_warmup,
)

from hf_mmdl.convert.data2vec_unimodal import data2vec_multimodal_config_from, data2vec_multimodal_state_dict
from hf_mmdl.data.trimodal import load_trimodal_dataset
from hf_mmdl.modeling import Data2VecMultimodalForPreTraining, Data2VecMultimodalModel
from hf_mmdl.modeling.configuration_data2vec_multimodal import (
    DATA2VEC_MULTIMODAL_SIZES, MODALITIES, data2vec_multimodal_config_for,
)
from hf_mmdl.modeling.modeling_data2vec_multimodal import regression_loss
from hf_mmdl.processing import Data2VecMultimodalProcessor
from hf_mmdl.representations import linear_probe_accuracy, nearest_neighbour_accuracy
from hf_mmdl.training.data2vec_multimodal import encode_rows, process_rows
from timing import median_seconds  # benchmarks/timing.py, beside this script

STEP_GOAL = 1.35
FORWARD_GOAL = 1.0
PARITY_TOLERANCE = 1e-4
MULTI_MASK = 8
METRICS = {"linear_probe": "linear-probe", "nearest_neighbour": "1-NN"}
FULL = {"batch": 32, "repeats": 10, "steps": 300, "checkpoints": 6, "probe_train": 600, "probe_test": 150}
QUICK = {"batch": 8, "repeats": 2, "steps": 6, "checkpoints": 2, "probe_train": 64, "probe_test": 30}
# The recipe's optimiser (Data2VecTrainingArguments).
LEARNING_RATE, BETAS, WEIGHT_DECAY, WARMUP = 5e-4, (0.9, 0.98), 0.05, 0.1


def pretraining_config(size: str, processor: Data2VecMultimodalProcessor, image_size: int, **overrides):
    """The training recipe's configuration (`Data2VecMultimodalRecipe.config`) for this processor."""
    tokenizer = processor.tokenizer
    return data2vec_multimodal_config_for(
        size, vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        max_text_length=tokenizer.model_max_length, image_size=image_size, **overrides)


def adamw(model: torch.nn.Module) -> torch.optim.AdamW:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE, betas=BETAS,
                             weight_decay=WEIGHT_DECAY)


# ---- part 1 ----------------------------------------------------------------------------------------------------------
def seeded(seed: int) -> torch.Generator:
    """The masks' generators: torch's for text and image masks, numpy's global one for audio spans (the model's
    `span_mask_frames` draws from it), both reset so that both variants mask the same steps."""
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


def data2vec_step(model: Data2VecMultimodalForPreTraining, optimizer, inputs: dict, seed: int) -> Callable[[], None]:
    step = [0]

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**inputs, generator=seeded(seed)).loss.backward()
        optimizer.step()
        step[0] += 1
        model.update_teacher(step[0])
    return run


def plain_step(model: Data2VecMultimodalForPreTraining, optimizer, modality: str, inputs: dict,
               target: torch.Tensor, seed: int) -> Callable[[], None]:
    """The student half of `Data2VecMultimodalForPreTraining.forward` for one modality with M = 1, regressing the
    fixed `target` (B, T, H) instead of the teacher's."""
    base = model.data2vec_multimodal
    value, mask = {"text": (inputs.get("input_ids"), inputs.get("attention_mask")),
                   "image": (inputs.get("pixel_values"), None),
                   "audio": (inputs.get("input_values"), inputs.get("audio_attention_mask"))}[modality]
    beta = model.config.loss_beta[modality]

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        checked = base.check_inputs(modality, value, mask)
        features = base.audio_encoder.extract(checked) if modality == "audio" else None
        student_input, masked_steps, masked_positions = model.student_masks(modality, checked, mask, seeded(seed))
        hidden = model.student_hidden(modality, student_input, mask, masked_positions, features)
        prediction = model.regression_heads[modality](hidden.hidden[masked_steps])
        regression_loss(prediction, target[masked_steps], beta).backward()
        optimizer.step()
    return run


def benchmark_steps(config, processor, rows, batch: int, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    initial = Data2VecMultimodalForPreTraining(config)
    batch_rows = rows.select(range(batch))
    results = {}
    for modality in MODALITIES:
        inputs = process_rows(processor, batch_rows, (modality,))
        d2v, plain = copy.deepcopy(initial).train(), copy.deepcopy(initial).train()
        value = inputs.get({"text": "input_ids", "image": "pixel_values", "audio": "input_values"}[modality])
        mask = inputs.get({"text": "attention_mask", "audio": "audio_attention_mask"}.get(modality, ""))
        # A target of the teacher's shape (B, T, H), fixed: what a plain masked-prediction objective regresses.
        shape = d2v.teacher_targets(modality, value, mask)[0].shape
        target = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        seconds = median_seconds({
            "data2vec": data2vec_step(d2v, adamw(d2v), inputs, seed),
            "plain": plain_step(plain, adamw(plain), modality, inputs, target, seed),
        }, repeats)
        results[modality] = {"steps_per_row": shape[1], "seconds": seconds,
                             "ratio": seconds["data2vec"] / seconds["plain"]}
    return {"batch": batch, "goal": STEP_GOAL, "modalities": results}


def print_steps(part: dict) -> None:
    print(f"\n1. data2vec student + teacher step vs plain masked-prediction step of the same network (batch "
          f"{part['batch']}, forward + backward + AdamW [+ update_teacher]); time ratio = data2vec / plain")
    print(f"  {'modality':8s} {'steps/row':>9s} {'plain ms':>10s} {'data2vec ms':>12s} {'ratio':>7s}")
    for modality, row in part["modalities"].items():
        verdict = "met" if row["ratio"] <= STEP_GOAL else "NOT met"
        print(f"  {modality:8s} {row['steps_per_row']:9d} {1000 * row['seconds']['plain']:10.1f} "
              f"{1000 * row['seconds']['data2vec']:12.1f} {row['ratio']:7.3f}   goal ≤ {STEP_GOAL}: {verdict}")


# ---- part 2 ----------------------------------------------------------------------------------------------------------
def image_probe(model, processor, train, test) -> dict:
    (train_pooled, _), (test_pooled, _) = (encode_rows(model, processor, rows, "image") for rows in (train, test))
    return {"linear_probe": linear_probe_accuracy(train_pooled, train["concept"], test_pooled, test["concept"]),
            "nearest_neighbour": nearest_neighbour_accuracy(train_pooled, train["concept"], test_pooled,
                                                            test["concept"])}


def benchmark_multi_mask(size: str, processor, train, test, image_size: int, batch: int, steps: int,
                         checkpoints: int, seed: int) -> dict:
    variants = {
        "data2vec 1.0 (M = 1)": {"num_mask_copies": 1},
        f"data2vec 2.0 (M = {MULTI_MASK})": {"num_mask_copies": MULTI_MASK},
        f"data2vec 2.0 (M = {MULTI_MASK}, visible patches only)": {"num_mask_copies": MULTI_MASK,
                                                                   "encode_unmasked_only": True},
    }
    baseline = next(iter(variants))
    models, optimizers, schedulers = {}, {}, {}
    torch.manual_seed(seed)
    for name, overrides in variants.items():
        config = pretraining_config(size, processor, image_size, ema_anneal_end_step=max(1, steps // 2), **overrides)
        models[name] = Data2VecMultimodalForPreTraining(config).train()
        if name != baseline:
            # The same initial weights; only the image decoder of data2vec 2.0's sparse student is its own.
            missing, unexpected = models[name].load_state_dict(models[baseline].state_dict(), strict=False)
            assert not unexpected and all(key.startswith("image_decoder.") for key in missing), (missing, unexpected)
        optimizers[name] = adamw(models[name])
        schedulers[name] = get_cosine_schedule_with_warmup(optimizers[name], math.ceil(WARMUP * steps), steps)
    # Every image of the training set once per epoch, in batches of distinct images, the same batches for all.
    pixels = process_rows(processor, train, ("image",))["pixel_values"]
    order, rng = [], random.Random(seed)
    while len(order) < steps * batch:
        epoch = list(range(len(train)))
        rng.shuffle(epoch)
        order += epoch[:len(epoch) - len(epoch) % batch]
    at = sorted({round(steps * (i + 1) / checkpoints) for i in range(checkpoints)})
    curves = {name: [{"step": 0, "seconds": 0.0, **image_probe(models[name], processor, train, test)}]
              for name in variants}
    elapsed = {name: 0.0 for name in variants}
    names = list(variants)
    for step in range(1, steps + 1):
        images = pixels[order[(step - 1) * batch:step * batch]]
        for i in range(len(names)):
            name = names[(step + i) % len(names)]
            model, optimizer = models[name], optimizers[name]
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            model(pixel_values=images).loss.backward()
            optimizer.step()
            schedulers[name].step()
            model.update_teacher(step)
            elapsed[name] += time.perf_counter() - start
        if step in at:
            for name in names:
                curves[name].append({"step": step, "seconds": elapsed[name],
                                     **image_probe(models[name], processor, train, test)})
    # Targets: what data2vec 1.0 ends at, per metric. Only trained checkpoints count as reaching one: a random
    # network that already probes that well says nothing about the cost of training.
    targets = {metric: curves[baseline][-1][metric] for metric in METRICS}
    results = {}
    for name in names:
        reached = {metric: next(({"step": p["step"], "seconds": p["seconds"]} for p in curves[name][1:]
                                 if p[metric] >= targets[metric]), None) for metric in METRICS}
        results[name] = {"config": variants[name], "seconds_per_step": elapsed[name] / steps,
                         "ratio_seconds_per_step": elapsed[name] / elapsed[baseline], "curve": curves[name],
                         "reached": reached}
    for row in results.values():
        row["saving"] = {metric: results[baseline]["reached"][metric]["seconds"] / row["reached"][metric]["seconds"]
                          if row["reached"][metric] else None for metric in METRICS}
    return {"batch": batch, "steps": steps, "train_rows": len(train), "test_rows": len(test),
            "chance": 1 / len(set(train["concept"]) | set(test["concept"])), "baseline": baseline,
            "random_init": {metric: curves[baseline][0][metric] for metric in METRICS},
            "targets": targets, "variants": results,
            # Whether 1.0 ends above its random initialisation: if not, the times above measure no learning.
            "baseline_learned": {metric: targets[metric] > curves[baseline][0][metric] for metric in METRICS}}


def print_multi_mask(part: dict) -> None:
    targets = part["targets"]
    print(f"\n2. data2vec 2.0 multi-mask vs data2vec 1.0 on built-in scene images ({part['steps']} steps of "
          f"{part['batch']} distinct images; image probes {part['train_rows']} → {part['test_rows']} rows, 30 "
          f"concepts, chance {part['chance']:.1%}; at random init: linear probe "
          f"{part['random_init']['linear_probe']:.1%}, 1-NN {part['random_init']['nearest_neighbour']:.1%})")
    print(f"  {'variant':48s} {'ms/step':>8s} {'×1.0':>6s}  linear probe / 1-NN accuracy at each checkpoint (step)")
    for name, row in part["variants"].items():
        curve = "  ".join(f"{p['step']}: {p['linear_probe']:.0%}/{p['nearest_neighbour']:.0%}" for p in row["curve"])
        print(f"  {name:48s} {1000 * row['seconds_per_step']:8.1f} {row['ratio_seconds_per_step']:6.2f}  {curve}")
    for metric in METRICS:
        print(f"  time to the {METRICS[metric]} accuracy 1.0 ends at, {targets[metric]:.1%} (first trained "
              "checkpoint at or above it):")
        for name, row in part["variants"].items():
            reached, saving = row["reached"][metric], row["saving"][metric]
            when = "not reached" if reached is None else f"step {reached['step']}, {reached['seconds']:.1f} s"
            print(f"    {name:48s} {when}" + ("" if saving is None else f"   saving vs 1.0: {saving:.2f}×"))
        if not part["baseline_learned"][metric]:
            print(f"    (1.0 ends at or below its random-init {METRICS[metric]} accuracy: this comparison measures no "
                  "learning; train longer with --steps)")


# ---- part 3 ----------------------------------------------------------------------------------------------------------
def transformers_models(size: str, processor, image_size: int, patch_size: int = 4) -> dict:
    """Transformers' three Data2Vec models with the blocks of `size` and our input settings; every parameter moved
    off its initialisation (LayerNorms off 1, biases off 0), in eval mode."""
    blocks, audio, (pos_kernel, pos_layers) = DATA2VEC_MULTIMODAL_SIZES[size]
    tokenizer = processor.tokenizer
    models = {
        "text": Data2VecTextModel(Data2VecTextConfig(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, max_position_embeddings=tokenizer.model_max_length
            + tokenizer.pad_token_id + 1, type_vocab_size=1, layer_norm_eps=1e-5, **blocks)),
        # The released pre-trained layout (facebook/data2vec-vision-base).
        "image": Data2VecVisionModel(Data2VecVisionConfig(
            image_size=image_size, patch_size=patch_size, use_shared_relative_position_bias=True, use_mask_token=True,
            layer_scale_init_value=0.1, use_mean_pooling=False, **blocks)),
        "audio": Data2VecAudioModel(Data2VecAudioConfig(
            conv_pos_kernel_size=pos_kernel, num_conv_pos_embeddings=pos_layers,
            num_conv_pos_embedding_groups=min(16, blocks["hidden_size"] // 4), **audio, **blocks)),
    }
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for model in models.values():
            for parameter in model.parameters():
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return {m: model.eval() for m, model in models.items()}


def benchmark_forward(size: str, processor, rows, image_size: int, batch: int, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    theirs = transformers_models(size, processor, image_size)
    config = data2vec_multimodal_config_from(theirs["text"].config, theirs["image"].config, theirs["audio"].config)
    ours = Data2VecMultimodalModel(config)
    # strict=False: the projections into the shared space have no source and take no part in the encoder forward.
    ours.load_state_dict(data2vec_multimodal_state_dict(
        config, **{m: model.state_dict() for m, model in theirs.items()}), strict=False)
    ours.eval()
    batch_rows = rows.select(range(batch))
    results = {}
    for modality in MODALITIES:
        our_inputs = process_rows(processor, batch_rows, (modality,))
        their_inputs = {{"audio_attention_mask": "attention_mask"}.get(k, k): v for k, v in our_inputs.items()}
        model = theirs[modality]
        theirs_states = model(**their_inputs, output_hidden_states=True).hidden_states
        our_states = ours(**our_inputs, output_hidden_states=True).hidden_states
        if len(theirs_states) != len(our_states):
            raise RuntimeError(f"{modality}: {len(theirs_states)} hidden states from transformers, {len(our_states)} "
                               "from ours.")
        max_diff = max(float((a - b).abs().max()) for a, b in zip(theirs_states, our_states))
        max_abs = max(float(a.abs().max()) for a in theirs_states)
        seconds = median_seconds({"transformers": lambda: model(**their_inputs),
                                  "ours": lambda: ours(**our_inputs)}, repeats)
        results[modality] = {
            "transformers_class": type(model).__name__, "seconds": seconds,
            "rows_per_second": {k: batch / s for k, s in seconds.items()},
            "ratio": seconds["transformers"] / seconds["ours"],
            "max_abs_diff": max_diff, "max_abs_hidden": max_abs, "outputs_equal": max_diff <= PARITY_TOLERANCE,
        }
    return {"batch": batch, "goal": FORWARD_GOAL, "tolerance": PARITY_TOLERANCE,
            "parameters": {"ours": ours.num_parameters(), **{m: t.num_parameters() for m, t in theirs.items()}},
            "modalities": results}


def print_forward(part: dict) -> None:
    print(f"\n3. Our encoder forward vs transformers' Data2Vec models, equal config, converted weights (eval, no grad, "
          f"batch {part['batch']}); throughput ratio = ours / theirs")
    print(f"  {'modality':8s} {'transformers class':20s} {'theirs rows/s':>13s} {'ours rows/s':>12s} {'ratio':>7s}"
          f"   hidden states")
    for modality, row in part["modalities"].items():
        verdict = "met" if row["ratio"] >= FORWARD_GOAL else "NOT met"
        equal = "equal" if row["outputs_equal"] else "DIFFER"
        print(f"  {modality:8s} {row['transformers_class']:20s} {row['rows_per_second']['transformers']:13.1f} "
              f"{row['rows_per_second']['ours']:12.1f} {row['ratio']:7.3f}   goal ≥ {FORWARD_GOAL}: {verdict}   "
              f"{equal}: max |ours − transformers| = {row['max_abs_diff']:.3g} (max |hidden| "
              f"{row['max_abs_hidden']:.3g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small", choices=sorted(DATA2VEC_MULTIMODAL_SIZES),
                        help="data2vec_multimodal_config_for size (default small, the recipe's)")
    parser.add_argument("--batch", type=int, help=f"rows per batch in every part (default {FULL['batch']})")
    parser.add_argument("--repeats", type=int, help=f"timed rounds in parts 1 and 3 (default {FULL['repeats']})")
    parser.add_argument("--steps", type=int, help=f"training steps per variant in part 2 (default {FULL['steps']})")
    parser.add_argument("--checkpoints", type=int, help=f"probe checkpoints in part 2 (default {FULL['checkpoints']})")
    parser.add_argument("--probe-train", type=int, help=f"training rows of part 2 and its probes (default "
                                                         f"{FULL['probe_train']})")
    parser.add_argument("--probe-test", type=int, help=f"held-out probe rows of part 2 (default {FULL['probe_test']})")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run in seconds, defaults " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()
    # --quick changes the defaults only, so `--quick --repeats 10` still takes the explicit value.
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in defaults:
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be ≥ 1, got {getattr(args, key)}.")
    if args.batch > args.probe_train:
        parser.error(f"--batch ({args.batch}) must not exceed --probe-train ({args.probe_train}): part 2's batches "
                     "hold distinct images.")
    torch.set_num_threads(args.threads)

    data = load_trimodal_dataset("scenes", num_train=args.probe_train, num_test=args.probe_test,
                                 image_size=args.image_size)
    data = data.with_format("numpy", columns=["audio"], output_all_columns=True)
    train, test = data["train"], data["test"]
    processor = Data2VecMultimodalProcessor.for_texts(train["text"], image_size=args.image_size, vocab_size=400)
    config = pretraining_config(args.size, processor, args.image_size)
    print(f"data2vec-multimodal benchmark: '{args.size}' config (H {config.hidden_size}, {config.num_hidden_layers} "
          f"blocks, {config.block_sharing}), built-in scenes ({len(train)} train / {len(test)} test rows); torch "
          f"{torch.__version__}, CPU, {args.threads} threads, medians of {args.repeats} rounds")
    results = {"size": args.size, "threads": args.threads, "repeats": args.repeats, "quick": args.quick,
               "batch": args.batch}
    results["step_vs_plain"] = benchmark_steps(config, processor, train, args.batch, args.repeats, args.seed)
    print_steps(results["step_vs_plain"])
    results["multi_mask"] = benchmark_multi_mask(args.size, processor, train, test, args.image_size, args.batch,
                                                 args.steps, args.checkpoints, args.seed)
    print_multi_mask(results["multi_mask"])
    with torch.inference_mode():
        results["forward_vs_transformers"] = benchmark_forward(args.size, processor, train, args.image_size,
                                                               args.batch, args.repeats, args.seed)
    print_forward(results["forward_vs_transformers"])

    print("\nSummary:")
    for modality, row in results["step_vs_plain"]["modalities"].items():
        print(f"  {modality:5s} data2vec step / plain masked-prediction step   {row['ratio']:.3f}  "
              f"(goal ≤ {STEP_GOAL})")
    part = results["multi_mask"]
    for name, row in part["variants"].items():
        if name != part["baseline"]:
            savings = ", ".join(f"{METRICS[m]} " + ("not reached" if row["saving"][m] is None else
                                                    f"{row['saving'][m]:.2f}×") for m in METRICS)
            print(f"  {name}: time per step {row['ratio_seconds_per_step']:.2f}× 1.0's; time to 1.0's final "
                  f"accuracy, saving: {savings}")
    for modality, row in results["forward_vs_transformers"]["modalities"].items():
        print(f"  {modality:5s} forward throughput ours / transformers        {row['ratio']:.3f}  "
              f"(goal ≥ {FORWARD_GOAL}; max |diff| {row['max_abs_diff']:.3g})")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
        print(f"Results written to {args.output}")


if __name__ == "__main__":
    main()
