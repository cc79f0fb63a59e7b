"""Losses that architectures of the package share."""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.clip.modeling_clip import contrastive_loss as cross_entropy_to_the_diagonal


def symmetric_info_nce(first: torch.Tensor, second: torch.Tensor, logit_scale: torch.Tensor,
                       max_logit_scale: float = 100.0) -> torch.Tensor:
    """Symmetric InfoNCE (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding",
    Eq. 4) in the form CLIP trains with (Radford et al. 2021, "Learning Transferable Visual Models From Natural
    Language Supervision", Fig. 3): row i of `first` and row i of `second` are a positive pair, every other row of
    the batch is a negative.

    With rows scaled to unit length, logits_ij = exp(s)·⟨f_i, g_j⟩ for s = log(1/τ) (`logit_scale`, a scalar tensor,
    so a learned temperature τ gets its gradient through it); the loss is ½·[CE(logits, i) + CE(logitsᵀ, i)], the
    mean over the batch of cross-entropies in nats picking each row's partner among the other side's rows. exp(s) is
    clipped at `max_logit_scale` (CLIP clips it at 100, i.e. τ ≥ 0.01). Computed in float32.

    Args:
        first, second: (batch, dim) embeddings of the two views (e.g. image and text), same shape, batch ≥ 2.
        logit_scale: scalar tensor s = log(1/τ).
    Returns:
        A scalar tensor: log(batch) for embeddings that carry no information, towards 0 as pairs separate.
    Raises:
        ValueError: embeddings that are not 2-D, differ in shape, or hold fewer than 2 pairs (the negatives come
        from the batch); a `logit_scale` that is not a scalar.
    """
    if first.ndim != 2 or second.ndim != 2 or first.shape != second.shape:
        raise ValueError(f"Expected two (batch, dim) embeddings of the same shape, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}.")
    if len(first) < 2:
        raise ValueError("InfoNCE needs at least 2 pairs per batch: the other pairs of the batch are the negatives.")
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be a scalar (log of 1/temperature), got shape {tuple(logit_scale.shape)}.")
    first, second = F.normalize(first.float(), dim=-1), F.normalize(second.float(), dim=-1)
    logits = logit_scale.float().exp().clamp(max=max_logit_scale) * first @ second.T  # (batch, batch)
    # transformers' CLIP building block: cross-entropy of each row against its own index.
    return (cross_entropy_to_the_diagonal(logits) + cross_entropy_to_the_diagonal(logits.T)) / 2


class ContrastiveLoss(nn.Module):
    """[`symmetric_info_nce`] with its temperature as a parameter: s = log(1/τ), initialised to τ = `temperature`
    (CLIP: 0.07) and learned unless `learn_temperature=False`; exp(s) is clipped at `max_logit_scale`.

    `loss(first, second)` takes two (batch, dim) embeddings whose rows are positive pairs and returns a scalar.
    A `temperature` ≤ 0 raises a `ValueError`.
    """

    def __init__(self, temperature: float = 0.07, learn_temperature: bool = True, max_logit_scale: float = 100.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)), requires_grad=learn_temperature)
        self.max_logit_scale = max_logit_scale

    @property
    def temperature(self) -> float:
        """The τ in use, after clipping."""
        return 1 / min(self.logit_scale.exp().item(), self.max_logit_scale)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return symmetric_info_nce(first, second, self.logit_scale, self.max_logit_scale)


def _check_hinge_inputs(text_keys: torch.Tensor, image_keys: torch.Tensor, attention_mask: torch.Tensor,
                        margin: float) -> None:
    if text_keys.ndim != 3 or image_keys.ndim != 2 or len(text_keys) != len(image_keys) \
            or text_keys.shape[-1] != image_keys.shape[-1]:
        raise ValueError(f"Expected (batch, tokens, dim) token keys and (batch, dim) image keys of one batch, got "
                         f"{tuple(text_keys.shape)} and {tuple(image_keys.shape)}.")
    if tuple(attention_mask.shape) != tuple(text_keys.shape[:2]):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, the tokens {tuple(text_keys.shape[:2])}.")
    if not margin > 0:
        raise ValueError(f"The hinge margin must be > 0, got {margin}.")
    if not bool(attention_mask.any()):
        raise ValueError("attention_mask marks no real token: the hinge loss averages over real tokens.")


