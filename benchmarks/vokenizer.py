"""Vokenization cost, every number measured in this run, on this machine (CPU, float32). Timed rows are medians of
`--repeats` rounds after one warm-up call each; a round calls every timed function of a table once, in an order
rotated from round to round, so load from other processes hits them alike and the ratios within a table stay
meaningful.

1. Retrieval: a faiss IVF index (`hf_mmdl.vokenization.build_index(keys, "ivf")`: `nlist` k-means lists, default
   4·√N, searching the `nprobe` lists nearest each query) vs exact inner-product search (`IndexFlatIP`) over
   `--keys` unit image keys of `--dim` dimensions (the matcher's joint space), top-1 for `--queries` token keys.
   Timed: `index.search(queries, 1)` of each index (the index is built once, outside the timing; its build time is
   reported). Recall@1 = share of queries whose IVF top-1 is the exact top-1 (or scores the same). Swept over
   `nprobe` ∈ {1, 2, 4, ..., 64}; the chosen `nprobe` is the smallest reaching recall@1 ≥ 0.99, and the speed ratio
   there (exact time / IVF time) is the headline. Goal: ≥ 10× at recall@1 ≥ 0.99.

   Keys and queries are synthetic, as no trained matcher over 100k images exists offline. An image set is not
   uniform on the sphere: images come in visual kinds, so keys are drawn around `--clusters` random centres
   (key = unit(centre + 0.5/√d · noise)). A token key lies near the keys of its images, not on them (the hinge loss
   asks for a margin, not equality), so each query is a random key plus `--query-noise`/√d · noise per dimension,
   renormalised (σ = 1 puts a query at cosine ≈ 0.7 from its nearest key). The same sweep is also run on keys uniform
   on the sphere (no clusters: the worst case for k-means lists, where top-1 neighbours straddle list boundaries),
   to show where IVF stops paying.
2. End to end: tokens vokenized per second by `Vokenizer.vokenize` (tokenize, segment, the matcher's BERT with its
   last 4 layers concatenated, the token MLP, the faiss search, re-assembly per token), with the exact and with the
   IVF index of part 1 (clustered keys, the chosen `nprobe`), against the BERT forward alone on the same segments
   (the same batches of `--batch` sentences, padded alike, eval, no grad). Tokens = word pieces that get a voken
   ([CLS]/[SEP] excluded). Ratio = vokenize time / BERT time: what retrieval and the rest add. The matcher is the
   released size (`--bert base`: BERT 12L/768H, 4 layers → MLP 256 → 64) with random weights (speed does not depend
   on the weights); sentences are 2–3 built-in scene captions joined (about 25–35 word pieces each), with a WordPiece
   vocabulary trained on them.

`--quick` is a smoke run in seconds (what tests/test_vokenizer_benchmark.py runs): a few thousand keys and a tiny
BERT; its timings mean nothing.

    python benchmarks/vokenizer.py [--keys 100000] [--queries 5000] [--sentences 64] [--bert base] [--threads 1]
                                   [--output results.json]
    python benchmarks/vokenizer.py --quick --threads 1
"""

import argparse
import json
import math
import random
import time

import faiss
import numpy as np
import torch
from transformers import BertConfig, ResNetConfig

from hf_mmdl.data.scenes import describe_scene, sample_objects
from hf_mmdl.modeling import VokenizerConfig, VokenizerModel
from hf_mmdl.processing import VokenizerImageProcessor, VokenizerProcessor, train_bert_wordpiece
from hf_mmdl.vokenization import Vokenizer, build_index
from timing import median_seconds  # benchmarks/timing.py, beside this script

SPEED_GOAL, RECALL_GOAL = 10.0, 0.99
NPROBES = (1, 2, 4, 8, 16, 32, 64)
KEY_SPREAD = 0.5  # per-dimension noise × √d around a cluster centre
BERT_SIZES = {
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "small": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "tiny": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37),
}
FULL = {"keys": 100_000, "queries": 5000, "repeats": 5, "sentences": 64, "bert": "base"}
QUICK = {"keys": 4000, "queries": 400, "repeats": 2, "sentences": 8, "bert": "tiny"}


def unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def synthetic_keys(kind: str, count: int, dim: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """(count, dim) unit keys: around `clusters` random centres ("clustered") or uniform on the sphere."""
    if kind == "uniform":
        return unit(rng.standard_normal((count, dim)))
    centres = unit(rng.standard_normal((clusters, dim)))
    return unit(centres[rng.integers(0, clusters, count)] + KEY_SPREAD / math.sqrt(dim) * rng.standard_normal((count, dim)))


def queries_near(keys: np.ndarray, count: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    dim = keys.shape[1]
    return unit(keys[rng.integers(0, len(keys), count)] + noise / math.sqrt(dim) * rng.standard_normal((count, dim)))


# ---- part 1 ----------------------------------------------------------------------------------------------------------
def benchmark_retrieval(keys: np.ndarray, queries: np.ndarray, nlist: int | None, repeats: int) -> tuple[dict, object]:
    """The sweep over nprobe for one key set; returns the report and the IVF index (for part 2)."""
    start = time.perf_counter()
    exact = build_index(keys, "flat")
    build_exact = time.perf_counter() - start
    start = time.perf_counter()
    ivf = build_index(keys, "ivf", nlist=nlist)
    build_ivf = time.perf_counter() - start
    exact_scores, exact_found = exact.search(queries, 1)
    nprobes = [p for p in NPROBES if p <= ivf.nlist]

    def ivf_search(nprobe):
        def run():
            ivf.nprobe = nprobe
            return ivf.search(queries, 1)
        return run

    recall = {}
    for nprobe in nprobes:
        scores, found = ivf_search(nprobe)()
        # A different key of the same score (a tie) is as good a top-1 as the exact search's.
        hit = (found[:, 0] == exact_found[:, 0]) | (np.abs(scores[:, 0] - exact_scores[:, 0]) <= 1e-6)
        recall[nprobe] = float(hit.mean())
    seconds = median_seconds({"exact": lambda: exact.search(queries, 1),
                              **{f"ivf nprobe={p}": ivf_search(p) for p in nprobes}}, repeats)
    rows = [{"nprobe": p, "recall_at_1": recall[p], "seconds": seconds[f"ivf nprobe={p}"],
             "speedup": seconds["exact"] / seconds[f"ivf nprobe={p}"]} for p in nprobes]
    chosen = next((row for row in rows if row["recall_at_1"] >= RECALL_GOAL), None)
    report = {"keys": len(keys), "queries": len(queries), "nlist": int(ivf.nlist), "build_seconds":
              {"exact": build_exact, "ivf": build_ivf}, "exact_seconds": seconds["exact"],
              "mean_top1_score": float(exact_scores.mean()), "sweep": rows,
              "chosen": chosen, "goal_met": bool(chosen and chosen["speedup"] >= SPEED_GOAL)}
    if chosen is not None:
        ivf.nprobe = chosen["nprobe"]
    return report, ivf


def print_retrieval(part: dict) -> None:
    print(f"\n1. faiss IVF vs exact inner-product search, top-1 of {part['queries']} token keys over {part['keys']} "
          f"image keys of {part['dim']} dimensions (query noise σ = {part['query_noise']}); speedup = exact / IVF time")
    for kind, report in part["key_sets"].items():
        print(f"  {kind} keys: nlist {report['nlist']}, exact search {1000 * report['exact_seconds']:.1f} ms, build "
              f"IVF {report['build_seconds']['ivf']:.2f} s; mean top-1 cosine {report['mean_top1_score']:.2f}")
        print(f"    {'nprobe':>6s} {'recall@1':>9s} {'IVF ms':>8s} {'speedup':>8s}")
        for row in report["sweep"]:
            mark = "  ← chosen" if row == report["chosen"] else ""
            print(f"    {row['nprobe']:6d} {row['recall_at_1']:9.4f} {1000 * row['seconds']:8.2f} "
                  f"{row['speedup']:8.1f}{mark}")
        if report["chosen"] is None:
            print(f"    no nprobe up to {report['sweep'][-1]['nprobe']} reaches recall@1 ≥ {RECALL_GOAL}")


# ---- part 2 ----------------------------------------------------------------------------------------------------------
def scene_sentences(count: int, seed: int) -> list[str]:
    """`count` sentences of 2–3 built-in scene captions joined with "and" (no images are drawn)."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        parts = [rng.choice(describe_scene(sample_objects(rng, 64))) for _ in range(rng.randint(2, 3))]
        sentences.append(" and ".join(parts))
    return sentences


def matcher_for(bert: str, vocab_size: int, seed: int) -> VokenizerModel:
    torch.manual_seed(seed)
    text = BertConfig(vocab_size=vocab_size, max_position_embeddings=128, **BERT_SIZES[bert])
    vision = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")  # unused here
    return VokenizerModel(VokenizerConfig(text_config=text, vision_config=vision, lang_layers=[-4, -3, -2, -1]
                                          if text.num_hidden_layers >= 4 else [-2, -1])).eval()


def benchmark_end_to_end(bert: str, keys: np.ndarray, ivf, sentences: list[str], batch: int, repeats: int,
                         seed: int) -> dict:
    tokenizer = train_bert_wordpiece(sentences * 2, vocab_size=2000, model_max_length=128)
    processor = VokenizerProcessor(VokenizerImageProcessor.for_size(32), tokenizer)
    model = matcher_for(bert, len(tokenizer), seed)
    if model.config.joint_dim != keys.shape[1]:
        raise ValueError(f"--dim must be the matcher's joint_dim {model.config.joint_dim}, got {keys.shape[1]}.")
    vokenizers = {"exact": Vokenizer(model, processor, keys, index_type="flat"),
                  "ivf": Vokenizer(model, processor, keys, index_type="ivf", nprobe=ivf.nprobe, index=ivf)}
    # The BERT forward alone, on the batches vokenize builds: each sentence is one segment (all are shorter than
    # 126 word pieces), `batch` per forward, padded to the longest of the batch.
    batches = [tokenizer(sentences[i:i + batch], padding=True, return_tensors="pt") for i in range(0, len(sentences), batch)]
    if any(len(ids) > vokenizers["exact"].max_tokens for b in batches for ids in b["input_ids"]):
        raise ValueError("A sentence is longer than one segment: the BERT-only baseline would not match vokenize.")

    def bert_forward():
        with torch.no_grad():
            for inputs in batches:
                model.lang_model.backbone(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])

    results = vokenizers["exact"].vokenize(sentences, batch_size=batch)
    tokens = sum(int((r.vokens != -100).sum()) for r in results)
    top1 = float(np.mean(np.concatenate([r.scores[r.vokens != -100] for r in results])))
    agree = float(np.mean(np.concatenate([(a.vokens == b.vokens)[a.vokens != -100] for a, b in
                                          zip(results, vokenizers["ivf"].vokenize(sentences, batch_size=batch))])))
    seconds = median_seconds({"bert_forward": bert_forward,
                              **{f"vokenize_{name}": (lambda v=v: v.vokenize(sentences, batch_size=batch))
                                 for name, v in vokenizers.items()}}, repeats)
    return {"bert": bert, "bert_layers": model.config.text_config.num_hidden_layers,
            "hidden_size": model.config.text_config.hidden_size, "sentences": len(sentences), "batch": batch,
            "tokens": tokens, "tokens_per_sentence": tokens / len(sentences), "keys": len(keys),
            "nprobe": int(ivf.nprobe), "ivf_voken_agreement": agree, "mean_top1_score": top1, "seconds": seconds,
            "tokens_per_second": {name: tokens / s for name, s in seconds.items()},
            "ratio": {name: seconds[f"vokenize_{name}"] / seconds["bert_forward"] for name in vokenizers}}


def print_end_to_end(part: dict) -> None:
    print(f"\n2. Vokenizer.vokenize end to end vs the BERT forward alone ({part['sentences']} sentences, "
          f"{part['tokens_per_sentence']:.1f} word pieces each, batches of {part['batch']}; BERT {part['bert_layers']}L/"
          f"{part['hidden_size']}H; {part['keys']} keys, IVF nprobe {part['nprobe']}); ratio = time / BERT forward time")
    print(f"  {'':28s} {'tokens/s':>10s} {'ratio':>7s}")
    for name, label in (("bert_forward", "BERT forward alone"), ("vokenize_exact", "vokenize, exact search"),
                        ("vokenize_ivf", "vokenize, IVF search")):
        ratio = 1.0 if name == "bert_forward" else part["ratio"][name.removeprefix("vokenize_")]
        print(f"  {label:28s} {part['tokens_per_second'][name]:10.0f} {ratio:7.3f}")
    print(f"  IVF vokens equal to the exact ones for {part['ivf_voken_agreement']:.2%} of tokens (mean top-1 cosine "
          f"{part['mean_top1_score']:.2f}: a random matcher's token keys lie far from the synthetic image keys, unlike "
          "part 1's queries, so this agreement is not part 1's recall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, help=f"image keys in the store (default {FULL['keys']})")
    parser.add_argument("--queries", type=int, help=f"token keys searched in part 1 (default {FULL['queries']})")
    parser.add_argument("--repeats", type=int, help=f"timed rounds (default {FULL['repeats']})")
    parser.add_argument("--sentences", type=int, help=f"sentences vokenized in part 2 (default {FULL['sentences']})")
    parser.add_argument("--bert", choices=sorted(BERT_SIZES), help=f"the matcher's BERT size (default {FULL['bert']})")
    parser.add_argument("--batch", type=int, default=32, help="sentences per BERT forward (vokenize's default 32)")
    parser.add_argument("--dim", type=int, default=64, help="key dimensions (the released matcher's joint_dim 64)")
    parser.add_argument("--clusters", type=int, default=1000, help="cluster centres of the clustered keys")
    parser.add_argument("--query-noise", type=float, default=1.0, help="σ of a query's offset from its key, × 1/√d")
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: build_index's 4·√N)")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds, defaults " + ", ".join(
        f"--{k} {v}" for k, v in QUICK.items()))
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args()
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("keys", "queries", "repeats", "sentences", "batch", "dim", "clusters", "threads"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be ≥ 1, got {getattr(args, key)}.")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"Vokenizer benchmark: torch {torch.__version__}, faiss {faiss.__version__}, CPU, {args.threads} thread(s), "
          f"medians of {args.repeats} rounds")
    rng = np.random.default_rng(args.seed)
    results = {"threads": args.threads, "repeats": args.repeats, "quick": args.quick}
    retrieval = {"dim": args.dim, "keys": args.keys, "queries": args.queries, "query_noise": args.query_noise,
                 "clusters": args.clusters, "speed_goal": SPEED_GOAL, "recall_goal": RECALL_GOAL, "key_sets": {}}
    indexes, key_sets = {}, {}
    for kind in ("clustered", "uniform"):
        key_sets[kind] = synthetic_keys(kind, args.keys, args.dim, args.clusters, rng)
        queries = queries_near(key_sets[kind], args.queries, args.query_noise, rng)
        retrieval["key_sets"][kind], indexes[kind] = benchmark_retrieval(key_sets[kind], queries, args.nlist,
                                                                         args.repeats)
    results["retrieval"] = retrieval
    print_retrieval(retrieval)
    results["end_to_end"] = benchmark_end_to_end(args.bert, key_sets["clustered"], indexes["clustered"],
                                                 scene_sentences(args.sentences, args.seed), args.batch, args.repeats,
                                                 args.seed)
    print_end_to_end(results["end_to_end"])

    print("\nSummary:")
    for kind, report in retrieval["key_sets"].items():
        chosen = report["chosen"]
        if chosen is None:
            print(f"  {kind:9s} keys: IVF (nlist {report['nlist']}) never reaches recall@1 ≥ {RECALL_GOAL}")
        else:
            verdict = "met" if report["goal_met"] else "NOT met"
            print(f"  {kind:9s} keys: IVF nlist {report['nlist']} nprobe {chosen['nprobe']}: {chosen['speedup']:.1f}× "
                  f"faster than exact at recall@1 {chosen['recall_at_1']:.4f}  (goal ≥ {SPEED_GOAL:g}× at ≥ "
                  f"{RECALL_GOAL}: {verdict})")
    part = results["end_to_end"]
    print(f"  vokenize / BERT forward time: exact {part['ratio']['exact']:.3f}, IVF {part['ratio']['ivf']:.3f}  "
          f"({part['tokens_per_second']['vokenize_ivf']:.0f} tokens/s vokenized with IVF)")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
        print(f"Results written to {args.output}")


if __name__ == "__main__":
    main()
