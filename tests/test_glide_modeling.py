"""GLIDE's model: caption transformer, ADM UNet on diffusers blocks, the hybrid loss and the model variants."""

import math

import pytest
import torch
from transformers import AutoConfig

from hf_mmdl import GlideConfig, GlideModel, GlideTextConfig, GlideTextModel
from hf_mmdl.modeling import inpainting_model_from, random_erase_masks
from hf_mmdl.modeling.modeling_glide import GlideDiffusion, normal_kl

PAD = 0


def tiny_config(**overrides) -> GlideConfig:
    """glide.md §6's unit-test size: 16×16, C 32, mult (1, 2), 1 res block, attention at 8, text 32 wide, ctx 8."""
    text = GlideTextConfig(vocab_size=50, text_ctx=8, width=32, num_layers=1, num_attention_heads=2, pad_token_id=PAD)
    kwargs = dict(text_config=text, image_size=16, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                  attention_resolutions=(8,), num_head_channels=32, dropout=0.0)
    return GlideConfig(**(kwargs | overrides))


def tiny_glide(**overrides) -> GlideModel:
    torch.manual_seed(0)
    return GlideModel(tiny_config(**overrides)).eval()


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=generator) * 2 - 1
    input_ids = torch.randint(1, 50, (2, 8), generator=generator)
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 3:] = 0
    input_ids[1, 3:] = PAD
    return {"pixel_values": images, "input_ids": input_ids, "attention_mask": attention_mask}


def test_a_fresh_model_predicts_zero_and_returns_the_hybrid_loss(batch):
    model = tiny_glide()
    out = model(**batch, timesteps=torch.tensor([3, 700]))
    assert out.model_output.shape == (2, 6, 16, 16)
    assert out.model_output.abs().max() == 0  # ADM's zero-initialised output convolution
    torch.testing.assert_close(out.loss, out.mse + 0.001 * 1000 * out.vlb)


def test_the_empty_caption_is_the_learned_padding_sequence():
    text = GlideTextModel(tiny_config().text_config).eval()
    mask = torch.zeros(2, 8, dtype=torch.long)
    a = text(torch.randint(0, 50, (2, 8)), mask).last_hidden_state
    b = text(torch.randint(0, 50, (2, 8)), mask).last_hidden_state
    torch.testing.assert_close(a, b)
    assert text(torch.randint(0, 50, (2, 8)), torch.ones(2, 8)).pooler_output.shape == (2, 32)


def test_caption_dropout_empties_captions_only_in_training(batch):
    model = tiny_glide(caption_dropout=0.999999)
    input_ids, mask = model.drop_captions(batch["input_ids"], batch["attention_mask"])
    assert (input_ids == PAD).all() and (mask == 0).all()
    model.train()
    torch.manual_seed(0)
    dropped = model(**batch, timesteps=torch.tensor([5, 5]), noise=torch.zeros(2, 3, 16, 16))
    empty = dict(batch, input_ids=torch.full_like(batch["input_ids"], PAD), attention_mask=torch.zeros_like(batch["attention_mask"]))
    model.eval()
    torch.testing.assert_close(dropped.model_output, model(**empty, timesteps=torch.tensor([5, 5]), noise=torch.zeros(2, 3, 16, 16)).model_output)


def test_cosine_schedule_matches_iddpm_eq_17():
    diffusion = GlideDiffusion(1000, "squaredcos_cap_v2")

    def f(t):
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 250, 500, 900):
        assert diffusion.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-4)


def test_vlb_term_trains_only_the_variance_channels(batch):
    model = tiny_glide()
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.01)
    model(**batch, timesteps=torch.tensor([10, 600])).vlb.backward()
    grad = model.unet.conv_out.weight.grad
    assert grad[:3].abs().max() == 0 and grad[3:].abs().max() > 0  # stop-gradient on the mean (iDDPM §3.1)


def test_normal_kl_is_zero_between_equal_gaussians_and_positive_otherwise():
    mean, log_var = torch.randn(5), torch.randn(5)
    assert normal_kl(mean, log_var, mean, log_var).abs().max() < 1e-6
    assert (normal_kl(mean, log_var, mean + 1, log_var) > 0).all()


@pytest.mark.parametrize("overrides, channels", [({}, 3), ({"inpaint": True}, 7), ({"super_res": True}, 6),
                                                 ({"inpaint": True, "super_res": True}, 10)])
def test_variants_read_their_extra_input_channels(overrides, channels, batch):
    model = tiny_glide(**overrides)
    assert model.unet.config.in_channels == channels
    extra = {}
    if overrides.get("super_res"):
        extra["low_res"] = torch.rand(2, 3, 8, 8) * 2 - 1
    if overrides.get("inpaint"):
        extra["inpaint_mask"] = torch.ones(2, 1, 16, 16)
    assert model(**batch, **extra).model_output.shape == (2, 6, 16, 16)


