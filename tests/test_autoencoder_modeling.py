"""The continuous VAE and the DALL-E dVAE: shapes, objectives, schedules, AutoencoderKL compatibility. Save/load,
return_dict, checkpointing, bf16, learning a batch and LoRA: the model contract (tests/test_vae_contract.py,
tests/test_dvae_contract.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from transformers import AutoProcessor

from hf_mmdl import DiscreteVAEConfig, DiscreteVAEImageProcessor, DiscreteVAEModel, ImageVAEConfig, ImageVAEModel
from hf_mmdl.modeling import convert_autoencoder_kl, map_pixels, unmap_pixels
from hf_mmdl.modeling.modeling_dvae import gumbel_softmax, kl_to_uniform_prior, logit_laplace_nll

from model_contract import REORDERED_FLOAT32

TINY_VAE = dict(
    block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    norm_num_groups=8, latent_dim=8, sample_size=16,
)
TINY_DVAE = dict(group_count=2, n_blk_per_group=1, n_hid=16, vocab_size=64, n_init=16)


def tiny_vae(**overrides) -> ImageVAEModel:
    torch.manual_seed(0)
    return ImageVAEModel(ImageVAEConfig(**(TINY_VAE | overrides))).eval()


def tiny_dvae(**overrides) -> DiscreteVAEModel:
    torch.manual_seed(0)
    return DiscreteVAEModel(DiscreteVAEConfig(**(TINY_DVAE | overrides))).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_vae_outputs_reconstructions_latents_and_the_negative_elbo(images):
    model = tiny_vae()
    out = model(images * 2 - 1)
    assert out.reconstruction.shape == images.shape and 0 <= out.reconstruction.min() <= out.reconstruction.max() <= 1
    assert out.latents.shape == out.latent_mean.shape == (3, 8)
    dims = images[0].numel()
    assert torch.allclose(out.loss, ((out.reconstruction_nll + out.kl) / dims).mean())
    assert torch.allclose(out.bits_per_dim, (out.reconstruction_nll + out.kl) / (dims * math.log(2)) + 7)
    # KW Eq. 10: −KL = ½ Σ (1 + log σ² − μ² − σ²)
    kl = -0.5 * (1 + out.latent_logvar - out.latent_mean**2 - out.latent_logvar.exp()).sum(1)
    assert torch.allclose(out.kl, kl, atol=1e-5)


def test_vae_samples_the_posterior_in_training_and_decodes_its_mean_in_eval(images):
    model = tiny_vae()
    pixels = images * 2 - 1
    assert torch.equal(model(pixels).latents, model(pixels).latents)
    assert torch.allclose(model(pixels).reconstruction, model.reconstruct(pixels))
    model.train()
    assert not torch.equal(model(pixels).latents, model(pixels).latents)


def test_bernoulli_likelihood_is_binary_cross_entropy(images):
    model = tiny_vae(likelihood="bernoulli")
    out = model(images * 2 - 1, return_dict=True)
    logits = model.decode(out.latents).logits
    assert torch.allclose(out.reconstruction_nll, F.binary_cross_entropy_with_logits(logits, images, reduction="none").sum((1, 2, 3)), atol=1e-4)


def test_kl_warmup_follows_the_schedule_step():
    model = tiny_vae(beta=4.0, kl_warmup_steps=100)
    model.set_schedule_step(0)
    assert model.current_kl_weight() == 0.0
    model.set_schedule_step(50)
    assert model.current_kl_weight() == pytest.approx(2.0)
    model.set_schedule_step(1000)
    assert model.current_kl_weight() == 4.0
    model.set_schedule_step(None)
    assert model.current_kl_weight() == 4.0


def test_vae_sample_and_interpolate_return_images(images):
    model = tiny_vae()
    samples = model.sample(5, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 3, 16, 16) and 0 <= samples.min() <= samples.max() <= 1
    path = model.interpolate(images[0] * 2 - 1, images[1] * 2 - 1, steps=6)
    assert path.shape == (6, 3, 16, 16)
    # The path's ends are decoded in a batch of 6, the reconstructions alone, so the sums may run in another order:
    # measured up to 1.6e-6 over 10 seeds with 1 and 2 threads (REORDERED_FLOAT32 reasons it out).
    assert torch.allclose(path[0], model.reconstruct(images[:1] * 2 - 1)[0], **REORDERED_FLOAT32)
    assert torch.allclose(path[-1], model.reconstruct(images[1:2] * 2 - 1)[0], **REORDERED_FLOAT32)
    spherical = model.interpolate(images[0] * 2 - 1, images[1] * 2 - 1, steps=6, spherical=True)
    assert torch.allclose(spherical[0], path[0], atol=1e-5) and not torch.allclose(spherical[2], path[2])


def test_spatial_latent_works_at_any_size():
    model = tiny_vae(latent_type="spatial", latent_channels=4)
    out = model(torch.zeros(2, 3, 24, 32))
    assert out.latents.shape == (2, 4, 12, 16) and out.reconstruction.shape == (2, 3, 24, 32)


def test_an_autoencoder_kl_converts_with_identical_latents_and_reconstructions(images):
    torch.manual_seed(0)
    reference = AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, latent_channels=4, sample_size=16,
    ).eval()
    ours = convert_autoencoder_kl(reference)
    pixels = images * 2 - 1
    with torch.no_grad():
        theirs_dist, ours_dist = reference.encode(pixels).latent_dist, ours.encode(pixels).latent_dist
        assert torch.equal(theirs_dist.mean, ours_dist.mean) and torch.equal(theirs_dist.logvar, ours_dist.logvar)
        assert torch.equal(reference.decode(theirs_dist.mean).sample, ours.decode(ours_dist.mean).sample)
        assert torch.equal(((reference(pixels).sample + 1) / 2).clamp(0, 1), ours(pixels).reconstruction)


def test_dvae_released_defaults_have_the_published_size_and_names():
    with torch.device("meta"):
        model = DiscreteVAEModel(DiscreteVAEConfig())
    assert sum(p.numel() for p in model.encoder.parameters()) == 53_786_240
    assert sum(p.numel() for p in model.decoder.parameters()) == 43_829_766
    keys = model.state_dict().keys()
    assert sum(k.startswith("encoder.") for k in keys) == 74 and sum(k.startswith("decoder.") for k in keys) == 76
    assert model.decoder.blocks.input.weight.shape == (128, 8192, 1, 1)  # the codebook: 8192 embeddings of 128
    assert model.config.effective_kl_weight == pytest.approx(6.6)
    assert model.config.num_layers == 8 and model.encoder.blocks.group_1.block_1.post_gain == 1 / 64


def test_dvae_tokens_and_the_one_hot_decode_path(images):
    model = tiny_dvae()
    pixels = map_pixels(images)
    tokens = model.get_codebook_indices(pixels)
    assert tokens.shape == (3, 8, 8) and tokens.dtype == torch.long
    one_hot = F.one_hot(tokens, 64).permute(0, 3, 1, 2).float()
    via_conv = model.unmap_pixels(torch.sigmoid(model.decoder(one_hot)[:, :3]))
    # The same ops on the same one-hot tensor (measured identical over 10 seeds, 1 and 2 threads): any tolerance is
    # a margin; 1e-6 on pixels in [0, 1] is far below what decoding another token changes.
    assert torch.allclose(model.decode_code(tokens), via_conv, atol=1e-6)
    assert torch.allclose(model(pixels).reconstruction, via_conv, atol=1e-6)  # eval mode decodes the argmax


def test_map_and_unmap_pixels_round_trip(images):
    mapped = map_pixels(images)
    assert mapped.min() >= 0.1 - 1e-6 and mapped.max() <= 0.9 + 1e-6
    # Two affine maps of values ≤ 1, each rounding by ≤ eps/2 = 6e-8 (measured 6e-8 worst over 10 seeds).
    assert torch.allclose(unmap_pixels(mapped), images, atol=1e-6)


def test_kl_to_the_uniform_prior_is_zero_for_uniform_logits_and_log_k_for_a_one_hot():
    # Σ p (log p + log K) over K = 64 terms of size log K / K: rounding at eps = 1.2e-7 relative of log K = 4.2 gives
    # ~5e-7 (measured 4.8e-7, a margin of 2 to 1e-6), so allow 1e-5; a wrong KL is off by order log K.
    assert torch.allclose(kl_to_uniform_prior(torch.zeros(1, 64, 2, 2)), torch.zeros(1, 2, 2), atol=1e-5)
    peaked = torch.full((1, 64, 1, 1), -1e4)
    peaked[:, 3] = 0
    assert torch.allclose(kl_to_uniform_prior(peaked), torch.tensor(math.log(64)), atol=1e-5)


def test_logit_laplace_density_integrates_to_one():
    grid = torch.linspace(1e-4, 1 - 1e-4, 200_001)
    density = torch.exp(-logit_laplace_nll(grid, torch.tensor(0.3), torch.tensor(-1.0)))
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=2e-3)


def test_dvae_objective_is_app_a2_normalised(images):
    model = tiny_dvae()
    model.train()
    model.set_schedule_step(10_000_000)
    out = model(map_pixels(images), generator=torch.Generator().manual_seed(0))
    beta = model.config.effective_kl_weight
    assert beta == pytest.approx(6.6 * 3 * 4 / 192)  # 2× tokens on RGB: 12 values per position instead of 192
    assert torch.allclose(out.loss, ((out.reconstruction_nll + beta * out.kl) / images[0].numel()).mean())
    assert out.temperature.item() == pytest.approx(1 / 16)


def test_dvae_temperature_and_beta_follow_cosine_schedules():
    model = tiny_dvae(kl_warmup_steps=100, temperature_anneal_steps=1000)
    model.set_schedule_step(0)
    assert (model.current_temperature(), model.current_kl_weight()) == (1.0, 0.0)
    model.set_schedule_step(500)
    assert model.current_temperature() == pytest.approx((1 + 1 / 16) / 2)
    assert model.current_kl_weight() == pytest.approx(model.config.effective_kl_weight)


def test_dvae_relaxation_is_soft_and_sharpens_as_temperature_falls(images):
    model = tiny_dvae(temperature_anneal_steps=100)
    model.train()
    pixels = map_pixels(images)
    peaks = []
    for step in (0, 100):
        model.set_schedule_step(step)
        logits = model.encoder(pixels)
        relaxed = F.softmax((logits + 0) / model.current_temperature(), dim=1)
        peaks.append(relaxed.max(1).values.mean().item())
        out = model(pixels, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        assert model.encoder.blocks.input.weight.grad.abs().sum() > 0  # gradients reach the encoder through the soft codes
        model.zero_grad()
    assert peaks[1] > peaks[0]
    # The relaxation itself divides by τ: the same logits and noise give softmax((logits + g) / τ).
    logits = torch.randn(2, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    for temperature in (0.1, 1.0, 10.0):
        noise = gumbel_softmax(torch.zeros_like(logits), 1.0, torch.Generator().manual_seed(1)).log()
        torch.testing.assert_close(gumbel_softmax(logits, temperature, torch.Generator().manual_seed(1)),
                                   F.softmax((logits + noise) / temperature, dim=1), rtol=1e-4, atol=1e-5)


def test_auto_processor_resolves_the_image_processor(tmp_path):
    tiny_dvae().save_pretrained(tmp_path)
    DiscreteVAEImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, DiscreteVAEImageProcessor) and processor.do_map_pixels


@pytest.mark.parametrize("count, error", [(2.5, TypeError), ("3", TypeError), (True, TypeError), (0, ValueError)])
def test_vae_sample_names_a_bad_image_count(count, error):
    with pytest.raises(error, match="num_images must be"):
        tiny_vae().sample(count)


@pytest.mark.parametrize("shape", [(1, 0, 0), (0, 2, 2), (1, 2, 0)])
def test_dvae_decode_code_refuses_an_empty_token_grid(shape):
    with pytest.raises(ValueError, match=r"decode_code needs at least one image of at least 1×1 tokens"):
        tiny_dvae().decode_code(torch.zeros(shape, dtype=torch.long))
