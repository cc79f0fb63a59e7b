"""Check that the tests catch realistic bugs: apply each mutation (one find/replace in one source file) to a scratch
copy of the repository, run only the tests meant to catch it, and report "caught" or "SURVIVED".

    python tools/mutation_check.py            # every mutation
    python tools/mutation_check.py -k gumbel  # those whose name contains "gumbel"
    python tools/mutation_check.py --list

The real tree is never modified: each mutation gets a fresh copy of `src/`, `tests/` and the files the tests read,
imported through `PYTHONPATH=<copy>/src`. Exits 1 if any mutation survives (or if a find string no longer occurs, so
that a refactoring cannot silently turn a mutation into a no-op).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    find: str  # must occur exactly once
    replace: str
    tests: tuple[str, ...]  # pytest node ids or `file::-k expression` selections meant to catch it


PIPE = "src/hf_mmdl/pipelines/pipeline_glide.py"
M2 = "src/hf_mmdl/modeling/modeling_m2.py"
D2V = "src/hf_mmdl/modeling/modeling_data2vec_multimodal.py"
REPR = "src/hf_mmdl/representations.py"

MUTATIONS = [
    Mutation(
        "glide: inpainting never pastes the known pixels during sampling (only the final composite)", PIPE,
        'if "inpaint_mask" in conditions:', "if False:",
        ("tests/test_glide_pipeline.py::test_every_inpainting_step_samples_from_the_pasted_prediction",),
    ),
    Mutation(
        "glide: inpainting pastes the known pixels only at the last step", PIPE,
        'if "inpaint_mask" in conditions:', 'if "inpaint_mask" in conditions and t == self.scheduler.timesteps[-1]:',
        ("tests/test_glide_pipeline.py::test_every_inpainting_step_samples_from_the_pasted_prediction",),
    ),
    Mutation(
        "glide: the unconditional guidance pass reuses the prompt", PIPE,
        "text=prompts + negatives if guided", "text=prompts + prompts if guided",
        ("tests/test_glide_pipeline.py::test_guidance_scale_zero_samples_the_empty_caption",),
    ),
    Mutation(
        "glide: classifier-free guidance pushes away from the prompt (sign flipped)", PIPE,
        "guidance_scale * (conditional[:, :3] - unconditional[:, :3])",
        "guidance_scale * (unconditional[:, :3] - conditional[:, :3])",
        ("tests/test_glide_pipeline.py::test_guidance_scale_one_is_the_conditional_pass_and_zero_the_unconditional",),
    ),
    Mutation(
        "dvae: gumbel-softmax ignores the temperature τ", "src/hf_mmdl/modeling/modeling_dvae.py",
        "/ temperature, dim=1)", "/ 1.0, dim=1)",
        ("tests/test_autoencoder_modeling.py::test_dvae_relaxation_is_soft_and_sharpens_as_temperature_falls",),
    ),
    Mutation(
        "vae: the KL term is dropped from the loss", "src/hf_mmdl/modeling/modeling_vae.py",
        "loss = ((nll + kl_weight * kl) / dims).mean()", "loss = (nll / dims).mean()",
        ("tests/test_autoencoder_modeling.py::test_vae_outputs_reconstructions_latents_and_the_negative_elbo",),
    ),
    Mutation(
        "m2: region_attention_mask ignored (zero-feature test instead)", M2,
        "visible = region_attention_mask.bool()", "visible = (features != 0).any(dim=-1)",
        ("tests/test_m2_modeling.py::test_padded_regions_do_not_change_outputs_with_the_correct_mask",),
    ),
    Mutation(
        "m2: the meshed gates bypass their modules (LoRA adapters on them do nothing)", M2,
        "torch.sigmoid(gate(torch.cat([queries, cross[:, i]], dim=-1)))",
        "torch.sigmoid(F.linear(torch.cat([queries, cross[:, i]], dim=-1), gate.weight, gate.bias))",
        ("tests/test_m2_contract.py::TestM2RegionContract::test_lora_trains_only_the_declared_adapters_which_change_the_output_and_reload",),
    ),
    Mutation(
        "m2: generate's default decoding falls back from beam search to greedy", "src/hf_mmdl/modeling/modeling_m2.py",
        "self.generation_config.length_penalty = 0.0", "self.generation_config.length_penalty = 0.0\n        self.generation_config.num_beams = 1",
        ("tests/test_m2_modeling.py::test_beam_search_returns_the_best_scoring_beam_first",),
    ),
    Mutation(
        "m2 converter: query and key projections swapped (same shape)", "src/hf_mmdl/convert/m2_original.py",
        "return re.sub(pattern, replacement, key)",
        'return re.sub(pattern, replacement, key).replace(".q_proj.", ".T.").replace(".k_proj.", ".q_proj.").replace(".T.", ".k_proj.")',
        ("tests/test_m2_convert.py::test_each_original_tensor_lands_under_the_reference_name_with_its_values",),
    ),
    Mutation(
        "dvae converter: two same-shaped convolutions of each block swapped", "src/hf_mmdl/convert/dvae_original.py",
        "renamed[f\"{prefix}{match[1]}.",
        "renamed[f\"{prefix}{match[1].replace('conv_2', 'conv_X').replace('conv_3', 'conv_2').replace('conv_X', 'conv_3')}.",
        ("tests/test_dvae_convert.py::test_every_original_tensor_is_mapped_once_and_gives_the_original_outputs",),
    ),
    Mutation(
        "glide converter: UNet attention queries and keys swapped", "src/hf_mmdl/convert/glide_original.py",
        '[f"{dst}.to_{x}.{p}" for x in "qkv"]', '[f"{dst}.to_{x}.{p}" for x in "kqv"]',
        ("tests/test_glide_convert.py::test_every_original_tensor_is_mapped_once_and_outputs_match",),
    ),
    Mutation(
        "benchmark: the guided-step ratio is reported inverted", "benchmarks/glide.py",
        '"ratio": per_step["pipeline_ancestral"] / per_step["denoise"],',
        '"ratio": per_step["denoise"] / per_step["pipeline_ancestral"],',
        ("tests/test_glide_benchmark.py::test_quick_benchmark_reports_all_three_comparisons_on_a_saved_pipeline",),
    ),
    Mutation(
        "m2 scst: the self-critical stage trains with learning rate 0", "src/hf_mmdl/training/captioning.py",
        "learning_rate=training_args.scst_learning_rate,", "learning_rate=0.0,",
        ("tests/test_m2_scst.py::test_scst_raises_test_cider_of_the_cross_entropy_checkpoint",),
    ),
    Mutation(
        "m2 scst: the baseline is not subtracted (plain REINFORCE on CIDEr)", "src/hf_mmdl/training/scst.py",
        "advantage = rewards - rewards.mean(dim=1, keepdim=True)", "advantage = rewards",
        ("tests/test_m2_scst.py::test_self_critical_loss_pushes_up_beams_above_the_image_mean_reward",),
    ),
    Mutation(
        "data2vec: the teacher update swaps τ and 1 − τ (the teacher jumps to the student)", D2V,
        "teacher.float() * tau + student.detach().float() * (1 - tau)",
        "teacher.float() * (1 - tau) + student.detach().float() * tau",
        ("tests/test_data2vec_multimodal_modeling.py::test_the_teacher_starts_as_the_student_and_follows_equation_1",),
    ),
    Mutation(
        "data2vec: targets come from the student's blocks, not the EMA teacher's", D2V,
        "_, ffn_outputs = run_layers(self.teacher_layers, embedded, model.expert(modality))",
        "_, ffn_outputs = run_layers(model.layers, embedded, model.expert(modality))",
        ("tests/test_data2vec_multimodal_modeling.py::test_targets_come_from_the_teacher_whatever_the_student_blocks_do",),
    ),
    Mutation(
        "data2vec: every modality routed to the text expert", D2V,
        'return "shared" if self.config.block_sharing == "shared" else modality',
        'return "shared" if self.config.block_sharing == "shared" else "text"',
        ("tests/test_data2vec_multimodal_modeling.py::test_modality_experts_share_attention_and_route_ffns_by_input_modality",),
    ),
    Mutation(
        "data2vec: block masks are not trimmed to the exact share", D2V,
        "row[chosen] = surplus < 0", "row[chosen] = row[chosen]",
        ("tests/test_data2vec_multimodal_modeling.py::test_block_masks_cover_exactly_the_asked_share_in_rectangles",),
    ),
    Mutation(
        "data2vec recipe: paired batches are never drawn", "src/hf_mmdl/training/data2vec_multimodal.py",
        "if rng.random() < self.paired_fraction:", "if rng.random() < 0:",
        ("tests/test_data2vec_multimodal_training.py::test_batches_follow_the_modality_ratios_and_the_paired_fraction",),
    ),
    Mutation(
        "data2vec recipe: the width and depth flags never reach the model's config",
        "src/hf_mmdl/training/data2vec_multimodal.py",
        "**{name: getattr(m, name) for name in BLOCK_FIELDS if getattr(m, name) is not None},", "",
        ("tests/test_study_multimodal.py::test_parameters_grow_along_the_size_sweep",),
    ),
    Mutation(
        "data2vec recipe: a run of one modality still measures all three", "src/hf_mmdl/training/data2vec_multimodal.py",
        "return MODALITIES if paired_fraction > 0 else", "return MODALITIES if True else",
        ("tests/test_study_multimodal.py::test_unimodal_runs_report_only_their_modality",),
    ),
    Mutation(
        "study: the unimodal runs keep their paired batches (they train every modality)", "examples/study_multimodal.py",
        'modality_ratios=f"{m}=1", paired_fraction=0)', 'modality_ratios=f"{m}=1")',
        ("tests/test_study_multimodal.py::test_unimodal_runs_report_only_their_modality",),
    ),
    Mutation(
        "data2vec converter: audio queries land on the keys", "src/hf_mmdl/convert/data2vec_unimodal.py",
        """(rf"{_BLOCK['audio']}attention\\.q_proj\\.{_WB}", r"layers.\\1.attention.audio.query.\\2"),""",
        """(rf"{_BLOCK['audio']}attention\\.q_proj\\.{_WB}", r"layers.\\1.attention.audio.key.\\2"),""",
        ("tests/test_data2vec_multimodal_convert.py",),
    ),
    Mutation(
        "invariance: linear CKA without centring", REPR,
        "a, b = _paired(a, b, \"linear_cka\")\n    a, b = a - a.mean(0), b - b.mean(0)",
        "a, b = _paired(a, b, \"linear_cka\")",
        ("tests/test_invariance.py::test_linear_cka_is_one_for_a_rotated_scaled_shifted_copy_and_matches_the_gram_definition",),
    ),
    Mutation(
        "invariance: the centred cosine gap does not centre", REPR,
        "    if centred:\n        a, b = a - a.mean(0), b - b.mean(0)\n", "",
        ("tests/test_invariance.py::test_centred_cosine_gap_removes_a_shared_offset_between_modalities",),
    ),
    Mutation(
        "invariance: the cosine gap by concept ignores the labels", REPR,
        "matched = labels[:, None] == labels[None, :]", "matched = torch.eye(len(a), dtype=torch.bool)",
        ("tests/test_invariance.py::test_cosine_gap_by_concept_counts_every_same_concept_pair_as_matched",),
    ),
    Mutation(
        "invariance: analogy adds the source concept's offset instead of subtracting it", REPR,
        "query = source - offset + offset[target]", "query = source + offset - offset[target]",
        ("tests/test_invariance.py::test_analogy_arithmetic_finds_the_target_concept_across_a_modality_gap",),
    ),
    Mutation(
        "invariance: analogy targets may be of the source's own concept", REPR,
        "keys[labels[:, None] == labels[None, :]] = -1.0", "keys.fill_diagonal_(-1.0)",
        ("tests/test_invariance.py::test_analogy_arithmetic_finds_the_target_concept_across_a_modality_gap",),
    ),
    Mutation(
        "invariance: analogy chance counts the query's own row", REPR,
        "(counts / (len(labels) - 1))", "(counts / len(labels))",
        ("tests/test_invariance.py::test_analogy_chance_is_the_share_of_the_target_concept_among_the_other_rows",),
    ),
    Mutation(
        "invariance: the random-init baseline is the trained model again", "src/hf_mmdl/invariance.py",
        'models["random_init"] = (Data2VecMultimodalModel(model.config).eval(), processor)',
        'models["random_init"] = (model, processor)',
        ("tests/test_invariance.py::test_analysis_measures_the_model_and_its_baselines_and_writes_tables_and_figures",),
    ),
    Mutation(
        "vokenizer: the paired loss takes the neighbouring row's image as the negative", "src/hf_mmdl/modeling/losses.py",
        "negatives = image_keys.roll(len(image_keys) // 2, dims=0)", "negatives = image_keys.roll(1, dims=0)",
        ("tests/test_vokenizer_modeling.py::test_paired_hinge_loss_matches_a_hand_computation",),
    ),
    Mutation(
        "vokenizer: padding counts in the hinge loss's average", "src/hf_mmdl/modeling/losses.py",
        "return ((margin - positive + negative).clamp(min=0) * mask).sum() / mask.sum()",
        "return ((margin - positive + negative).clamp(min=0) * mask).sum() / mask.numel()",
        ("tests/test_vokenizer_modeling.py::test_paired_hinge_loss_matches_a_hand_computation",),
    ),
    Mutation(
        "vokenizer: a frozen vision backbone updates its batch-norm statistics", "src/hf_mmdl/modeling/modeling_vokenizer.py",
        "            if frozen or not any(p.requires_grad for p in backbone.parameters()):",
        "            if False:",
        ("tests/test_vokenizer_modeling.py::test_frozen_backbones_get_no_gradient_and_stay_in_eval_mode",),
    ),
    Mutation(
        "vokenization: segments are not framed with [CLS]/[SEP]", "src/hf_mmdl/vokenization.py",
        "batch = [[tokenizer.cls_token_id, *ids, tokenizer.sep_token_id] for ids in segments[start:start + batch_size]]",
        "batch = [[*ids] for ids in segments[start:start + batch_size]]",
        ("tests/test_vokenization.py::test_top1_vokens_are_the_argmax_of_the_relevance_and_specials_get_minus_100",),
    ),
    Mutation(
        "vokenization: over-long sentences are truncated instead of segmented", "src/hf_mmdl/vokenization.py",
        "            for length in segment_lengths(len(positions), longest):",
        "            for length in [min(len(positions), longest)]:",
        ("tests/test_vokenization.py::test_over_long_sentences_are_cut_into_near_equal_framed_segments",),
    ),
    Mutation(
        "revokenization: overlap scored by intersection alone", "src/hf_mmdl/vokenization.py",
        "iou = (min(e, end) - max(s, start)) / (max(e, end) - min(s, start))",
        "iou = min(e, end) - max(s, start)",
        ("tests/test_vokenization.py::test_align_by_overlap_picks_the_highest_intersection_over_union",),
    ),
    Mutation(
        "vokenizer converter: position_ids kept as a weight", "src/hf_mmdl/convert/vokenizer_original.py",
        "        if _DROPPED.match(key):\n            continue\n", "",
        ("tests/test_vokenizer_convert.py",),
    ),
    Mutation(
        "vokenization: num_proc is not passed on to map (the corpus is not sharded)", "src/hf_mmdl/vokenization.py",
        "num_proc=num_proc, new_fingerprint=fingerprint", "new_fingerprint=fingerprint",
        ("tests/test_vokenization.py::test_sharding_a_corpus_across_two_processes_gives_the_one_process_column",),
    ),
    Mutation(
        "vokenization: an unpickled Vokenizer's model is freshly initialised, not loaded", "src/hf_mmdl/vokenization.py",
        "        model.load_state_dict(weights)\n", "",
        ("tests/test_vokenization.py::test_a_pickled_vokenizer_searches_as_the_original",),
    ),
    Mutation(
        "vokenization: another key store saved over a folder keeps the old thumbnails", "src/hf_mmdl/vokenization.py",
        "        elif (folder / THUMBNAILS_FILE).exists():", "        elif False:",
        ("tests/test_vokenization.py::test_thumbnails_are_kept_saved_and_reloaded_and_a_stale_file_is_removed",),
    ),
    Mutation(
        "hub: the card leaves out the folder's key store section", "src/hf_mmdl/hub.py",
        'folder_section = f"{resolve(arch.folder_section)(folder)}\\n\\n" if arch.folder_section else ""',
        'folder_section = ""',
        ("tests/test_vokenizer_hub.py::test_the_card_describes_the_key_store",),
    ),
    Mutation(
        "vokenizer benchmark: the IVF speedup is inverted", "benchmarks/vokenizer.py",
        '"speedup": seconds["exact"] / seconds[f"ivf nprobe={p}"]', '"speedup": seconds[f"ivf nprobe={p}"] / seconds["exact"]',
        ("tests/test_vokenizer_benchmark.py",),
    ),
]


def scratch_copy(destination: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the repository (the working tree as a commit would see it,
    uncommitted edits included), without caches or build output."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run(mutation: Mutation, base: Path, timeout: float) -> tuple[str, float, str]:
    """(verdict, seconds, last output lines) for one mutation, in its own copy of `base`."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as scratch:
        copy = Path(scratch) / "repo"
        shutil.copytree(base, copy)
        target = copy / mutation.path
        text = target.read_text()
        if text.count(mutation.find) != 1:
            return "STALE (find string occurs %d times)" % text.count(mutation.find), 0.0, ""
        target.write_text(text.replace(mutation.find, mutation.replace))
        env = dict(os.environ, PYTHONPATH=str(copy / "src"), PYTHONDONTWRITEBYTECODE="1")
        started = time.time()
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
                cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return "SURVIVED (timed out)", time.time() - started, ""
        seconds = time.time() - started
        tail = "\n".join(result.stdout.strip().splitlines()[-3:])
        if result.returncode == 1:  # pytest: tests ran and some failed
            return "caught", seconds, tail
        if result.returncode == 0:
            return "SURVIVED", seconds, tail
        return f"ERROR (pytest exit {result.returncode})", seconds, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this text")
    parser.add_argument("--exclude", default=None, help="skip mutations whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutation's tests (default 600)")
    parser.add_argument("-v", action="store_true", help="print the tail of pytest's output for each mutation")
    args = parser.parse_args()
    selected = [m for m in MUTATIONS if args.k in m.name and not (args.exclude and args.exclude in m.name)]
    if args.list:
        for mutation in selected:
            print(f"{mutation.name}\n    {mutation.path}\n    " + "\n    ".join(mutation.tests))
        return 0
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="mutation-base-") as base:
        scratch_copy(Path(base))
        for mutation in selected:
            verdict, seconds, tail = run(mutation, Path(base), args.timeout)
            survivors += verdict != "caught"
            print(f"{verdict:8s} {seconds:6.1f}s  {mutation.name}", flush=True)
            if args.v or verdict != "caught":
                print("          " + tail.replace("\n", "\n          "), flush=True)
    print(f"{len(selected) - survivors}/{len(selected)} mutations caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
