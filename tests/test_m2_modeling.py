import pytest
import torch

from hf_mmdl import M2ForConditionalGeneration
from hf_mmdl.modeling.layers import sinusoid_position_table
from hf_mmdl.training.scst import caption_log_probs

from conftest import tiny_region_config


def test_tiny_config_matches_reference_parameter_count(region_model):
    # The spec's tiny configuration has 88,992 parameters with a 64-word vocabulary.
    config = tiny_region_config(type("T", (), {"__len__": lambda self: 64})())
    assert M2ForConditionalGeneration(config).num_parameters() == 88_992


def test_frozen_position_table_is_copied_from_the_checkpoint_not_regenerated(tokenizer, tmp_path):
    legacy = M2ForConditionalGeneration(tiny_region_config(tokenizer, position_table_init="xavier"))
    table = legacy.model.decoder.embed_positions.weight
    assert not table.requires_grad
    assert not torch.allclose(table, sinusoid_position_table(*table.shape, padding_idx=0))
    legacy.save_pretrained(tmp_path)
    reloaded = M2ForConditionalGeneration.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.model.decoder.embed_positions.weight, table, rtol=0, atol=0)

    fresh = M2ForConditionalGeneration(tiny_region_config(tokenizer)).model.decoder.embed_positions.weight
    torch.testing.assert_close(fresh, sinusoid_position_table(*fresh.shape, padding_idx=0))


@pytest.mark.parametrize("num_beams", [1, 5])
def test_cached_and_uncached_decoding_give_identical_tokens(region_model, regions, num_beams):
    kwargs = dict(num_beams=num_beams, max_new_tokens=15, length_penalty=0.0)
    cached = region_model.generate(**regions, **kwargs, use_cache=True)
    uncached = region_model.generate(**regions, **kwargs, use_cache=False)
    assert torch.equal(cached, uncached)


def test_cached_and_uncached_decoding_match_with_a_grid_backbone(grid_model, image_processor_m2, rgb_image):
    pixels = image_processor_m2(images=[rgb_image, rgb_image.transpose(0)])
    assert torch.equal(grid_model.generate(**pixels, use_cache=True), grid_model.generate(**pixels, use_cache=False))


def sequence_log_probs(model, visual_inputs, sequences, eos_token_id):
    """Sum of log-probabilities of each generated caption (up to and including <eos>) under teacher forcing."""
    with torch.no_grad():
        logits = model(**visual_inputs, decoder_input_ids=sequences[:, :-1], use_cache=False).logits
    return caption_log_probs(logits, sequences, eos_token_id)


def test_beam_search_returns_the_best_scoring_beam_first(region_model, regions):
    single = {k: v[:1] for k, v in regions.items()}
    out = region_model.generate(
        **single, num_beams=5, num_return_sequences=5, max_new_tokens=12, length_penalty=0.0,
        output_scores=True, return_dict_in_generate=True,
    )
    rescored = sequence_log_probs(
        region_model, {k: v.expand(5, *v.shape[1:]) for k, v in single.items()}, out.sequences, region_model.config.eos_token_id
    )
    torch.testing.assert_close(out.sequences_scores, rescored, atol=1e-4, rtol=1e-4)
    assert int(rescored.argmax()) == 0
    assert torch.equal(region_model.generate(**single, max_new_tokens=12)[0], out.sequences[0])
    # generate's default is the paper's beam search (size 5, no length penalty), not greedy decoding, which on so
    # small a model often finds the same caption: only beam search scores whole sequences.
    default = region_model.generate(**single, max_new_tokens=12, output_scores=True, return_dict_in_generate=True)
    assert getattr(default, "sequences_scores", None) is not None and default.beam_indices.shape[0] == 1


def test_padded_regions_do_not_change_outputs_with_the_correct_mask(region_model, regions):
    labels = torch.tensor([[5, 6, 7, 3]])
    # The padding holds non-zero values, so that only the mask (not a zero test on the features) can hide it.
    padded_inputs = {k: v[1:].clone() for k, v in regions.items()}
    padded_inputs["region_features"][:, 6:] = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        padded = region_model(**padded_inputs, labels=labels)
        unpadded = region_model(region_features=regions["region_features"][1:, :6], labels=labels)
        unmasked = region_model(region_features=padded_inputs["region_features"], labels=labels)
    # Masked keys drop out of the softmax exactly, so only the summation order of 6 vs 10 keys differs
    # (REORDERED_FLOAT32 in tests/model_contract.py).
    torch.testing.assert_close(padded.logits, unpadded.logits, atol=1e-5, rtol=1e-5)
    assert (unmasked.logits - unpadded.logits).abs().max() > 1e-3  # the padding would matter without the mask
    assert torch.equal(
        region_model.generate(region_features=regions["region_features"][1:, :6]),
        region_model.generate(**padded_inputs),
    )


def test_legacy_region_mask_attends_to_zero_padding_like_the_original_code(tokenizer, region_model, regions):
    with torch.no_grad():  # trained weights have a non-zero input LayerNorm bias, so padding never projects to 0
        region_model.model.encoder.input_norm.bias.normal_()
    legacy = M2ForConditionalGeneration(tiny_region_config(tokenizer, region_mask_mode="legacy")).eval()
    legacy.load_state_dict(region_model.state_dict())
    padded = {k: v[1:] for k, v in regions.items()}
    encoded = legacy.get_encoder()(**padded)
    assert encoded.attention_mask.all(), "the legacy mask tests projected features, so padding stays visible"
    labels = torch.tensor([[5, 6, 7, 3]])
    with torch.no_grad():
        assert not torch.allclose(legacy(**padded, labels=labels).logits, region_model(**padded, labels=labels).logits)


