"""Vokenizer (Tan & Bansal, EMNLP 2020): the contextual token-to-image matcher, its ResNeXt backbone and (declared
beside them) the voken language model. The matcher's retrieval object is `hf_mmdl.vokenization.Vokenizer`."""

from transformers import AutoBackbone, AutoModelForMaskedLM, AutoModelForPreTraining

from ..modeling import (
    ResNeXtBackbone, ResNeXtConfig, VokenBertConfig, VokenBertForPreTraining, VokenBertModel, VokenizerConfig,
    VokenizerModel,
)
from ..modeling.modeling_voken_bert import VOKEN_BERT_LORA_TARGET_MODULES
from ..modeling.modeling_vokenizer import VOKENIZER_LORA_TARGET_MODULES
from ..processing import VokenizerImageProcessor, VokenizerProcessor
from .base import Architecture, AutoEntry, CardText, Converter, Quickstart


def vokenizer_results_table(results: dict) -> str:
    """Markdown: held-out token→image recall of the matcher in context, of the same matcher embedding each token
    alone, and chance, for visually grounded tokens and for all tokens (`results["recall"]`)."""
    recall = results["recall"]
    ks = list(recall["grounded"]["chance"])  # R@1, R@5 (and concept@1 for the scenes)
    lines = [f"| tokens ({recall['images']} held-out images) | matcher | " + " | ".join(ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for subset, title in (("grounded", "visually grounded"), ("all", "all")):
        for name, label in (("contextual", "in context"), ("non_contextual", "token alone (non-contextual)"),
                            ("chance", "chance")):
            cells = " | ".join(f"{recall[subset][name][k]:.1%}" if k in recall[subset][name] else "–" for k in ks)
            lines.append(f"| {title} ({recall[subset]['tokens']}) | {label} | {cells} |")
    return "\n".join(lines)


def vokenizer_metrics_section(results: dict) -> str:
    """Markdown of a run's token→image recall, as `results.json` records it."""
    if "recall" not in results:
        return "No measurements recorded."
    return (f"Token→image recall on held-out captions of `{results.get('dataset')}`, measured in the same run as its "
            f"baselines (a token is a hit when its own caption's image is among the k most relevant).\n\n"
            f"{vokenizer_results_table(results)}")


CARD = CardText(
    title="Vokenizer: contextual token-to-image matching",
    description=(
        "The Vokenizer matcher (Tan & Bansal, *Vokenization: Improving Language Understanding with Contextualized, "
        "Visual-Grounded Supervision*, EMNLP 2020) scores every token of a sentence, in its context, against images: "
        "the concatenated last BERT layers at the token and the pooled CNN feature of the image each pass an MLP into "
        "a joint space of unit vectors, and relevance is their inner product. Trained with a hinge ranking loss on "
        "captioned images; the `hf_mmdl.vokenization.Vokenizer` saved with it retrieves, for each token, the most "
        "relevant image (its *voken*) of a fixed image set. Implemented in the hf_mmdl package as a transformers "
        "`PreTrainedModel`."
    ),
    citation=(
        "@inproceedings{tan2020vokenization,\n  title={Vokenization: Improving Language Understanding with "
        "Contextualized, Visual-Grounded Supervision},\n  author={Tan, Hao and Bansal, Mohit},\n  booktitle={Proceedings "
        "of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)},\n  year={2020}\n}"
    ),
    pipeline_tag="feature-extraction",
    tags=("vokenization", "multimodal", "retrieval", "bert", "image", "text", "hf_mmdl"),
    usage=(
        "```python\nimport hf_mmdl\nfrom hf_mmdl.vokenization import Vokenizer\n\n"
        'vokenizer = Vokenizer.from_pretrained("{repo_id}")  # matcher, processor, image keys and index\n'
        'result = vokenizer.vokenize(["a cat sits on the mat"])[0]\n'
        "print(result.tokens, result.vokens, result.scores)  # -100 at [CLS] / [SEP]\n```"
    ),
    limits=(
        "Vokens come from the image set the key store was built from; a token with no related image still gets the "
        "nearest one. The matcher knows only the words and images of its training captions."
    ),
    intended_use="Research on visually grounded supervision of language models (vokenization of text corpora).",
    evaluation=vokenizer_metrics_section,
    folder_section="hf_mmdl.vokenization:key_store_card_section",
)

# The default run: 1,500 built-in scenes (7,500 captions), 300 steps; --full: the recipe's defaults (2,000 scenes,
# 400 steps), the README's "Measured" run.
QUICK_RUN = dict(max_steps=300, num_train_images=1500, seed=0)
FULL_RUN = dict(max_steps=400, num_train_images=2000, seed=0)

VOKENIZER = Architecture(
    name="vokenizer",
    title="Vokenizer",
    auto=(
        AutoEntry(VokenizerConfig, VokenizerModel, processor=VokenizerProcessor, image_processor=VokenizerImageProcessor,
                  lora_target_modules=VOKENIZER_LORA_TARGET_MODULES),
        AutoEntry(ResNeXtConfig, task_models={AutoBackbone: ResNeXtBackbone}),
    ),
    card=CARD,
    recipe="hf_mmdl.training.vokenizer:VOKENIZER_RECIPE",
    quickstart=Quickstart(
        minutes=1,  # 45 s measured with OMP_NUM_THREADS=1 on an idle 2-core machine
        settings=QUICK_RUN,
        full_settings=FULL_RUN,
        figures=("vokens.png",),
        summary="Vokenizer matcher (random-init BERT + ResNet) on built-in captioned scenes: held-out token→image "
                "recall of visually grounded tokens against chance and the same matcher embedding each token alone; "
                "saved as a Vokenizer with a faiss key store",
    ),
    demo="hf_mmdl.demos.vokenizer:build_demo",
    converters=(Converter(
        name="vokenizer-matcher",
        help="The released Vokenizer matcher's `BEST.pth` state dict (BERT + ResNeXt-101 32x8d + MLPs) into a "
             "VokenizerModel folder.",
        function="hf_mmdl.convert.vokenizer_original:convert_vokenizer_matcher",
        arguments=(
            (("checkpoint",), dict(help="The original BEST.pth (a state dict of xmatching's JointModel).")),
            (("output_dir",), {}),
            (("--tokenizer",), dict(default=None, help="A BERT tokenizer folder or Hub id to save beside the model "
                                                       "(bert-base-uncased for the released matcher).")),
            (("--num_attention_heads",), dict(type=int, default=None, help="BERT heads; the file does not record them "
                                              "(default: hidden size / 64, as every Google BERT).")),
            (("--lang_layers",), dict(default=None, help="Comma-separated hidden-state indices the MLP reads, written --lang_layers=-4,-3,-2,-1 (default: "
                                      "the last K, K from the MLP's input width; the released matcher: -4,-3,-2,-1).")),
        ),
    ),),
)


def voken_lm_results_table(results: dict) -> str:
    """Markdown: held-out cross-entropy and accuracy of the model against the context-free baselines."""
    model, unigram = results["validation"], results["unigram_baseline"]
    lines = ["| held-out positions | MLM loss | MLM accuracy | voken loss | voken accuracy |", "|---|---|---|---|---|"]
    for name, report in ((f"{'MLM-only' if results['mlm_only'] else 'voken + MLM'} model", model),
                         ("unigram / most frequent (train)", unigram)):
        cells = ["–" if key not in report else f"{report[key]:.3f}" if "loss" in key else f"{report[key]:.1%}"
                 for key in ("mlm_loss", "mlm_accuracy", "voken_loss", "voken_accuracy")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)



def voken_lm_metrics_section(results: dict) -> str:
    return (f"{results['validation_segments']} held-out segments of `{results['dataset']}`, measured in the same run "
            f"as the context-free baselines.\n\n{voken_lm_results_table(results)}")


VOKEN_LM_CARD = CardText(
    title="Vokenization: a BERT pre-trained with voken classification",
    description=(
        "A BERT pre-trained with masked language modelling plus voken classification (Tan & Bansal, *Vokenization: "
        "Improving Language Understanding with Contextualized, Visual-Grounded Supervision*, EMNLP 2020): every token "
        "of the corpus carries the image (voken) a contextual token-image matcher retrieved for it, and the model "
        "predicts it at every token, L = L_voken + λ·L_MLM. The original CoLwithBert parameter names are kept. "
        "Fine-tune it as any BERT (`BertForSequenceClassification.from_pretrained`): no images or vokens needed. "
        "Implemented in the hf_mmdl package as a transformers `PreTrainedModel`."
    ),
    citation=(
        "@inproceedings{tan2020vokenization,\n  title={Vokenization: Improving Language Understanding with "
        "Contextualized, Visual-Grounded Supervision},\n  author={Tan, Hao and Bansal, Mohit},\n  booktitle={Proceedings "
        "of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)},\n  year={2020}\n}"
    ),
    pipeline_tag="fill-mask",
    tags=("vokenization", "bert", "fill-mask", "visually-grounded", "hf_mmdl"),
    usage=(
        "```python\nimport hf_mmdl  # registers the architecture with transformers' Auto classes\n"
        "from transformers import BertForSequenceClassification, pipeline\n\n"
        'print(pipeline("fill-mask", model="{repo_id}")("a red [MASK] on the table"))\n'
        'classifier = BertForSequenceClassification.from_pretrained("{repo_id}", num_labels=2)  # then fine-tune\n```'
    ),
    limits=(
        "The voken head only classifies into the vokenizer's image set it was trained with; vokens must come from "
        "the same tokenizer (or be revokenized). A small model pre-trained on a small corpus is a research artefact, "
        "not a general-purpose language model."
    ),
    intended_use="Research on visually grounded supervision of language models and their fine-tuning on text tasks.",
    evaluation=voken_lm_metrics_section,
)

VOKEN_LM_CONVERTER = Converter(
    name="voken-lm",
    help="airsplay/vokenization's voken-classification LMs (CoLwithBert, e.g. vlm_12L_768H_wiki): the released folder "
         "(config.json, pytorch_model.bin, vocab.txt) into a VokenBertForPreTraining folder.",
    function="hf_mmdl.convert.voken_lm:convert_voken_lm_checkpoint",
    arguments=(
        (("checkpoint",), dict(help="The released folder (config.json + pytorch_model.bin or model.safetensors), or "
                                    "a weights file with --num_attention_heads.")),
        (("output_dir",), {}),
        (("--tokenizer",), dict(default=None, help="A tokenizer folder or Hub id when the checkpoint folder has none "
                                                   "(the released models use bert-base-uncased).")),
        (("--num_attention_heads",), dict(default=None, type=int, help=(
            "Attention heads, needed only without a config.json (not stored in the weights): 8 for 6L/512H, 12 for "
            "12L/768H."))),
    ),
)
VOKEN_LM = Architecture(
    name="voken_lm",
    title="Vokenization voken LM",
    auto=(AutoEntry(VokenBertConfig, VokenBertModel, {AutoModelForPreTraining: VokenBertForPreTraining,
                                                      AutoModelForMaskedLM: VokenBertForPreTraining},
                    lora_target_modules=VOKEN_BERT_LORA_TARGET_MODULES),),
    card=VOKEN_LM_CARD,
    recipe="hf_mmdl.training.voken_lm:VOKEN_LM_RECIPE",
    converters=(VOKEN_LM_CONVERTER,),
)

__all__ = ["VOKENIZER", "VOKEN_LM", "voken_lm_results_table", "vokenizer_results_table"]
