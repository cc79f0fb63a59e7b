"""The Vokenizer matcher (Tan & Bansal, "Vokenization: Improving Language Understanding with Contextualized,
Visual-Grounded Supervision", EMNLP 2020): a contextual token-to-image relevance model.

Token side: the concatenated last-K hidden states of a BERT at each token → MLP → unit vector f(w_i; s). Image side:
the globally averaged last feature map of a CNN → MLP → unit vector g(x). Relevance r(w_i, x; s) = ⟨f, g⟩, a cosine.
Trained with a hinge ranking loss on captioned images; `hf_mmdl.vokenization.Vokenizer` then retrieves, for every
token of any text, the image of a fixed set with the highest relevance (its "voken").

Attribute names follow the released code (`lang_model.backbone`, `lang_model.mlp`, `visn_model.backbone`,
`visn_model.mlp`), so its state dicts map onto this model with few renames (`hf-mmdl convert vokenizer-matcher`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone, BertModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_vokenizer import VokenizerConfig
from .inputs import check_float_tensor, check_token_ids, check_values, to_model_dtype
from .loading import CheckedSaveLoadMixin
from .losses import batchwise_hinge_loss, paired_hinge_loss

# peft `LoraConfig(target_modules=...)`: the text encoder's attention queries and values (the frozen BERT adapted)
# and the four linear layers of the two MLP heads.
VOKENIZER_LORA_TARGET_MODULES = (r".*lang_model\.backbone\.encoder\.layer\.\d+\.attention\.self\.(query|value)"
                                 r"|.*(lang|visn)_model\.mlp\.(0|3)")


def joint_mlp(in_features: int, config: VokenizerConfig) -> nn.Sequential:
    """Linear → ReLU → Dropout → Linear, indexed 0..3 as in the released code (`mlp.0`, `mlp.3`)."""
    return nn.Sequential(nn.Linear(in_features, config.mlp_hidden_size), nn.ReLU(), nn.Dropout(config.dropout),
                         nn.Linear(config.mlp_hidden_size, config.joint_dim))


@dataclass
class VokenizerModelOutput(ModelOutput):
    """Outputs of [`VokenizerModel`].

    Args:
        loss: the hinge ranking loss (scalar), for paired text and images.
        logits_per_token: (batch, tokens, batch) relevance r(w_i, x_c; s_b) of token i of sentence b with image c of
            the batch, in [-1, 1]; padding positions are scored too (mask them with the attention mask).
        text_keys: (batch, tokens, joint_dim) unit-length token keys f(w_i; s).
        image_keys: (batch, joint_dim) unit-length image keys g(x).
    """

    loss: torch.FloatTensor | None = None
    logits_per_token: torch.FloatTensor | None = None
    text_keys: torch.FloatTensor | None = None
    image_keys: torch.FloatTensor | None = None


class VokenizerLangModel(nn.Module):
    """The token side: a BERT (`backbone`) and the MLP head (`mlp`) over its concatenated `lang_layers`."""

    def __init__(self, config: VokenizerConfig):
        super().__init__()
        self.layers = list(config.lang_layers)
        self.backbone = BertModel(config.text_config, add_pooling_layer=True)  # the released state dict has a pooler
        self.mlp = joint_mlp(config.text_config.hidden_size * len(self.layers), config)

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               output_hidden_states=True).hidden_states
        features = torch.cat([hidden[layer] for layer in self.layers], dim=-1)
        return F.normalize(self.mlp(features), dim=-1)


class VokenizerVisnModel(nn.Module):
    """The image side: a transformers backbone (`backbone`), global average pooling, the MLP head (`mlp`)."""

    def __init__(self, config: VokenizerConfig):
        super().__init__()
        self.backbone = AutoBackbone.from_config(config.vision_config)
        self.mlp = joint_mlp(self.backbone.channels[-1], config)

    def forward(self, pixel_values) -> torch.Tensor:
        feature_map = self.backbone(pixel_values).feature_maps[-1]
        return F.normalize(self.mlp(feature_map.mean(dim=(2, 3))), dim=-1)


class VokenizerPreTrainedModel(CheckedSaveLoadMixin, PreTrainedModel):
    config: VokenizerConfig
    base_model_prefix = "vokenizer"
    main_input_name = "input_ids"
    input_modalities = ("text", "image")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["BertLayer"]
    # Trainer must not pass num_items_in_batch: the loss is already a mean over real tokens.
    accepts_loss_kwargs = False


class VokenizerModel(VokenizerPreTrainedModel):
    """The matcher: `forward(input_ids, attention_mask, pixel_values)` returns token keys, image keys, the relevance of
    every token with every image of the batch and, for paired captions and images (row b of each), the hinge loss
    (`config.loss_type`). Either side alone is encoded by `get_text_keys` / `get_image_keys`.

    Inputs (as [`VokenizerProcessor`] returns them):
        input_ids: (batch, tokens) int64 BERT ids, at most `text_config.max_position_embeddings` tokens.
        attention_mask: (batch, tokens), 1 = real token (default: all real).
        token_type_ids: (batch, tokens), optional (default: all 0).
        pixel_values: (batch, channels, height, width) float images, finite.
        return_loss: compute the loss (default: whenever both text and images are given).

    Errors: `ValueError`/`TypeError` naming the input for float or empty or over-long ids, ids outside the vocabulary,
    integer / NaN / wrongly shaped pixels, text and image batches of different sizes, a loss without both sides, and
    an odd batch for the paired loss.
    """

    def __init__(self, config: VokenizerConfig):
        super().__init__(config)
        self.lang_model = VokenizerLangModel(config)
        self.visn_model = VokenizerVisnModel(config)
        self.post_init()
        if config.freeze_text_backbone:
            self.lang_model.backbone.requires_grad_(False)
        if config.freeze_vision_backbone:
            self.visn_model.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        """Frozen backbones stay in eval mode (no dropout; batch-norm statistics never updated): those frozen by the
        config, and any whose parameters all had `requires_grad` turned off (by LoRA, or by hand), whose statistics
        are base weights too."""
        super().train(mode)
        for backbone, frozen in ((self.lang_model.backbone, self.config.freeze_text_backbone),
                                 (self.visn_model.backbone, self.config.freeze_vision_backbone)):
            if frozen or not any(p.requires_grad for p in backbone.parameters()):
                backbone.eval()
        return self

    def _text_inputs(self, input_ids, attention_mask, token_type_ids):
        text = self.config.text_config
        check_token_ids(input_ids, "input_ids", text.vocab_size, text.max_position_embeddings)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        elif tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids "
                             f"{tuple(input_ids.shape)}; pass the processor's mask with its ids.")
        if token_type_ids is not None and tuple(token_type_ids.shape) != tuple(input_ids.shape):
            raise ValueError(f"token_type_ids has shape {tuple(token_type_ids.shape)} but input_ids "
                             f"{tuple(input_ids.shape)}.")
        return attention_mask

    def _check_pixels(self, pixel_values):
        check_float_tensor(pixel_values, "pixel_values", ndim=4)
        channels = self.config.vision_config.num_channels
        if pixel_values.shape[1] != channels:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} channels but the vision backbone reads "
                             f"{channels}; prepare the images with the model's processor.")
        check_values(pixel_values, "pixel_values")
        return to_model_dtype(pixel_values, self.dtype)

    def get_text_keys(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """(batch, tokens, joint_dim) unit-length token keys f(w_i; s), one per token (padding included)."""
        attention_mask = self._text_inputs(input_ids, attention_mask, token_type_ids)
        return self.lang_model(input_ids, attention_mask, token_type_ids)

    def get_image_keys(self, pixel_values) -> torch.Tensor:
        """(batch, joint_dim) unit-length image keys g(x)."""
        return self.visn_model(self._check_pixels(pixel_values))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, pixel_values=None,
                return_loss: bool | None = None, return_dict: bool | None = None):
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if input_ids is None and pixel_values is None:
            raise ValueError("Pass input_ids (captions through the processor) and/or pixel_values (images).")
        if input_ids is not None and pixel_values is not None and len(input_ids) != len(pixel_values):
            raise ValueError(f"Batch mismatch: {len(input_ids)} captions (input_ids) but {len(pixel_values)} images "
                             "(pixel_values); paired inputs need one image per caption.")
        if return_loss is None:
            return_loss = input_ids is not None and pixel_values is not None
        if return_loss and (input_ids is None or pixel_values is None):
            raise ValueError("The hinge loss needs paired input_ids and pixel_values; pass both or return_loss=False.")
        text_keys = image_keys = logits = loss = None
        if input_ids is not None:
            attention_mask = self._text_inputs(input_ids, attention_mask, token_type_ids)
            text_keys = self.lang_model(input_ids, attention_mask, token_type_ids)
        if pixel_values is not None:
            image_keys = self.visn_model(self._check_pixels(pixel_values))
        if text_keys is not None and image_keys is not None:
            logits = torch.einsum("bld,cd->blc", text_keys, image_keys)
            if return_loss:
                hinge = paired_hinge_loss if self.config.loss_type == "paired" else batchwise_hinge_loss
                loss = hinge(text_keys, image_keys, attention_mask, self.config.margin)
        output = VokenizerModelOutput(loss=loss, logits_per_token=logits, text_keys=text_keys, image_keys=image_keys)
        return output if return_dict else output.to_tuple()


__all__ = ["VOKENIZER_LORA_TARGET_MODULES", "VokenizerModel", "VokenizerModelOutput", "VokenizerPreTrainedModel"]
