"""Vokenizer (Tan & Bansal, EMNLP 2020): the contextual token-to-image matcher, its ResNeXt backbone and (declared
beside them) the voken language model. The matcher's retrieval object is `hf_mmdl.vokenization.Vokenizer`."""

from transformers import AutoBackbone

from ..modeling import ResNeXtBackbone, ResNeXtConfig, VokenizerConfig, VokenizerModel
from ..modeling.modeling_vokenizer import VOKENIZER_LORA_TARGET_MODULES
from ..processing import VokenizerImageProcessor, VokenizerProcessor
from .base import Architecture, AutoEntry, CardText, Converter


def vokenizer_metrics_section(results: dict) -> str:
    """Markdown of a run's token→image recall, as `results.json` records it."""
    rows = [f"| {name} | {value:.1%} |" for name, value in results.get("recall", {}).items()]
    return "| measure | value |\n|---|---|\n" + "\n".join(rows) if rows else "No measurements recorded."


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
)

VOKENIZER = Architecture(
    name="vokenizer",
    title="Vokenizer",
    auto=(
        AutoEntry(VokenizerConfig, VokenizerModel, processor=VokenizerProcessor, image_processor=VokenizerImageProcessor,
                  lora_target_modules=VOKENIZER_LORA_TARGET_MODULES),
        AutoEntry(ResNeXtConfig, task_models={AutoBackbone: ResNeXtBackbone}),
    ),
    card=CARD,
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

__all__ = ["VOKENIZER"]
