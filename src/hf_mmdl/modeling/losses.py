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
