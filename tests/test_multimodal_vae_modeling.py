"""The multimodal VAE: fusion maths, missing modalities, the objective's terms, caption generation with a KV cache,
arithmetic, and its bad inputs. Save/load, return_dict, checkpointing, bf16, learning a batch and LoRA: the model
contract (tests/test_multimodal_vae_contract.py)."""

import math

import pytest
import torch

from hf_mmdl import MultimodalVAEConfig, MultimodalVAEModel
from hf_mmdl.modeling.configuration_multimodal_vae import multimodal_vae_config_for
from hf_mmdl.modeling.modeling_multimodal_vae import kl_to_standard_normal, mixture_moments, product_of_experts

VOCAB = 20


def tiny_config(**overrides) -> MultimodalVAEConfig:
    return multimodal_vae_config_for("tiny", **(dict(image_size=16, vocab_size=VOCAB, max_text_length=8) | overrides))


def tiny_model(**overrides) -> MultimodalVAEModel:
    torch.manual_seed(0)
    return MultimodalVAEModel(tiny_config(**overrides)).eval()


def paired_inputs(batch_size: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, VOCAB, (batch_size, 6), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0  # one caption shorter than the other
    return {"pixel_values": torch.rand(batch_size, 3, 16, 16, generator=generator) * 2 - 1, "input_ids": ids,
            "attention_mask": mask, "generator": torch.Generator().manual_seed(1)}


def test_product_of_experts_is_the_precision_weighted_mean_with_the_prior_expert():
    mean_a, logvar_a = torch.tensor([[2.0]]), torch.tensor([[math.log(0.5)]])
    mean_b, logvar_b = torch.tensor([[-1.0]]), torch.tensor([[math.log(2.0)]])
    mean, logvar = product_of_experts([mean_a, mean_b], [logvar_a, logvar_b])
    precision = 1 + 2 + 0.5  # prior N(0, 1), then 1/0.5 and 1/2
    torch.testing.assert_close(mean, torch.tensor([[(2.0 * 2 - 1.0 * 0.5) / precision]]))
    torch.testing.assert_close(logvar, torch.tensor([[-math.log(precision)]]))


def test_mixture_moments_match_a_sampled_mixture():
    means = [torch.tensor([[0.0, 3.0]]), torch.tensor([[2.0, -1.0]])]
    logvars = [torch.tensor([[0.0, math.log(0.25)]]), torch.tensor([[math.log(4.0), 0.0]])]
    mean, logvar = mixture_moments(means, logvars)
    torch.manual_seed(0)
    component = torch.randint(2, (200_000,))
    stacked_mean, stacked_std = torch.cat(means)[component], torch.cat(logvars).mul(0.5).exp()[component]
    samples = stacked_mean + stacked_std * torch.randn(200_000, 2)
    torch.testing.assert_close(mean[0], samples.mean(0), atol=0.03, rtol=0)
    torch.testing.assert_close(logvar[0].exp(), samples.var(0), atol=0.05, rtol=0.02)


def test_kl_to_the_standard_normal_is_zero_at_the_prior_and_matches_the_closed_form():
    assert kl_to_standard_normal(torch.zeros(1, 3), torch.zeros(1, 3)).item() == 0
    kl = kl_to_standard_normal(torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]])).item()
    assert kl == pytest.approx(0.5 * (4 + 1 - 1 - math.log(4)))


@pytest.mark.parametrize("fusion", ["poe", "moe"])
def test_either_modality_may_be_missing(fusion):
    model = tiny_model(fusion=fusion)
    inputs = paired_inputs()
    with torch.no_grad():
        both = model(**inputs)
        image_only = model(pixel_values=inputs["pixel_values"])
        text_only = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert both.image_reconstruction.shape == (2, 3, 16, 16) and both.text_logits.shape == (2, 7, VOCAB)
    assert image_only.text_logits is None and image_only.text_nll is None and torch.isfinite(image_only.loss)
    assert text_only.image_reconstruction is None and text_only.image_nll is None and torch.isfinite(text_only.loss)
    # The fused posterior of one modality is that expert with the prior (PoE) or that expert alone (MoE).
    encoded = model.encode(pixel_values=inputs["pixel_values"])
    expected = (product_of_experts([encoded.image_mean], [encoded.image_logvar]) if fusion == "poe"
                else (encoded.image_mean, encoded.image_logvar))
    torch.testing.assert_close(encoded.latent_mean, expected[0])


