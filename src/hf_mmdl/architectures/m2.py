"""The M² meshed-memory transformer (Cornia et al., CVPR 2020): image captioning."""

from transformers import AutoModelForImageTextToText

from ..modeling import M2Config, M2ForConditionalGeneration, M2Model
from ..modeling.modeling_m2 import M2_LORA_TARGET_MODULES
from ..processing import M2ImageProcessor, M2Processor
from .base import Architecture, AutoEntry, CardText, Converter, Quickstart, dataset_description

METRIC_NAMES = {"bleu_1": "BLEU-1", "bleu_4": "BLEU-4", "meteor": "METEOR", "rouge_l": "ROUGE-L", "cider_d": "CIDEr-D"}
RESULT_ROWS = (
    ("model", "this model"),
    ("cross_entropy_model", "its cross-entropy checkpoint (before SCST)"),
    ("constant_caption_baseline", "baseline: best constant caption"),
    ("nearest_neighbour_baseline", "baseline: nearest neighbour on raw pixels"),
)


def captioning_results_table(results: dict) -> str:
    """Markdown: test-split scores (×100) of the captioner next to its baselines."""
    rows = [("M²" + (" after SCST" if "cross_entropy_model" in results else ""), results["model"])]
    if "cross_entropy_model" in results:
        rows.append(("M² cross-entropy checkpoint", results["cross_entropy_model"]))
    rows += [("best constant caption", results["constant_caption_baseline"]),
             ("nearest neighbour (pixels)", results["nearest_neighbour_baseline"])]
    lines = ["| captioner | BLEU-1 | BLEU-4 | ROUGE-L | CIDEr-D |", "|---|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {100 * m['bleu_1']:.1f} | {100 * m['bleu_4']:.1f} | {100 * m['rouge_l']:.1f} | {100 * m['cider_d']:.1f} |")
    if "distinct_captions" in results:  # a captioner that collapsed to a few captions can still beat a constant one
        lines.append(f"\nThe model gave {results['distinct_captions']} distinct captions for the {results['test_images']} "
                     f"test images (references: {results['distinct_references']} distinct).")
    return "\n".join(lines)


def caption_metrics_section(results: dict) -> str:
    columns = [m for m in METRIC_NAMES if m in results["model"]]
    lines = ["| captioner | " + " | ".join(METRIC_NAMES[m] for m in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key, label in RESULT_ROWS:
        if key in results:
            lines.append(f"| {label} | " + " | ".join(
                f"{100 * results[key][m]:.1f}" if m in results[key] else "–" for m in columns) + " |")
    return (
        f"Test split of {dataset_description(results)}, {results.get('test_images')} images, beam search; scores ×100, "
        f"measured in the same run as the baselines ({results.get('stage', 'cross-entropy')} training).\n\n"
        + "\n".join(lines)
    )


CARD = CardText(
    title="M² meshed-memory transformer (image captioning)",
    description=(
        "M² (Cornia et al., *Meshed-Memory Transformer for Image Captioning*, CVPR 2020) encodes image regions "
        "(or backbone grid cells) with memory-augmented attention, keeps every encoder level, and lets each decoder "
        "layer attend to all levels through learned sigmoid gates (meshed connectivity). Implemented in "
        "the hf_mmdl package as a transformers `PreTrainedModel` with `generate()`."
    ),
    citation=(
        "@inproceedings{cornia2020meshed,\n  title={Meshed-Memory Transformer for Image Captioning},\n"
        "  author={Cornia, Marcella and Stefanini, Matteo and Baraldi, Lorenzo and Cucchiara, Rita},\n"
        "  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
        "  year={2020}\n}"
    ),
    pipeline_tag="image-text-to-text",
    tags=("image-captioning", "m2_transformer", "hf_mmdl"),
    usage=(
        "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline\n\n"
        'model = AutoModelForImageTextToText.from_pretrained("{repo_id}")\n'
        'processor = AutoProcessor.from_pretrained("{repo_id}")\n'
        "inputs = processor(images=[image])\n"
        "print(processor.batch_decode(model.generate(**inputs)))  # beam 5, 20 tokens, as in the paper\n\n"
        'captioner = pipeline("image-text-to-text", model="{repo_id}")\n'
        'print(captioner(image, text="")[0]["generated_text"])\n```'
    ),
    limits=(
        "Captions only what its training data describes: a model trained on the package's built-in scenes knows "
        "5 shapes, 6 colours, counts and left/right/above/below, nothing of natural images. Scores use the "
        "package's tokenisation (lower case, no punctuation) rather than the Java PTB tokenizer. Not for "
        "accessibility or safety-critical descriptions without evaluation on the target images."
    ),
    intended_use="Research on image captioning and multimodal architectures.",
    evaluation=caption_metrics_section,
)

M2 = Architecture(
    name="m2",
    title="M² meshed-memory captioner",
    auto=(AutoEntry(M2Config, M2Model, {AutoModelForImageTextToText: M2ForConditionalGeneration}, M2ImageProcessor,
                    M2Processor,
                    lora_target_modules=M2_LORA_TARGET_MODULES),),
    card=CARD,
    recipe="hf_mmdl.training.captioning:CAPTIONING_RECIPE",
    command_aliases={"captioning": "hf_mmdl.training.captioning:main"},
    converters=(Converter(
        name="m2",
        help="aimagelab/meshed-memory-transformer: the .pth and its vocab.pkl.",
        function="hf_mmdl.convert.m2_original:convert_m2_checkpoint",
        arguments=(
            (("checkpoint",), dict(help="meshed_memory_transformer.pth (or a *_best.pth of the original train.py).")),
            (("output_dir",), {}),
            (("--vocab",), dict(required=True, help="The original vocab.pkl (its word list becomes the tokenizer).")),
            (("--num_heads",), dict(required=True, type=int, help=(
                "Attention heads of the checkpoint's model: 8 for the released COCO model "
                "(meshed_memory_transformer.pth). The .pth does not record it, and a wrong value converts without "
                "an error into wrong outputs, so it must be given."))),
        ),
    ),),
    quickstart=Quickstart(
        minutes=2,
        # 32 px images, 300 steps at a fixed peak learning rate (the paper's warm-up peaks too hot for so short a
        # run), 100 test images scored with 3 beams and without METEOR's Java start-up.
        settings=dict(image_size=32, max_steps=300, paper_schedule=False, learning_rate=2e-3, warmup_steps=50,
                      num_train_images=2000,
                      num_eval_images=100, num_beams=3, meteor=False, eval_strategy="no", save_strategy="no",
                      logging_steps=50, seed=1234),
        full_settings=dict(max_steps=1200, warmup_steps=500, num_train_images=4000, num_eval_images=250,
                           eval_strategy="no", save_strategy="no", logging_steps=100, seed=1234),
        figures=("test_captions.png",),
        summary="M² captioner on the built-in scenes: test CIDEr-D against the best constant caption and "
                "nearest-neighbour retrieval on raw pixels",
    ),
    demo="hf_mmdl.demos.m2:build_demo",
)
