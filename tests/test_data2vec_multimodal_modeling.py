"""data2vec-multimodal's objective, piece by piece: masking, EMA teacher, targets, masked-step loss, experts, multi-mask,
the sparse image student, the cross-modal term, heads and input checks. Tiny random models, seconds in all."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

from hf_mmdl import (
    Data2VecMultimodalForAudioClassification, Data2VecMultimodalForImageClassification,
    Data2VecMultimodalForPreTraining, Data2VecMultimodalModel,
)
from hf_mmdl.modeling.configuration_data2vec_multimodal import Data2VecMultimodalConfig, data2vec_multimodal_config_for
from hf_mmdl.modeling.modeling_data2vec_multimodal import (
    bert_mask_tokens, block_mask_patches, ema_decay, normalise_layer_target, span_mask_frames, teacher_target,
)

VOCAB, MASK, PAD, BOS, EOS = 60, 4, 1, 0, 2


def tiny_config(**overrides):
    return data2vec_multimodal_config_for("tiny", vocab_size=VOCAB, mask_token_id=MASK, pad_token_id=PAD,
                                          bos_token_id=BOS, eos_token_id=EOS, max_text_length=16, image_size=16,
                                          patch_size=4, **overrides)


def captions(batch_size, length=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch_size, length), generator=generator)
    ids[:, 0], ids[:, -1] = BOS, EOS
    mask = torch.ones_like(ids)
    if batch_size > 1:  # a shorter caption, padded
        ids[-1, 6:], mask[-1, 6:] = PAD, 0
        ids[-1, 5] = EOS
    return ids, mask


def paired_inputs(batch_size=2):
    ids, mask = captions(batch_size)
    pixels = torch.rand(batch_size, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "generator": torch.Generator().manual_seed(2)}


def audio(batch_size=2, samples=3200, seed=3):
    return torch.randn(batch_size, samples, generator=torch.Generator().manual_seed(seed))


def make(cls=Data2VecMultimodalForPreTraining, **overrides):
    torch.manual_seed(0)
    return cls(tiny_config(**overrides))


# ---- masking -----------------------------------------------------------------------------------------------------------
def test_block_masks_cover_exactly_the_asked_share_in_rectangles():
    masks = block_mask_patches(64, 8, 8, 0.6, min_patches=4, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (64, 64) and masks.dtype == torch.bool
    assert (masks.sum(1) == round(0.6 * 64)).all()
    # Blocks, not scattered patches: masked patches have far more masked 4-neighbours than random ones would (0.6).
    grid = masks.view(64, 8, 8).float()
    neighbours = (grid[:, 1:, :] * grid[:, :-1, :]).sum() * 2 + (grid[:, :, 1:] * grid[:, :, :-1]).sum() * 2
    edges_per_masked = neighbours / grid.sum()
    assert edges_per_masked > 2.6, edges_per_masked


def test_bert_masking_selects_15_percent_of_real_tokens_split_80_10_10():
    ids = torch.randint(5, 1000, (400, 50), generator=torch.Generator().manual_seed(0))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, 40:] = False  # specials and padding
    masked, selected = bert_mask_tokens(ids, maskable, 0.15, MASK, 1000, torch.Generator().manual_seed(1))
    assert not selected[~maskable].any() and (masked[~maskable] == ids[~maskable]).all()
    assert abs(selected[maskable].float().mean().item() - 0.15) < 0.01
    chosen = selected.sum().item()
    as_mask = (masked[selected] == MASK).sum().item() / chosen
    unchanged = (masked[selected] == ids[selected]).sum().item() / chosen
    assert abs(as_mask - 0.8) < 0.03 and abs(unchanged - 0.1) < 0.03  # the rest (~10 %) random tokens
    assert (masked[~selected] == ids[~selected]).all()


def test_every_row_gets_a_token_to_predict_even_a_short_one():
    ids, _ = captions(64)
    maskable = torch.zeros_like(ids, dtype=torch.bool)
    maskable[:, 1:3] = True
    _, selected = bert_mask_tokens(ids, maskable, 0.01, MASK, VOCAB, torch.Generator().manual_seed(0))
    assert selected.any(1).all()


def test_audio_spans_mask_about_half_the_frames_and_never_padding():
    np.random.seed(0)
    frame_mask = torch.ones(200, 500, dtype=torch.bool)
    frame_mask[:, 400:] = False
    spans = span_mask_frames(200, 500, 0.065, 10, frame_mask)
    assert not spans[~frame_mask].any()
    share = spans[:, :400].float().mean().item()
    assert 0.4 < share < 0.55, share  # 1 - (1 - 0.065)^10 = 0.49 before overlaps at the ends


# ---- teacher --------------------------------------------------------------------------------------------------------------
def test_ema_decay_rises_linearly_from_tau0_to_taue_then_stays():
    assert ema_decay(0, 0.999, 0.9999, 1000) == 0.999
    assert math.isclose(ema_decay(500, 0.999, 0.9999, 1000), 0.99945)
    assert ema_decay(1000, 0.999, 0.9999, 1000) == ema_decay(5000, 0.999, 0.9999, 1000) == 0.9999


def test_the_teacher_starts_as_the_student_and_follows_equation_1():
    model = make(ema_decay_start=0.9, ema_decay_end=0.99, ema_anneal_end_step=10)
    teacher, student = model.teacher_layers, model.data2vec_multimodal.layers
    for t, s in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(t, s)
    before = [t.clone() for t in teacher.parameters()]
    with torch.no_grad():
        for s in student.parameters():
            s.add_(torch.randn_like(s))
    tau = model.update_teacher(5)
    assert math.isclose(tau, 0.945)
    for old, t, s in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, tau * old + (1 - tau) * s, rtol=1e-6, atol=1e-7)


def test_a_bfloat16_teacher_follows_equation_1_computed_in_float32():
    model = make(ema_decay_start=0.9, ema_decay_end=0.99, ema_anneal_end_step=10).to(torch.bfloat16)
    teacher, student = model.teacher_layers, model.data2vec_multimodal.layers
    with torch.no_grad():
        for s in student.parameters():
            s.add_(torch.randn_like(s))
    before = [t.float() for t in teacher.parameters()]
    tau = model.update_teacher(5)
    for old, t, s in zip(before, teacher.parameters(), student.parameters()):
        assert t.dtype == torch.bfloat16
        # float32 lerp and the textbook form differ by a float32 ulp, which can round to the neighbouring bfloat16
        # (measured: 1 of 1,024 elements, one bfloat16 step, 2⁻⁸ relative); a bfloat16 EMA would lose (1 − τ)θ.
        torch.testing.assert_close(t, (tau * old + (1 - tau) * s.float()).to(torch.bfloat16), rtol=2 ** -7, atol=0)


def test_the_teacher_has_no_gradients_stays_in_eval_mode_and_shares_the_input_encoders():
    model = make().train()
    assert not model.teacher_layers.training
    assert all(not p.requires_grad for p in model.teacher_layers.parameters())
    model(**paired_inputs()).loss.backward()
    assert all(p.grad is None for p in model.teacher_layers.parameters())
    # Only the blocks are averaged: the teacher owns no input encoder of its own.
    teacher_names = {n for n, _ in model.named_parameters() if n.startswith("teacher_layers.")}
    student_blocks = {"teacher_" + n.removeprefix("data2vec_multimodal.") for n, _ in model.named_parameters()
                      if n.startswith("data2vec_multimodal.layers.")}
    assert teacher_names == student_blocks
    # The student's input encoder feeds the teacher: changing it changes the targets.
    ids, mask = captions(2)
    before, _ = model.teacher_targets("text", ids, mask)
    with torch.no_grad():
        model.data2vec_multimodal.text_encoder.embeddings.word_embeddings.weight.mul_(2)
    after, _ = model.teacher_targets("text", ids, mask)
    assert not torch.allclose(before, after)


def test_targets_come_from_the_teacher_whatever_the_student_blocks_do():
    model = make().eval()
    ids, mask = captions(2)
    before, _ = model.teacher_targets("text", ids, mask)
    with torch.no_grad():
        for p in model.data2vec_multimodal.layers.parameters():
            p.add_(torch.randn_like(p))
    after, _ = model.teacher_targets("text", ids, mask)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_targets_average_the_top_k_normalised_ffn_outputs_of_the_teacher():
    model = make(top_k_layers={"image": 1}, target_norm={"image": "layer"}).eval()
    pixels = paired_inputs()["pixel_values"]
    captured = []
    hooks = [layer.ffn["image"].fc2.register_forward_hook(lambda m, i, o: captured.append(o))
             for layer in model.teacher_layers]
    target, _ = model.teacher_targets("image", pixels, None)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(target, torch.nn.functional.layer_norm(captured[-1], captured[-1].shape[-1:]))
    # K = 2: the mean of both, instance-normalised over the steps.
    both = teacher_target(captured, "instance", 2)
    expected = sum(normalise_layer_target(a, "instance") for a in captured) / 2
    torch.testing.assert_close(both, expected)
    assert torch.allclose(expected.mean(1), torch.zeros(1), atol=1e-5)  # zero mean over the steps, per channel


def test_the_loss_is_taken_on_the_masked_steps_only():
    model = make(target_norm={"image": "layer"}).eval()
    pixels = paired_inputs()["pixel_values"]
    out = model(pixel_values=pixels, generator=torch.Generator().manual_seed(7))
    student_input, masked_steps, masked_patches = model.student_masks("image", pixels, None,
                                                                      torch.Generator().manual_seed(7))
    target, _ = model.teacher_targets("image", pixels, None)
    hidden = model.student_hidden("image", student_input, None, masked_patches).hidden
    prediction = model.regression_heads["image"](hidden)
    per_step = ((prediction - target) ** 2).sum(-1) / math.sqrt(prediction.shape[-1])
    torch.testing.assert_close(out.image_loss, per_step[masked_steps].mean())
    assert not torch.isclose(out.image_loss, per_step.mean())
    assert masked_steps[:, 0].logical_not().all()  # the CLS step is never a target


# ---- blocks and routing ---------------------------------------------------------------------------------------------------
def test_modality_experts_share_attention_and_route_ffns_by_input_modality():
    model = make(cls=Data2VecMultimodalModel)
    model(pixel_values=paired_inputs()["pixel_values"]).pooler_output.sum().backward()
    layer = model.layers[0]
    assert layer.attention.query.weight.grad is not None
    assert layer.ffn["image"].fc1.weight.grad is not None
    assert layer.ffn["text"].fc1.weight.grad is None and layer.ffn["audio"].fc1.weight.grad is None


@pytest.mark.parametrize("sharing", ["shared", "separate"])
def test_shared_and_separate_blocks(sharing):
    model = make(cls=Data2VecMultimodalModel, block_sharing=sharing)
    layer = model.layers[0]
    if sharing == "shared":
        assert list(layer.ffn) == ["shared"] and not isinstance(layer.attention, torch.nn.ModuleDict)
    else:
        assert set(layer.attention) == {"text", "image", "audio"}
    ids, mask = captions(2)
    assert model(input_ids=ids, attention_mask=mask).last_hidden_state.shape == (2, 10, 32)


def test_padding_does_not_change_the_real_tokens():
    model = make(cls=Data2VecMultimodalModel).eval()
    ids, mask = captions(1)
    padded = torch.cat([ids, torch.full((1, 4), PAD)], 1)
    padded_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.long)], 1)
    short = model(input_ids=ids, attention_mask=mask)
    long = model(input_ids=padded, attention_mask=padded_mask)
    torch.testing.assert_close(long.last_hidden_state[:, :10], short.last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(long.pooler_output, short.pooler_output, rtol=1e-5, atol=1e-5)


def test_features_of_every_modality_are_unit_vectors_in_one_space():
    model = make(cls=Data2VecMultimodalModel).eval()
    ids, mask = captions(2)
    features = [model.get_text_features(ids, mask), model.get_image_features(paired_inputs()["pixel_values"]),
                model.get_audio_features(audio())]
    for f in features:
        assert f.shape == (2, model.config.projection_dim)
        torch.testing.assert_close(f.norm(dim=-1), torch.ones(2))


# ---- data2vec 2.0 and pairs -------------------------------------------------------------------------------------------
def test_multi_mask_runs_the_teacher_once_for_m_student_copies():
    model = make(num_mask_copies=3)
    teacher_calls, student_batches = [], []
    model.teacher_layers[0].register_forward_hook(lambda m, i, o: teacher_calls.append(i[0].shape[0]))
    model.data2vec_multimodal.layers[0].register_forward_hook(lambda m, i, o: student_batches.append(i[0].shape[0]))
    model(pixel_values=paired_inputs()["pixel_values"])
    assert teacher_calls == [2] and student_batches == [6]


def test_the_sparse_image_student_encodes_visible_patches_only():
    model = make(encode_unmasked_only=True)
    lengths = []
    model.data2vec_multimodal.layers[0].register_forward_hook(lambda m, i, o: lengths.append(i[0].shape[1]))
    out = model(pixel_values=paired_inputs()["pixel_values"])
    patches = 16
    assert lengths == [1 + patches - round(model.config.mask_prob["image"] * patches)]
    out.loss.backward()
    assert model.image_decoder.convs[0].weight.grad is not None


@pytest.mark.parametrize("term", ["contrastive", "regression", "both", "none"])
def test_paired_batches_add_the_configured_cross_modal_term(term):
    model = make(cross_modal_loss=term)
    out = model(**paired_inputs(4))
    assert (out.cross_modal_loss is None) == (term == "none")
    unpaired = model(pixel_values=paired_inputs(4)["pixel_values"])
    assert unpaired.cross_modal_loss is None
    if term == "contrastive":
        out.loss.backward()
        assert model.contrastive.logit_scale.grad is not None
        assert model.data2vec_multimodal.projections["text"].weight.grad is not None


def test_fusion_blocks_attend_over_the_concatenated_pair():
    model = make(num_fusion_layers=1)
    lengths = []
    model.data2vec_multimodal.fusion_layers[0].register_forward_hook(lambda m, i, o: lengths.append(i[0].shape[1]))
    out = model(**paired_inputs())
    assert lengths == [10 + 17]  # caption tokens + CLS and 16 patches
    out.loss.backward()
    assert model.data2vec_multimodal.fusion_layers[0].ffn["fusion"].fc1.weight.grad is not None


def test_audio_trains_through_shared_convolutions():
    model = make()
    out = model(input_values=audio(), audio_attention_mask=torch.ones(2, 3200, dtype=torch.long))
    out.loss.backward()
    assert out.audio_loss is not None and torch.isfinite(out.loss)
    assert model.data2vec_multimodal.audio_encoder.feature_extractor.conv_layers[0].conv.weight.grad is not None


# ---- saving, loading, heads -------------------------------------------------------------------------------------------
def test_a_bare_model_folder_loads_into_pre_training_with_the_teacher_as_a_copy(tmp_path):
    make(cls=Data2VecMultimodalModel).save_pretrained(tmp_path)
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    for t, s in zip(model.teacher_layers.parameters(), model.data2vec_multimodal.layers.parameters()):
        assert torch.equal(t, s)


def test_the_teacher_is_saved_and_restored_exactly(tmp_path):
    model = make()
    with torch.no_grad():
        for s in model.data2vec_multimodal.layers.parameters():
            s.add_(0.1)
    model.update_teacher(0)
    model.save_pretrained(tmp_path)
    reloaded = Data2VecMultimodalForPreTraining.from_pretrained(tmp_path)
    for t, r in zip(model.teacher_layers.parameters(), reloaded.teacher_layers.parameters()):
        assert torch.equal(t, r)
    bare = AutoModel.from_pretrained(tmp_path)
    assert isinstance(bare, Data2VecMultimodalModel)


def test_the_teacher_encoder_is_the_student_model_with_the_teacher_blocks(tmp_path):
    model = make(ema_decay_start=0.5, ema_decay_end=0.5)
    with torch.no_grad():
        for s in model.data2vec_multimodal.parameters():
            s.add_(0.1 * torch.randn_like(s))
    model.update_teacher(1)
    teacher = model.teacher_encoder()
    assert not teacher.training
    for t, r in zip(teacher.layers.parameters(), model.teacher_layers.parameters()):
        assert torch.equal(t, r)
    inputs = paired_inputs()
    with torch.no_grad():
        from_teacher = teacher.get_image_features(inputs["pixel_values"])
        model.data2vec_multimodal.layers.load_state_dict(model.teacher_layers.state_dict())
        expected = model.data2vec_multimodal.eval().get_image_features(inputs["pixel_values"])
    torch.testing.assert_close(from_teacher, expected, rtol=0, atol=0)
    teacher.save_pretrained(tmp_path)
    assert isinstance(AutoModel.from_pretrained(tmp_path), Data2VecMultimodalModel)


def test_classification_heads_load_through_auto_classes(tmp_path):
    make(cls=Data2VecMultimodalModel).save_pretrained(tmp_path)
    head = AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=3)
    assert isinstance(head, Data2VecMultimodalForImageClassification)
    out = head(pixel_values=paired_inputs()["pixel_values"], labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and out.loss > 0
    audio_head = Data2VecMultimodalForAudioClassification(tiny_config(num_labels=4))
    assert audio_head(input_values=audio()).logits.shape == (2, 4)


# ---- bad inputs beyond the shared battery -------------------------------------------------------------------------------
def bad(match, cls=Data2VecMultimodalModel, **inputs):
    with torch.no_grad(), pytest.raises((ValueError, TypeError), match=match):
        make(cls=cls)(**inputs)


def test_the_bare_model_takes_one_modality_per_call():
    ids, _ = captions(2)
    bad("(?i)exactly one modality", input_ids=ids, pixel_values=paired_inputs()["pixel_values"])
    bad("(?i)exactly one modality")


def test_pre_training_needs_inputs():
    bad("(?i)at least one modality", cls=Data2VecMultimodalForPreTraining)


def test_token_ids_outside_the_vocabulary_are_refused():
    ids, _ = captions(2)
    ids[0, 3] = VOCAB + 5
    bad("(?i)input_ids must lie", input_ids=ids)


def test_images_of_another_size_are_refused():
    bad("(?i)resize", pixel_values=torch.zeros(2, 3, 32, 32))


@pytest.mark.parametrize("waveform, match", [
    (torch.full((2, 3200), float("nan")), "(?i)(nan|finite)"),
    (torch.zeros(2, 3200, dtype=torch.int16), "(?i)float"),
    (torch.zeros(2, 2, 3200), "(?i)2-D"),
    (torch.zeros(2, 5), "(?i)too short"),
], ids=["nan", "integer", "stereo", "too-short"])
def test_bad_waveforms_are_refused(waveform, match):
    bad(match, input_values=waveform)


def test_a_head_refuses_another_modality():
    ids, _ = captions(2)
    bad("(?i)classifies image", cls=Data2VecMultimodalForImageClassification, input_ids=ids)


def test_labels_outside_the_classes_are_refused():
    bad("(?i)labels", cls=Data2VecMultimodalForImageClassification, pixel_values=paired_inputs()["pixel_values"],
        labels=torch.tensor([0, 7]))


@pytest.mark.parametrize("field, value", [("block_sharing", "mixed"), ("cross_modal_loss", "l1"),
                                          ("top_k_layers", {"image": 9}), ("mask_prob", {"text": 1.5}),
                                          ("target_norm", {"video": "layer"})])
def test_invalid_configurations_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_sub_configs_of_another_width_are_refused():
    config = tiny_config()
    with pytest.raises(ValueError, match="hidden_size"):
        Data2VecMultimodalConfig(text_config=config.text_config.to_dict(), vision_config=config.vision_config.to_dict(),
                                 audio_config=config.audio_config.to_dict(), hidden_size=64, num_attention_heads=2)
