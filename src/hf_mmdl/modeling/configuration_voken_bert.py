"""Configuration of the visually-supervised BERT of Vokenization (Tan & Bansal, EMNLP 2020): a BERT pre-trained with
masked language modelling plus voken classification."""

from transformers import BertConfig

from .loading import ModelTypeCheckedConfig

VOKEN_LABEL_MODES = ("all", "mask", "nonmask")


class VokenBertConfig(ModelTypeCheckedConfig, BertConfig):
    r"""
    Configuration of [`VokenBertForPreTraining`]: every field of transformers' `BertConfig` (the text encoder and
    the MLM head) plus the voken-classification head and the weight of the two losses. A saved folder also loads as
    a plain BERT (`BertForSequenceClassification.from_pretrained(folder)` reads this file as a `BertConfig`).

    Args:
        voken_size (`int`): |X|, the number of vokens (images of the vokenizer's key set) the voken head classifies
            into; 50,000 for the released models (the first 50k Visual Genome images not in COCO).
        mlm_ratio (`float`): λ in L = L_voken + λ·L_MLM (≥ 0; 1.0 in the original scripts). 0 trains the voken
            head alone, as the original's `--mlm_ratio 0`.
        voken_labels (`str`): Which real tokens carry a voken target during pre-training, applied by
            [`DataCollatorForVokenLanguageModeling`]: `"all"` (the original default), `"mask"` (the masked tokens
            only) or `"nonmask"` (the unmasked ones only). Special tokens and padding never do.

    Raises `ValueError` for `voken_size` < 1, a negative or non-finite `mlm_ratio`, or an unknown `voken_labels`.
    """

    model_type = "voken_bert"

    voken_size: int = 50000
    mlm_ratio: float = 1.0
    voken_labels: str = "all"

    def __post_init__(self, **kwargs):
        if isinstance(self.voken_size, bool) or not isinstance(self.voken_size, int) or self.voken_size < 1:
            raise ValueError(f"voken_size must be an int ≥ 1 (the number of images in the voken set), got "
                             f"{self.voken_size!r}.")
        if not isinstance(self.mlm_ratio, (int, float)) or not 0 <= self.mlm_ratio < float("inf"):
            raise ValueError(f"mlm_ratio (λ, the weight of the MLM loss) must be a finite number ≥ 0, got "
                             f"{self.mlm_ratio!r}.")
        if self.voken_labels not in VOKEN_LABEL_MODES:
            raise ValueError(f"voken_labels must be one of {VOKEN_LABEL_MODES}, got {self.voken_labels!r}.")
        super().__post_init__(**kwargs)


# The two sizes of the paper (Table 1), with the original vocabulary (bert-base-uncased) and voken set.
VOKEN_BERT_SIZES = {
    "6L_512H": dict(num_hidden_layers=6, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "12L_768H": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}


__all__ = ["VOKEN_BERT_SIZES", "VOKEN_LABEL_MODES", "VokenBertConfig"]
