"""data2vec-multimodal: data2vec's student/EMA-teacher self-distillation (Baevski et al., ICML 2022; data2vec 2.0,
ICML 2023) over text, images and audio in one Transformer with modality experts (VLMo, BEiT-3)."""

from transformers import (
    AutoModelForAudioClassification, AutoModelForImageClassification, AutoModelForPreTraining,
    AutoModelForSequenceClassification, AutoModelForZeroShotImageClassification,
)

from ..modeling import (
    Data2VecMultimodalConfig, Data2VecMultimodalForAudioClassification, Data2VecMultimodalForImageClassification,
    Data2VecMultimodalForPreTraining, Data2VecMultimodalForSequenceClassification,
    Data2VecMultimodalForZeroShotClassification, Data2VecMultimodalModel,
)
from ..modeling.modeling_data2vec_multimodal import DATA2VEC_MULTIMODAL_LORA_TARGET_MODULES
from ..processing import Data2VecMultimodalImageProcessor, Data2VecMultimodalProcessor
from .base import Architecture, AutoEntry, CardText, Converter, Quickstart, dataset_description

MODALITY_ORDER = ("text", "image", "audio")


def data2vec_results_table(results: dict) -> str:
    """Markdown: probes of the student and the EMA teacher against the random-init network (— where the run skipped
    that baseline), retrieval against chance and the no-pairs model (no retrieval section for a run of one
    modality)."""
    trained = results["trained"]
    # Folders trained before the EMA teacher was measured have no "teacher" entry; "random_init" is absent when the
    # run skipped that baseline.
    columns = [("student", trained), ("EMA teacher", results.get("teacher")),
               ("random init", results.get("random_init", {}))]
    columns = [(name, report) for name, report in columns if report is not None]
    names = " | ".join(name for name, _ in columns)
    lines = [f"| held-out rows | linear probe: {names} | 1-NN: {names} |",
             "|---" * (1 + 2 * len(columns)) + "|"]
    for m in MODALITY_ORDER:
        if m in trained["probe"]:
            cells = [f"{report[measure][m]:.1%}" if report else "—"
                     for measure in ("probe", "nearest_neighbour") for _, report in columns]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if not trained["retrieval"]:
        return "\n".join(lines)
    no_pairs = results.get("no_pairs")
    header = "| retrieval (paired test rows) | R@1 | R@5 | concept R@1 |"
    lines += ["", header + (" no pairs: R@1 | R@5 | concept R@1 |" if no_pairs else ""),
              "|---" * (4 + 3 * bool(no_pairs)) + "|"]
    for direction, scores in trained["retrieval"].items():
        row = f"| {direction} | **{scores['R@1']:.1%}** | {scores['R@5']:.1%} | {scores['concept R@1']:.1%} |"
        if no_pairs:
            other = no_pairs["retrieval"][direction]
            row += f" {other['R@1']:.1%} | {other['R@5']:.1%} | {other['concept R@1']:.1%} |"
        lines.append(row)
    chance = results["chance"]
    lines.append(f"| chance | {chance['R@1']:.1%} | {chance['R@5']:.1%} | {chance['concept R@1']:.1%} |"
                 + (" | | |" if no_pairs else ""))
    return "\n".join(lines)


def data2vec_metrics_section(results: dict) -> str:
    return (f"{results['test_rows']} held-out rows of {dataset_description(results)} (image, caption and spoken "
            f"caption of one concept each), measured in the same run as the baselines.\n\n{data2vec_results_table(results)}")