def test_poe_loss_is_the_joint_elbo_plus_each_unimodal_elbo():
    model = tiny_model(text_weight=3.0)
    inputs = paired_inputs()
    pixels, ids, mask = inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        both = model(**inputs)  # eval mode: posterior means, deterministic
        image = model(pixel_values=pixels)
        text = model(input_ids=ids, attention_mask=mask)
        joint_only = MultimodalVAEModel(tiny_config(text_weight=3.0, subsampled_elbo=False))
        joint_only.load_state_dict(model.state_dict())
        joint = joint_only.eval()(**inputs)
    # Unimodal terms reconstruct only their own modality: the image-only forward IS the image ELBO term.
    torch.testing.assert_close(both.loss, joint.loss + image.loss + text.loss)
    values = 3 * 16 * 16
    expected = ((joint.image_nll + 3.0 * joint.text_nll + joint.kl) / values).mean()
    torch.testing.assert_close(joint.loss, expected)


def test_the_caption_objective_scores_every_word_and_eos_but_not_padding():
    model = tiny_model()
    inputs = paired_inputs()
    decoder_input, labels = model._caption_teacher_forcing(inputs["input_ids"], inputs["attention_mask"])
    assert decoder_input[:, 0].eq(model.config.bos_token_id).all()
    assert labels[0, 4].item() == model.config.eos_token_id and labels[0, 5:].eq(-100).all()
    assert labels[1, 6].item() == model.config.eos_token_id
    torch.testing.assert_close(labels[1, :6], inputs["input_ids"][1])


def test_generation_with_the_kv_cache_matches_the_full_forward_and_beam_search_runs():
    model = tiny_model()
    z = torch.randn(3, model.config.latent_dim, generator=torch.Generator().manual_seed(2))
    generated = model.generate_text(z, max_new_tokens=6, min_new_tokens=6)
    assert generated.shape == (3, 7) and generated[:, 0].eq(model.config.bos_token_id).all()
    with torch.no_grad():
        logits = model.text_decoder(generated[:, :-1], latents=z, use_cache=False).logits
    torch.testing.assert_close(logits.argmax(-1), generated[:, 1:])
    beams = model.generate_text(z, num_beams=3, max_new_tokens=4)
    assert beams.shape[0] == 3


def test_arithmetic_is_source_minus_plus_on_posterior_means_and_broadcasts_rows_of_one():
    model = tiny_model()
    inputs = paired_inputs(3)
    pixels = {"pixel_values": inputs["pixel_values"]}
    text = {"input_ids": inputs["input_ids"][:1], "attention_mask": inputs["attention_mask"][:1]}
    plus = torch.randn(1, model.config.latent_dim)
    z = model.arithmetic(pixels, text, plus)
    expected = (model.encode(**pixels).latent_mean - model.encode(**text).latent_mean + plus)
    torch.testing.assert_close(z, expected)
    assert model.decode_image(z).shape == (3, 3, 16, 16)


def test_kl_warm_up_follows_the_schedule_step():
    model = tiny_model(kl_warmup_steps=10, beta=2.0)
    model.set_schedule_step(0)
    assert model.current_kl_weight() == 0
    model.set_schedule_step(5)
    assert model.current_kl_weight() == pytest.approx(1.0)
    model.set_schedule_step(None)
    assert model.current_kl_weight() == 2.0


# ---- bad inputs beyond the shared battery ---------------------------------------------------------------------------
def test_no_modality_at_all_is_refused():
    with pytest.raises(ValueError, match="pixel_values and/or input_ids"):
        tiny_model()(generator=None)