def paired_hinge_loss(text_keys: torch.Tensor, image_keys: torch.Tensor, attention_mask: torch.Tensor,
                      margin: float = 0.5) -> torch.Tensor:
    """The Vokenizer matcher's ranking loss (Tan & Bansal 2020) with its released code's negatives: the batch is cut
    into halves A and B; token i of sentence j in A is scored against its own image A_j (positive) and against image
    B_j (negative), and likewise B's sentences against A's images:

        L = Σ_{real tokens} max(0, margin − ⟨f_i, g(x)⟩ + ⟨f_i, g(x')⟩) / (number of real tokens),

    real tokens being those with attention_mask 1 ([CLS] and [SEP] included, padding excluded).

    Args:
        text_keys: (batch, tokens, dim) token keys f (unit vectors); batch must be even.
        image_keys: (batch, dim) image keys g (unit vectors), row j paired with sentence j.
        attention_mask: (batch, tokens), 1 = real token.
        margin: M > 0 (0.5 in the released matcher).
    Returns a scalar in [0, margin + 2] (float32).
    Raises ValueError for an odd batch (the halves pair up row by row), mismatched shapes, no real token, margin ≤ 0.
    """
    _check_hinge_inputs(text_keys, image_keys, attention_mask, margin)
    if len(text_keys) % 2:
        raise ValueError(f"The paired hinge loss cuts the batch into two halves whose rows are each other's negatives, "
                         f"so the batch size must be even; got {len(text_keys)}. Pass an even batch (drop_last, or an "
                         "even per-device batch size), or use loss_type='batchwise'.")
    text_keys, image_keys, mask = text_keys.float(), image_keys.float(), attention_mask.float()
    negatives = image_keys.roll(len(image_keys) // 2, dims=0)  # row j of one half ↔ row j of the other
    positive = torch.einsum("bld,bd->bl", text_keys, image_keys)
    negative = torch.einsum("bld,bd->bl", text_keys, negatives)
    return ((margin - positive + negative).clamp(min=0) * mask).sum() / mask.sum()


def batchwise_hinge_loss(text_keys: torch.Tensor, image_keys: torch.Tensor, attention_mask: torch.Tensor,
                         margin: float = 0.5) -> torch.Tensor:
    """The batch-wise variant of [`paired_hinge_loss`]: every other image of the batch is a negative of each token,

        L = Σ_{real tokens} Σ_{j ≠ own image} max(0, margin − ⟨f_i, g(x)⟩ + ⟨f_i, g(x_j)⟩) / (number of real tokens).

    Same arguments and errors (any batch ≥ 2); a scalar in [0, (batch − 1)·(margin + 2)]."""
    _check_hinge_inputs(text_keys, image_keys, attention_mask, margin)
    if len(text_keys) < 2:
        raise ValueError("The batch-wise hinge loss needs at least 2 pairs per batch: the other images are the negatives.")
    text_keys, image_keys, mask = text_keys.float(), image_keys.float(), attention_mask.float()
    scores = torch.einsum("bld,cd->blc", text_keys, image_keys)  # token of sentence b against image c
    positive = scores.diagonal(dim1=0, dim2=2).T  # (batch, tokens): scores[b, :, b]
    hinge = (margin - positive[..., None] + scores).clamp(min=0)
    not_own = 1 - torch.eye(len(image_keys), device=scores.device)[:, None, :]
    return (hinge * not_own * mask[..., None]).sum() / mask.sum()