def test_gradients_reach_memory_slots_and_meshed_gates_but_not_the_position_table(tokenizer, regions):
    model = M2ForConditionalGeneration(tiny_region_config(tokenizer)).train()
    model(**regions, labels=torch.tensor([[5, 6, 3], [7, 8, 3]])).loss.backward()
    for layer in model.model.encoder.layers:
        assert layer.self_attn.memory_keys.grad.abs().sum() > 0
        assert layer.self_attn.memory_values.grad.abs().sum() > 0
    for layer in model.model.decoder.layers:
        for gate in layer.gates:
            assert gate.weight.grad.abs().sum() > 0
    assert model.model.decoder.embed_positions.weight.grad is None


def test_gates_are_sigmoids_over_each_encoder_level(tokenizer, regions):
    model = M2ForConditionalGeneration(tiny_region_config(tokenizer, encoder_layers=2)).eval()
    out = model(**regions, labels=torch.tensor([[5, 6, 3], [7, 8, 3]]), output_gates=True)
    assert len(out.gates) == model.config.decoder_layers
    assert out.gates[0].shape == (2, 2, 3, model.config.d_model)  # (batch, N levels, length, d)
    assert ((out.gates[0] > 0) & (out.gates[0] < 1)).all()


def test_bf16_autocast_computes_logits_in_bf16_and_beam_search_runs(region_model, regions):
    # The loss and outputs under autocast against float32: the model contract (tests/test_m2_contract.py).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = region_model(**regions, labels=torch.tensor([[5, 6, 3], [7, 8, 3]]))
        generated = region_model.generate(**regions, num_beams=2, max_new_tokens=5)
    assert out.logits.dtype == torch.bfloat16
    assert generated.shape[0] == 2


def test_visual_input_errors_are_explained(region_model, grid_model, regions, image_processor_m2, rgb_image):
    pixels = image_processor_m2(images=rgb_image)["pixel_values"]
    with pytest.raises(ValueError, match="exactly one visual input"):
        region_model(**regions, pixel_values=pixels, decoder_input_ids=torch.tensor([[2], [2]]))
    with pytest.raises(ValueError, match="region_features"):
        region_model(pixel_values=pixels, decoder_input_ids=torch.tensor([[2]]))
    with pytest.raises(ValueError, match="Batch mismatch"):
        region_model(**regions, labels=torch.tensor([[5, 3]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        region_model(**regions, decoder_input_ids=torch.full((2, 40), 5))


def test_region_features_into_a_backbone_model_are_refused(grid_model):
    regions = torch.randn(1, 4, grid_model.model.encoder.input_proj.in_features)
    with pytest.raises(ValueError, match="reads images through its backbone .* pass `pixel_values`"):
        grid_model(region_features=regions, decoder_input_ids=torch.tensor([[2]]))
    with pytest.raises(ValueError, match="reads images through its backbone"):
        grid_model.generate(region_features=regions, max_new_tokens=2)


@pytest.mark.parametrize("num_beams", [0, -1, 2.0])
def test_generate_names_a_bad_num_beams(region_model, regions, num_beams):
    with pytest.raises(ValueError, match=r"num_beams must be an int ≥ 1 .* got"):
        region_model.generate(**regions, num_beams=num_beams)


def test_generate_refuses_captions_longer_than_the_position_table_before_decoding(region_model, regions):
    calls = []
    region_model.model.decoder.register_forward_hook(lambda *args: calls.append(1))
    limit = region_model.config.max_position_embeddings  # 20: <bos> plus 19 fed tokens, then one more generated
    with pytest.raises(ValueError, match=rf"max_new_tokens=21.*max_position_embeddings={limit}: pass max_new_tokens ≤ {limit}"):
        region_model.generate(**regions, num_beams=2, max_new_tokens=limit + 1)
    with pytest.raises(ValueError, match="a 2-token prefix.*pass max_new_tokens ≤ 18"):
        region_model.generate(**regions, decoder_input_ids=torch.tensor([[2, 5, 6]] * 2), max_new_tokens=19)
    assert calls == []  # refused before the first decoding step
    region_model.generation_config.eos_token_id = None  # decode the whole length: the largest allowed count fits
    assert region_model.generate(**regions, num_beams=2, max_new_tokens=limit).shape == (2, limit + 1)


def test_encoder_outputs_errors_recommend_what_beam_search_can_take(region_model, regions):
    encoded = region_model.get_encoder()(**regions)
    with pytest.raises(TypeError, match="pass it unchanged") as error:
        region_model.generate(encoder_outputs=encoded.to_tuple(), num_beams=2, max_new_tokens=3)
    assert "M2EncoderOutput" in str(error.value) and "only forward also takes them as a tuple" in str(error.value)
    with pytest.raises(TypeError, match="M2EncoderOutput"):
        region_model(encoder_outputs="encoded", decoder_input_ids=torch.tensor([[2], [2]]))
    generated = region_model.generate(encoder_outputs=encoded, region_attention_mask=regions["region_attention_mask"],
                                      num_beams=2, max_new_tokens=3)
    assert generated.shape[0] == 2