def test_a_mask_without_captions_is_refused():
    inputs = paired_inputs()
    with pytest.raises(ValueError, match="attention_mask was given without input_ids"):
        tiny_model()(pixel_values=inputs["pixel_values"], attention_mask=inputs["attention_mask"])


def test_ids_outside_the_vocabulary_are_refused():
    inputs = paired_inputs()
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 20\)"):
        tiny_model()(**(inputs | {"input_ids": inputs["input_ids"] + VOCAB}))


def test_a_mask_of_another_shape_or_with_an_empty_row_is_refused():
    inputs = paired_inputs()
    with pytest.raises(ValueError, match="attention mask of input_ids has shape"):
        tiny_model()(**(inputs | {"attention_mask": inputs["attention_mask"][:, :3]}))
    empty = inputs["attention_mask"].clone()
    empty[1] = 0
    with pytest.raises(ValueError, match="no real token"):
        tiny_model()(**(inputs | {"attention_mask": empty}))


def test_images_of_another_size_are_refused():
    with pytest.raises(ValueError, match="16×16"):
        tiny_model()(pixel_values=torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("latents, error, match", [
    (torch.zeros(2, 5), ValueError, "latent_dim=8"),
    (torch.full((2, 8), float("nan")), ValueError, "NaN"),
    (torch.zeros(8), ValueError, "2-D"),
    (torch.zeros(2, 8, dtype=torch.long), TypeError, "float tensor"),
], ids=["wrong width", "nan", "one row without batch", "integers"])
def test_bad_latents_are_refused_by_decode_image_and_generate_text(latents, error, match):
    model = tiny_model()
    with pytest.raises(error, match=match):
        model.decode_image(latents)
    with pytest.raises(error, match=match):
        model.generate_text(latents)


def test_arithmetic_refuses_other_arguments_and_unequal_batches():
    model = tiny_model()
    z = torch.zeros(3, 8)
    with pytest.raises(TypeError, match="minus must be latents"):
        model.arithmetic(z, ["red"], z)
    with pytest.raises(ValueError, match=r"\[3, 2, 3\] rows"):
        model.arithmetic(z, torch.zeros(2, 8), z)


@pytest.mark.parametrize("overrides, match", [
    ({"fusion": "sum"}, "fusion must be one of"),
    ({"pad_token_id": 99}, "pad_token_id must be a token id"),
    ({"image_size": 17}, "divisible by the downsampling factor"),
    ({"text_weight": -1.0}, "must be ≥ 0"),
    ({"hidden_size": 30}, "divisible by num_attention_heads"),
], ids=["fusion", "pad id", "image size", "negative weight", "heads"])
def test_inconsistent_configurations_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_an_unknown_size_preset_is_refused():
    with pytest.raises(ValueError, match="model_size must be one of"):
        multimodal_vae_config_for("huge")


# ---- the audio modality ---------------------------------------------------------------------------------------------
AUDIO = dict(audio_modality=True, audio_num_mel_bins=8, audio_num_frames=16, audio_hidden_size=16, audio_num_layers=2)


def trimodal_inputs(batch_size: int = 2) -> dict:
    generator = torch.Generator().manual_seed(3)
    return paired_inputs(batch_size) | {"input_features": torch.randn(batch_size, 8, 16, generator=generator)}


def test_an_audio_model_reads_and_writes_log_mel_frames_and_any_subset_of_modalities():
    model = tiny_model(**AUDIO)
    inputs = trimodal_inputs(3)
    with torch.no_grad():
        output = model(**inputs)
        assert output.audio_reconstruction.shape == (3, 8, 16) and output.audio_nll.shape == (3,)
        assert output.image_nll is not None and output.text_nll is not None and torch.isfinite(output.loss)
        spoken = model.encode(input_features=inputs["input_features"])
        assert spoken.audio_mean.shape == (3, 8) and spoken.image_mean is None and spoken.text_mean is None
        # Audio alone through the objective: only its own term.
        alone = model(input_features=inputs["input_features"])
        assert alone.image_nll is None and alone.text_nll is None and torch.isfinite(alone.loss)
        assert model.decode_audio(spoken.latent_mean).shape == (3, 8, 16)
        z = model.arithmetic({"pixel_values": inputs["pixel_values"]}, {"input_features": inputs["input_features"]},
                             torch.zeros(1, 8))
    torch.testing.assert_close(z, model.encode(pixel_values=inputs["pixel_values"]).latent_mean - spoken.latent_mean)


def test_the_product_of_experts_objective_sums_the_elbo_of_every_subset_of_three_modalities():
    torch.manual_seed(0)
    model = MultimodalVAEModel(tiny_config(**AUDIO, fusion="poe", kl_warmup_steps=0)).eval()
    inputs = trimodal_inputs(2)
    with torch.no_grad():
        loss = model(**inputs, sample_posterior=False).loss
        experts = model._experts(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"],
                                 inputs["input_features"])
        decoder_input, labels = model._caption_teacher_forcing(inputs["input_ids"], inputs["attention_mask"])
        weights = {"image": 1.0, "text": model.config.text_weight, "audio": model.config.audio_weight}
        total = 0
        subsets = [("image",), ("text",), ("audio",), ("image", "text"), ("image", "audio"), ("text", "audio"),
                   ("image", "text", "audio")]
        for subset in subsets:
            mean, logvar = product_of_experts([experts[m][0] for m in subset], [experts[m][1] for m in subset])
            nll = {"image": lambda: model._image_nll(inputs["pixel_values"], model.image_decoder(mean)),
                   "text": lambda: model._text_nll(mean, decoder_input, labels)[0],
                   "audio": lambda: model._audio_nll(inputs["input_features"], model.audio_decoder(mean))}
            total = total + sum(weights[m] * nll[m]() for m in subset) + kl_to_standard_normal(mean, logvar)
    torch.testing.assert_close(loss, (total / (3 * 16 * 16)).mean())


def test_image_and_caption_models_have_no_audio_weights_and_old_configs_load_without_audio():
    model = tiny_model()
    assert not any("audio" in name for name in model.state_dict())
    saved = tiny_config().to_dict()
    for key in [k for k in saved if k.startswith("audio")]:
        del saved[key]  # a config saved before the audio fields existed
    config = MultimodalVAEConfig.from_dict(saved)
    assert config.audio_modality is False and config.modalities == ("image", "text")


def test_audio_is_refused_by_a_model_without_audio():
    model = tiny_model()
    with pytest.raises(ValueError, match="no audio modality"):
        model(input_features=torch.zeros(1, 32, 96))
    with pytest.raises(ValueError, match="no audio modality"):
        model.decode_audio(torch.zeros(1, 8))


@pytest.mark.parametrize("features, error, match", [
    (torch.zeros(2, 8, 15), ValueError, r"\(batch, 8 mel bins, 16 frames\)"),
    (torch.full((2, 8, 16), float("nan")), ValueError, "NaN"),
    (torch.zeros(2, 8, 16, dtype=torch.long), TypeError, "float tensor"),
    (torch.zeros(8, 16), ValueError, "3-D"),
], ids=["frames", "nan", "integers", "no batch"])
def test_bad_audio_features_are_refused(features, error, match):
    with pytest.raises(error, match=match):
        tiny_model(**AUDIO)(input_features=features)


def test_audio_of_another_batch_size_than_the_images_is_refused():
    inputs = trimodal_inputs(2)
    with pytest.raises(ValueError, match="Batch mismatch: 2 images, 2 captions, 3 audio clips"):
        tiny_model(**AUDIO)(**(inputs | {"input_features": torch.zeros(3, 8, 16)}))


def test_audio_frames_that_the_layers_cannot_halve_are_refused():
    with pytest.raises(ValueError, match="audio_num_frames"):
        tiny_config(**(AUDIO | {"audio_num_frames": 18}))