CARD = CardText(
    title="data2vec-multimodal: one self-distilled encoder for text, images and audio",
    description=(
        "data2vec (Baevski et al., *data2vec: A General Framework for Self-supervised Learning in Speech, Vision and "
        "Language*, ICML 2022) trains a student on masked input to regress, at the masked steps, the average of the "
        "top-K layer-normalised FFN outputs of an exponential-moving-average teacher that sees the whole input. Here "
        "one set of Transformer blocks serves text, images and 16 kHz audio, with modality-expert FFNs behind a "
        "shared self-attention (VLMo, BEiT-3), per-modality masking (BERT 15 % 80/10/10, BEiT blocks, wav2vec 2.0 "
        "spans), data2vec 2.0's multi-mask and sparse image student as options, and paired batches that add a "
        "cross-modal term (contrastive and/or regression of the partner's pooled teacher target). The input "
        "encoders are transformers' Data2Vec ones. Implemented in the hf_mmdl package as a transformers "
        "`PreTrainedModel`."
    ),
    citation=(
        "@inproceedings{baevski2022data2vec,\n  title={data2vec: A General Framework for Self-supervised Learning in "
        "Speech, Vision and Language},\n  author={Baevski, Alexei and Hsu, Wei-Ning and Xu, Qiantong and Babu, Arun "
        "and Gu, Jiatao and Auli, Michael},\n  booktitle={International Conference on Machine Learning (ICML)},\n"
        "  year={2022}\n}"
    ),
    pipeline_tag="feature-extraction",
    tags=("data2vec", "multimodal", "self-supervised", "audio", "image", "text", "hf_mmdl"),
    usage=(
        "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
        "from transformers import AutoModel, AutoProcessor\n\n"
        'model = AutoModel.from_pretrained("{repo_id}")\n'
        'processor = AutoProcessor.from_pretrained("{repo_id}")\n'
        'text = model.get_text_features(**processor(text=["a small red circle"]))\n'
        "image = model.get_image_features(**processor(images=[image]))\n"
        "audio = model.get_audio_features(**processor(audio=[waveform_16khz], sampling_rate=16000))\n"
        "similarity = text @ image.T  # unit-length embeddings in one space\n```"
    ),
    limits=(
        "A small model trained on the package's built-in synthetic scenes (or Twemoji) with synthetic speech knows "
        "only those concepts, voices and drawing styles. Retrieval between modalities comes from the paired batches; "
        "the data2vec objective alone does not align modalities. The image student of data2vec 2.0 (visible patches "
        "only) is implemented for images; text and audio students see mask embeddings."
    ),
    intended_use="Research on self-supervised multimodal representations, modality invariance and cross-modal retrieval.",
    evaluation=data2vec_metrics_section,
)

QUICK_RUN = dict(max_steps=300, num_train_images=600, num_test_images=300, logging_steps=50, seed=0, no_pairs_baseline=False)
FULL_RUN = dict(max_steps=1000, num_train_images=1200, num_test_images=300, logging_steps=100, seed=0)

DATA2VEC_MULTIMODAL = Architecture(
    name="data2vec_multimodal",
    title="data2vec-multimodal",
    auto=(AutoEntry(Data2VecMultimodalConfig, Data2VecMultimodalModel, {
        AutoModelForPreTraining: Data2VecMultimodalForPreTraining,
        AutoModelForSequenceClassification: Data2VecMultimodalForSequenceClassification,
        AutoModelForImageClassification: Data2VecMultimodalForImageClassification,
        AutoModelForAudioClassification: Data2VecMultimodalForAudioClassification,
        AutoModelForZeroShotImageClassification: Data2VecMultimodalForZeroShotClassification,
    }, Data2VecMultimodalImageProcessor, Data2VecMultimodalProcessor,
        lora_target_modules=DATA2VEC_MULTIMODAL_LORA_TARGET_MODULES),),
    card=CARD,
    recipe="hf_mmdl.training.data2vec_multimodal:DATA2VEC_MULTIMODAL_RECIPE",
    demo="hf_mmdl.demos.data2vec_multimodal:build_demo",
    command_aliases={"data2vec": "hf_mmdl.training.data2vec_multimodal:main"},
    converters=(Converter(
        name="data2vec",
        help="The released unimodal data2vec checkpoints (transformers' Data2VecText/Vision/Audio folders or Hub ids) "
             "into one data2vec-multimodal model with per-modality blocks.",
        function="hf_mmdl.convert.data2vec_unimodal:convert_data2vec_checkpoints",
        arguments=(
            (("output_dir",), {}),
            (("--text",), dict(default=None, help="A Data2VecTextModel folder (e.g. facebook/data2vec-text-base).")),
            (("--vision",), dict(default=None, help="A Data2VecVisionModel folder (e.g. facebook/data2vec-vision-base).")),
            (("--audio",), dict(default=None, help="A Data2VecAudioModel folder (e.g. facebook/data2vec-audio-base).")),
        ),
    ),),
    quickstart=Quickstart(
        minutes=3,
        settings=QUICK_RUN,
        full_settings=FULL_RUN,
        figures=("embedding_space.png", "losses.png", "variances.png"),
        summary="small data2vec-multimodal on built-in scenes with spoken captions: per-modality probe and 1-NN "
                "accuracy against the random-init network, cross-modal retrieval against chance (and, with --full, against the "
                "same model trained without paired batches)",
    ),
)

__all__ = ["DATA2VEC_MULTIMODAL", "data2vec_results_table"]