def test_variants_say_which_input_is_missing(batch):
    with pytest.raises(ValueError, match="needs `low_res`"):
        tiny_glide(super_res=True)(**batch)
    with pytest.raises(ValueError, match="needs `inpaint_image` and `inpaint_mask`"):
        tiny_glide(inpaint=True).denoise(batch["pixel_values"], torch.tensor([5, 5]), batch["input_ids"])


def test_inpainting_training_erases_a_random_rectangle_per_image(batch):
    torch.manual_seed(0)
    masks = random_erase_masks(64, 16, 16)
    assert masks.shape == (64, 1, 16, 16) and set(masks.unique().tolist()) <= {0.0, 1.0}
    erased = (masks == 0).flatten(1).sum(1)
    assert erased.min() >= 4 * 4 and erased.float().std() > 0
    erased_pixels = masks[:, 0] == 0
    erased_rows, erased_columns = erased_pixels.any(2), erased_pixels.any(1)
    assert torch.equal(erased_pixels, erased_rows[:, :, None] & erased_columns[:, None, :])  # one rectangle each
    model = tiny_glide(inpaint=True).train()
    torch.nn.init.normal_(model.unet.conv_out.weight, std=0.05)
    assert torch.isfinite(model(**batch).loss)  # no mask given: one is drawn


def test_inpainting_model_starts_as_its_base_model(batch):
    base = tiny_glide()
    torch.nn.init.normal_(base.unet.conv_out.weight, std=0.05)
    model = inpainting_model_from(base).eval()
    assert model.config.inpaint and model.unet.conv_in.weight[:, 3:].abs().max() == 0
    t, x = torch.tensor([50, 600]), batch["pixel_values"]
    known = random_erase_masks(2, 16, 16)
    torch.testing.assert_close(
        model.denoise(x, t, batch["input_ids"], batch["attention_mask"], inpaint_image=x.flip(0), inpaint_mask=known),
        base.denoise(x, t, batch["input_ids"], batch["attention_mask"]),
    )
    assert tiny_glide(inpaint=True).unet.conv_in.weight[:, 3:].abs().max() == 0  # also from scratch
    with pytest.raises(ValueError, match="already is an inpainting model"):
        inpainting_model_from(model)


def test_a_trained_inpainting_input_survives_save_and_load(tmp_path):
    model = tiny_glide(inpaint=True)
    torch.nn.init.normal_(model.unet.conv_in.weight, std=0.05)
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(GlideModel.from_pretrained(tmp_path).unet.conv_in.weight, model.unet.conv_in.weight, rtol=0, atol=0)


def test_bad_inputs_are_named(batch):
    model = tiny_glide()
    with pytest.raises(ValueError, match="input_ids must have shape \\(batch, 8\\)"):
        model(**dict(batch, input_ids=batch["input_ids"][:, :5], attention_mask=None))
    with pytest.raises(ValueError, match="Got 2 images but 1 captions"):
        model(**dict(batch, input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1]))
    with pytest.raises(ValueError, match="pixel_values must have shape \\(batch, 3, H, W\\)"):
        model(**dict(batch, pixel_values=batch["pixel_values"][:, :1]))
    with pytest.raises(ValueError, match="noise_schedule must be one of"):
        tiny_config(noise_schedule="sigmoid")
    with pytest.raises(ValueError, match="divisible by num_head_channels"):
        tiny_config(num_head_channels=24)


def test_hybrid_loss_falls_on_a_fixed_batch_with_v_prediction(batch):
    # ε-prediction (the default) learns a fixed batch in the model contract (tests/test_glide_contract.py).
    model = tiny_glide(prediction_type="v_prediction")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    timesteps, noise = torch.tensor([100, 400]), torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(30):
        loss = model(**batch, timesteps=timesteps, noise=noise).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_the_caption_config_reloads_as_its_own_class(tmp_path):
    # Weights and outputs after save → AutoModel: the model contract (tests/test_glide_contract.py).
    tiny_config().save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, GlideConfig)
    assert isinstance(config.text_config, GlideTextConfig) and config.text_config.width == 32


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_training_target_gives_back_x0_for_either_prediction_type(prediction_type):
    diffusion = GlideDiffusion(1000, "squaredcos_cap_v2", prediction_type)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=generator) * 2 - 1, torch.randn(4, 3, 8, 8, generator=generator)
    timesteps = torch.tensor([0, 300, 700, 990])
    x_t = diffusion.add_noise(x0, noise, timesteps)
    perfect = diffusion.training_target(x0, noise, timesteps)
    torch.testing.assert_close(diffusion.predicted_x0(perfect, x_t, timesteps), x0, atol=2e-3, rtol=0)
    if prediction_type == "epsilon":
        torch.testing.assert_close(perfect, noise)


def test_unknown_prediction_types_are_refused():
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        tiny_config(prediction_type="sample")

