"""Cross-architecture pieces: the symmetric InfoNCE loss, step-driven schedules, pixel maps."""

import math

import pytest
import torch
import torch.nn.functional as F

from hf_mmdl.modeling import map_pixels, unmap_pixels
from hf_mmdl.modeling.inputs import check_image_batch
from hf_mmdl.modeling.losses import ContrastiveLoss, symmetric_info_nce
from hf_mmdl.modeling.schedules import StepScheduled, cosine_ramp

from test_autoencoder_modeling import tiny_dvae, tiny_vae


def pairs(batch=8, dim=16, noise=0.1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    first = torch.randn(batch, dim, generator=generator)
    return first, first + noise * torch.randn(batch, dim, generator=generator)


def test_info_nce_is_lowest_for_the_matched_pairs():
    first, second = pairs()
    loss = ContrastiveLoss()
    matched = loss(first, second)
    for shift in range(1, len(first)):  # every cyclic shift pairs each row with another row's partner
        assert matched < loss(first, second.roll(shift, dims=0))
    assert matched < math.log(len(first)) < loss(first, second.roll(1, dims=0))


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0])
def test_info_nce_scales_the_similarities_by_the_temperature(temperature):
    # Orthonormal pairs: cosine 1 with the partner, 0 with the rest, so each direction's cross-entropy is
    # log(1 + (n − 1)·exp(−1/τ)); a loss that ignored τ would give one value for all three temperatures.
    unit = torch.eye(4, 8)
    expected = math.log(1 + 3 * math.exp(-1 / temperature))
    assert ContrastiveLoss(temperature)(unit, unit).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_averages_both_directions():
    first, second = pairs(batch=5, noise=1.0, seed=1)
    scale = torch.tensor(math.log(1 / 0.2))
    logits = F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T / 0.2
    rows, columns = -logits.log_softmax(1).diagonal().mean(), -logits.log_softmax(0).diagonal().mean()
    assert rows != pytest.approx(columns.item())  # so that a one-directional loss would fail below
    torch.testing.assert_close(symmetric_info_nce(first, second, scale), (rows + columns) / 2)
    torch.testing.assert_close(symmetric_info_nce(second, first, scale), symmetric_info_nce(first, second, scale))


def test_the_temperature_is_learned_through_its_log_and_clipped():
    first, second = pairs()
    loss = ContrastiveLoss(temperature=0.5)
    loss(first, second).backward()
    # Matched pairs separate better at a lower temperature: the gradient raises log(1/τ).
    assert loss.logit_scale.grad < 0
    frozen = ContrastiveLoss(temperature=0.5, learn_temperature=False)
    assert not frozen.logit_scale.requires_grad and frozen.temperature == pytest.approx(0.5)
    clipped = ContrastiveLoss(temperature=0.001)
    assert clipped.temperature == pytest.approx(0.01)
    torch.testing.assert_close(clipped(first, second), ContrastiveLoss(temperature=0.01)(first, second))


@pytest.mark.parametrize(
    "first, second, message",
    [
        (torch.zeros(4), torch.zeros(4), "Expected two \\(batch, dim\\) embeddings"),
        (torch.zeros(4, 8), torch.zeros(4, 6), "of the same shape"),
        (torch.zeros(1, 8), torch.zeros(1, 8), "at least 2 pairs"),
    ],
)
def test_bad_embeddings_are_named(first, second, message):
    with pytest.raises(ValueError, match=message):
        ContrastiveLoss()(first, second)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ContrastiveLoss(temperature=0)


def test_the_autoencoders_follow_the_step_schedule_protocol():
    assert isinstance(tiny_vae(), StepScheduled) and isinstance(tiny_dvae(), StepScheduled)
    assert not isinstance(torch.nn.Linear(2, 2), StepScheduled)
    assert cosine_ramp(0, 100, 1.0, 0.0) == 1.0 and cosine_ramp(50, 100, 1.0, 0.0) == pytest.approx(0.5)
    assert cosine_ramp(200, 100, 1.0, 0.0) == 0.0 and cosine_ramp(5, 0, 1.0, 0.0) == 0.0


def test_pixel_maps_and_image_checks_live_in_one_place():
    import hf_mmdl.modeling.inputs as inputs
    import hf_mmdl.processing.image_processing_autoencoders as autoencoder_processing

    assert map_pixels is inputs.map_pixels and autoencoder_processing.unmap_pixels is unmap_pixels
    images = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(unmap_pixels(map_pixels(images)), images)
    with pytest.raises(ValueError, match="divisible by 4"):
        check_image_batch(torch.zeros(1, 3, 6, 6), channels=3, multiple=4)
