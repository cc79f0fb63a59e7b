"""The visually-supervised language model of Vokenization (Tan & Bansal, EMNLP 2020): BERT pre-trained with masked
language modelling plus voken classification.

Every token of a vokenized corpus carries a voken, the id of the image that a contextual token-image matcher
retrieved for it. The model predicts, at every token, the token itself where it was masked (BERT's MLM head) and its
voken (a classification head over the voken set): L = L_voken + λ·L_MLM. The attribute names are the original
`CoLwithBert`'s (`bert` without pooler, `cls`, `visual_cls_head`), so its checkpoints load without renaming, and the
encoder's names are transformers' BERT ones, so a saved folder fine-tunes as a plain `BertForSequenceClassification`
(the voken head is then dropped: fine-tuning needs neither images nor vokens).
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertModel
from transformers.models.bert.modeling_bert import BertOnlyMLMHead, BertPreTrainedModel
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_voken_bert import VokenBertConfig
from .inputs import check_class_labels, check_token_ids
from .loading import CheckedSaveLoadMixin

# peft `LoraConfig(target_modules=...)` (a regex peft matches against whole module names): the query and value
# projections of every self-attention of the encoder, as LoRA's paper adapts them; the heads stay frozen.
VOKEN_BERT_LORA_TARGET_MODULES = r"(bert\.)?encoder\.layer\.\d+\.attention\.self\.(query|value)"


@dataclass
class VokenBertForPreTrainingOutput(ModelOutput):
    """
    Outputs of [`VokenBertForPreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): L = L_voken + mlm_ratio·L_MLM given both kinds of
            labels, L_voken given `voken_labels` alone, the unweighted L_MLM given `labels` alone (the MLM-only
            baseline).
        mlm_loss (`torch.FloatTensor` of shape `()`, *optional*): Cross-entropy of the masked tokens (given `labels`).
        voken_loss (`torch.FloatTensor` of shape `()`, *optional*): Cross-entropy of the vokens (given `voken_labels`).
        logits (`torch.FloatTensor` of shape `(batch, tokens, vocab_size)`): MLM scores.
        voken_logits (`torch.FloatTensor` of shape `(batch, tokens, voken_size)`): Voken-classification scores.
        hidden_states, attentions: as transformers' BERT returns them when asked.
    """

    loss: torch.FloatTensor | None = None
    mlm_loss: torch.FloatTensor | None = None
    voken_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    voken_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class VokenBertPreTrainedModel(CheckedSaveLoadMixin, BertPreTrainedModel):
    config_class = VokenBertConfig
    config: VokenBertConfig


class VokenBertModel(CheckedSaveLoadMixin, BertModel):
    """transformers' `BertModel` under [`VokenBertConfig`], without pooler by default as in the pre-training model,
    so `AutoModel.from_pretrained` of a voken-LM folder gives its encoder with every weight loaded."""

    config_class = VokenBertConfig
    config: VokenBertConfig

    def __init__(self, config: VokenBertConfig, add_pooling_layer: bool = False):
        super().__init__(config, add_pooling_layer=add_pooling_layer)


class VokenClassificationHead(nn.Module):
    """V6: voken scores W·LN(GELU(D·h)) + b at every token, D [H, H], W [voken_size, H] (the original's
    `BertVLMClassificationHead`: exact-erf GELU whatever `hidden_act` says, LayerNorm with BERT's epsilon)."""

    def __init__(self, config: VokenBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.GELU()
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.voken_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.activation(self.dense(hidden_states))))


def _mean_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions with a label (≠ −100); exactly 0, still attached to the graph, when a
    batch has none (a short batch with no masked token), where `F.cross_entropy` would return NaN."""
    labels = labels.reshape(-1)
    counted = (labels != -100).sum()
    total = nn.functional.cross_entropy(logits.reshape(labels.numel(), -1).float(), labels, reduction="sum")
    return total / counted.clamp(min=1)


class VokenBertForPreTraining(VokenBertPreTrainedModel):
    """BERT with its MLM head (`cls`, decoder tied to the word embeddings) and the voken-classification head
    (`visual_cls_head`), trained with L = L_voken + λ·L_MLM (V7, λ = `config.mlm_ratio`).

    Also the model of the `fill-mask` pipeline (`AutoModelForMaskedLM`): its `logits` are the MLM scores."""

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }
    # Trainer passes `num_items_in_batch` to models whose forward takes **kwargs; the losses here are per-batch
    # means as in the original, so gradient accumulation averages them the usual way.
    accepts_loss_kwargs = False

    def __init__(self, config: VokenBertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.visual_cls_head = VokenClassificationHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    def check_inputs(self, input_ids, attention_mask, labels, voken_labels) -> None:
        """Clear errors for what users pass by mistake (see `forward`)."""
        check_token_ids(input_ids, "input_ids", self.config.vocab_size, self.config.max_position_embeddings)
        shape = tuple(input_ids.shape)
        if attention_mask is not None and tuple(attention_mask.shape) != shape:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids {shape}.")
        if labels is not None:
            check_class_labels(labels, "labels", shape, self.config.vocab_size, "token ids")
        if voken_labels is not None:
            check_class_labels(voken_labels, "voken_labels", shape, self.config.voken_size,
                               "vokens: config.voken_size")

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        voken_labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> VokenBertForPreTrainingOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, tokens)`): Token ids (masked by the collator in training), at
            most `max_position_embeddings` tokens.
        labels (`torch.LongTensor` of shape `(batch, tokens)`, *optional*): The original ids at masked positions,
            −100 elsewhere; gives `mlm_loss`.
        voken_labels (`torch.LongTensor` of shape `(batch, tokens)`, *optional*): The voken of each token, in
            [0, voken_size), −100 at special tokens, padding and (with `voken_labels` "mask"/"nonmask") the tokens
            left out; gives `voken_loss`.
        **kwargs: `output_hidden_states`, `output_attentions` and the like, passed to transformers' BERT.

        Returns a [`VokenBertForPreTrainingOutput`] (a tuple led by the loss with `return_dict=False`). `loss` sums
        the terms whose labels were given: both for voken pre-training, `labels` alone for the MLM-only baseline.

        Raises `ValueError` for empty or over-long `input_ids`, ids outside the vocabulary, or labels of another
        shape than `input_ids` or outside their classes (e.g. a voken id ≥ `voken_size`).
        """
        self.check_inputs(input_ids, attention_mask, labels, voken_labels)
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, return_dict=True, **kwargs)
        sequence_output = outputs.last_hidden_state
        logits = self.cls(sequence_output)
        voken_logits = self.visual_cls_head(sequence_output)

        mlm_loss = _mean_cross_entropy(logits, labels) if labels is not None else None
        voken_loss = _mean_cross_entropy(voken_logits, voken_labels) if voken_labels is not None else None
        loss = None
        if voken_loss is not None:
            loss = voken_loss if mlm_loss is None else voken_loss + self.config.mlm_ratio * mlm_loss
        elif mlm_loss is not None:
            loss = mlm_loss
        return VokenBertForPreTrainingOutput(
            loss=loss, mlm_loss=mlm_loss, voken_loss=voken_loss, logits=logits, voken_logits=voken_logits,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
        )


__all__ = ["VOKEN_BERT_LORA_TARGET_MODULES", "VokenBertForPreTraining", "VokenBertForPreTrainingOutput",
           "VokenBertModel", "VokenBertPreTrainedModel", "VokenClassificationHead"]
