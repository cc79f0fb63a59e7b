"""Conversion of transformers' unimodal Data2Vec models into data2vec-multimodal (`hf-mmdl convert data2vec`): every
tensor placed once, and the converted model's hidden states equal each source model's (tiny random models with
every parameter perturbed, so that no weight is trivially 0 or 1)."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel, BertConfig, BertModel, Data2VecAudioConfig, Data2VecAudioForCTC, Data2VecAudioModel,
    Data2VecTextConfig, Data2VecTextForMaskedLM, Data2VecTextModel, Data2VecVisionConfig,
    Data2VecVisionForImageClassification, Data2VecVisionModel,
)

import hf_mmdl  # noqa: F401  (registers data2vec_multimodal with the Auto classes)
from hf_mmdl.cli import main as cli_main
from hf_mmdl.convert.data2vec_unimodal import (
    convert_data2vec_checkpoints, data2vec_multimodal_config_from, data2vec_multimodal_state_dict,
    map_unimodal_state_dict, owns,
)
from hf_mmdl.modeling import Data2VecMultimodalModel

BLOCKS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def text_config(**overrides):
    return Data2VecTextConfig(**(BLOCKS | dict(vocab_size=60, max_position_embeddings=20, type_vocab_size=1,
                                                layer_norm_eps=1e-5) | overrides))


def vision_config(**overrides):
    # The released pre-trained layout: shared relative position bias, mask token, layer scale, per-token final norm.
    return Data2VecVisionConfig(**(BLOCKS | dict(image_size=16, patch_size=4, use_shared_relative_position_bias=True,
                                                  use_mask_token=True, layer_scale_init_value=0.1,
                                                  use_mean_pooling=False) | overrides))


def audio_config(**overrides):
    return Data2VecAudioConfig(**(BLOCKS | dict(conv_dim=(8, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                                 num_conv_pos_embedding_groups=2, conv_pos_kernel_size=5,
                                                 num_conv_pos_embeddings=2) | overrides))


def perturbed(model, seed=0):
    """Every parameter moved by noise (LayerNorm weights off 1, biases, layer scales and the relative position
    bias off their constant initialisation), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def sources():
    torch.manual_seed(0)
    return {
        "text": perturbed(Data2VecTextModel(text_config()), 1),  # with its pooler, which is dropped
        "image": perturbed(Data2VecVisionModel(vision_config()), 2),
        "audio": perturbed(Data2VecAudioModel(audio_config()), 3),
    }


def inputs_for(modality, seed=0):
    """The source model's inputs and ours, with padding for text and audio and masked patches for images."""
    generator = torch.Generator().manual_seed(seed)
    if modality == "text":
        ids = torch.randint(3, 60, (2, 9), generator=generator)
        mask = torch.ones_like(ids)
        ids[1, 6:], mask[1, 6:] = 1, 0  # pad id 1
        return dict(input_ids=ids, attention_mask=mask), dict(input_ids=ids, attention_mask=mask)
    if modality == "image":
        pixels = torch.randn(2, 3, 16, 16, generator=generator)
        masked = torch.rand(2, 16, generator=generator) < 0.4
        return (dict(pixel_values=pixels, bool_masked_pos=masked), dict(pixel_values=pixels, bool_masked_pos=masked))
    waveform = torch.randn(2, 900, generator=generator)
    mask = torch.ones(2, 900, dtype=torch.long)
    mask[1, 650:] = 0
    return (dict(input_values=waveform, attention_mask=mask), dict(input_values=waveform, audio_attention_mask=mask))


def max_hidden_state_diff(source, converted, modality, seed=0):
    """Largest |difference| over every hidden state (the first block's input and each block's output; transformers
    records the same: for audio the first is the input of block 0, after the positional conv and LayerNorm, and
    its last is not replaced by a final norm), every step and channel."""
    theirs_inputs, our_inputs = inputs_for(modality, seed)
    with torch.no_grad():
        theirs = source(**theirs_inputs, output_hidden_states=True).hidden_states
        ours = converted(**our_inputs, output_hidden_states=True).hidden_states
    assert len(theirs) == len(ours) == converted.config.num_hidden_layers + 1
    return max(float((a - b).abs().max()) for a, b in zip(theirs, ours))


def converted_model(**models):
    """A `Data2VecMultimodalModel` converted in memory from transformers models keyed text / image / audio."""
    config = data2vec_multimodal_config_from(*(models[m].config if m in models else None
                                               for m in ("text", "image", "audio")))
    state_dict = data2vec_multimodal_state_dict(config, **{m: model.state_dict() for m, model in models.items()})
    model = Data2VecMultimodalModel(config)
    model.load_state_dict(state_dict, strict=False)
    return model.eval()


def test_every_source_tensor_is_placed_exactly_once_and_every_tower_tensor_is_filled(sources):
    for modality, model in sources.items():
        state_dict = model.state_dict()
        mapping = map_unimodal_state_dict(modality, state_dict)
        for key, tensor in state_dict.items():
            holders = [target for target, mapped in mapping.state_dict.items() if mapped is tensor]
            assert len(holders) == (0 if key in mapping.dropped else 1), (key, holders)
        assert mapping.dropped == (["pooler.dense.weight", "pooler.dense.bias"] if modality == "text" else [])
        assert len(mapping.state_dict) == len(state_dict) - len(mapping.dropped)
    config = data2vec_multimodal_config_from(sources["text"].config, sources["image"].config, sources["audio"].config)
    source_state_dicts = {m: model.state_dict() for m, model in sources.items()}
    state_dict = data2vec_multimodal_state_dict(config, **source_state_dicts)
    expected = Data2VecMultimodalModel(config).state_dict()
    not_converted = sorted(set(expected) - set(state_dict))
    assert not_converted == ["final_norm.fusion.bias", "final_norm.fusion.weight", "projections.audio.weight",
                             "projections.image.weight", "projections.text.weight"]
    assert all(state_dict[key].shape == expected[key].shape for key in state_dict)
    # BEiT's key has no bias: the converted one is 0; the rest comes from the source.
    assert torch.equal(state_dict["layers.1.attention.image.key.bias"], torch.zeros(32))
    assert state_dict["layers.1.attention.image.query.bias"] is source_state_dicts["image"][
        "encoder.layer.1.attention.attention.query.bias"]
    assert config.block_sharing == "separate" and config.pre_norm_modalities == ["image"]
    assert config.layer_scale_init_values == {"image": 0.1}


def test_unmapped_missing_and_mis_shaped_tensors_are_listed(sources):
    config = data2vec_multimodal_config_from(sources["text"].config)
    text = dict(sources["text"].state_dict())
    with pytest.raises(ValueError, match=r"text tensors have no place in the multimodal model: encoder\.extra\.weight"):
        data2vec_multimodal_state_dict(config, text=text | {"encoder.extra.weight": torch.zeros(3)})
    incomplete = {k: v for k, v in text.items() if k != "encoder.layer.1.intermediate.dense.weight"}
    with pytest.raises(ValueError, match=r"missing: layers\.1\.ffn\.text\.fc1\.weight"):
        data2vec_multimodal_state_dict(config, text=incomplete)
    wrong = text | {"encoder.layer.0.output.dense.bias": torch.zeros(31)}
    with pytest.raises(ValueError, match=r"mis-shaped: layers\.0\.ffn\.text\.fc2\.bias \(31,\) ≠ \(32,\)"):
        data2vec_multimodal_state_dict(config, text=wrong)
    vision = sources["image"].state_dict()
    with pytest.raises(ValueError, match=r"pooler\.layernorm\.weight \(→ final_norm\.image\.weight, already filled"):
        map_unimodal_state_dict("image", vision | {"pooler.layernorm.weight": torch.ones(32)})


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_each_converted_modality_reproduces_its_source_hidden_states(sources, modality):
    converted = converted_model(**{modality: sources[modality]})
    assert max_hidden_state_diff(sources[modality], converted, modality) <= 1e-4
    placed = data2vec_multimodal_state_dict(converted.config, **{modality: sources[modality].state_dict()})
    assert not any(owns(other, key) for other in ("text", "image", "audio") if other != modality for key in placed)


def test_all_three_in_one_model_reproduce_their_sources(sources):
    converted = converted_model(**sources)
    for modality, source in sources.items():
        assert max_hidden_state_diff(source, converted, modality, seed=5) <= 1e-4
    # The vision final norm is the per-token `layernorm`: last_hidden_state matches too.
    pixels = inputs_for("image")[0]["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(converted(pixel_values=pixels).last_hidden_state,
                                   sources["image"](pixel_values=pixels).last_hidden_state, atol=1e-4, rtol=0)


def test_the_parity_check_compares_values_so_swapped_query_and_key_fail_it(sources):
    """A conversion bug that keeps every name and shape (query and key of one block swapped) passes the mapping
    checks but not the hidden-state comparison."""
    config = data2vec_multimodal_config_from(sources["text"].config)
    state_dict = data2vec_multimodal_state_dict(config, text=sources["text"].state_dict())
    for name in ("weight", "bias"):
        query, key = f"layers.1.attention.text.query.{name}", f"layers.1.attention.text.key.{name}"
        state_dict[query], state_dict[key] = state_dict[key], state_dict[query]
    model = Data2VecMultimodalModel(config)
    model.load_state_dict(state_dict, strict=False)
    assert max_hidden_state_diff(sources["text"], model.eval(), "text") > 1e-2


@pytest.fixture(scope="module")
def saved(tmp_path_factory, sources):
    root = tmp_path_factory.mktemp("data2vec_sources")
    folders = {}
    for modality, model in sources.items():
        model.save_pretrained(root / modality)
        folders[modality] = root / modality
    return folders


def test_cli_writes_a_folder_that_automodel_loads_with_the_sources_outputs(saved, sources, tmp_path, capsys):
    out = tmp_path / "converted"
    cli_main(["convert", "data2vec", str(out), "--text", str(saved["text"]), "--vision", str(saved["image"]),
              "--audio", str(saved["audio"])])
    assert f"Wrote {out}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted"]  # no staging folder left behind
    assert (out / "model.safetensors").exists()
    assert "layers.0.attention.image.key.bias" in load_file(out / "model.safetensors")
    model = AutoModel.from_pretrained(out).eval()
    assert isinstance(model, Data2VecMultimodalModel)
    for modality, source in sources.items():
        assert max_hidden_state_diff(source, model, modality, seed=7) <= 1e-4


def test_task_checkpoints_convert_through_their_base_model_prefix(tmp_path):
    """Task models' encoders convert, their heads are dropped; a mean-pooling vision checkpoint's final norm is its
    pooler's LayerNorm (transformers normalises the patch mean there, not each token: hidden states stay exact)."""
    torch.manual_seed(1)
    heads = {
        "text": perturbed(Data2VecTextForMaskedLM(text_config()), 4),
        "vision": perturbed(Data2VecVisionForImageClassification(vision_config(use_mean_pooling=True, num_labels=3)),
                            5),
        "audio": perturbed(Data2VecAudioForCTC(audio_config(vocab_size=12)), 6),
    }
    for flag, model in heads.items():
        model.save_pretrained(tmp_path / flag)
    out = convert_data2vec_checkpoints(tmp_path / "out", **{flag: tmp_path / flag for flag in heads})
    model = AutoModel.from_pretrained(out).eval()
    bases = {"text": heads["text"].data2vec_text, "image": heads["vision"].data2vec_vision,
             "audio": heads["audio"].data2vec_audio}
    for modality, base in bases.items():
        assert max_hidden_state_diff(base, model, modality, seed=3) <= 1e-4
    pooler_norm = heads["vision"].data2vec_vision.pooler.layernorm
    torch.testing.assert_close(model.final_norm["image"].weight, pooler_norm.weight, atol=0, rtol=0)
    torch.testing.assert_close(model.final_norm["image"].bias, pooler_norm.bias, atol=0, rtol=0)


def test_bad_sources_give_clear_errors_and_write_nothing(saved, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="Pass at least one of --text, --vision or --audio"):
        convert_data2vec_checkpoints(out)
    wide = tmp_path / "wide_vision"
    Data2VecVisionModel(vision_config(hidden_size=48, num_attention_heads=2)).save_pretrained(wide)
    with pytest.raises(ValueError, match=r"differ in hidden_size \(text 32, vision 48\)"):
        convert_data2vec_checkpoints(out, text=saved["text"], vision=wide)
    deep = tmp_path / "deep_audio"
    Data2VecAudioModel(audio_config(num_hidden_layers=3, intermediate_size=48)).save_pretrained(deep)
    with pytest.raises(ValueError, match=r"num_hidden_layers \(text 2, audio 3\); intermediate_size \(text 64, "
                                         r"audio 48\)"):
        convert_data2vec_checkpoints(out, text=saved["text"], audio=deep)
    with pytest.raises(FileNotFoundError, match="--vision: no folder"):
        convert_data2vec_checkpoints(out, vision=tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--text: .*empty has no config.json"):
        convert_data2vec_checkpoints(out, text=tmp_path / "empty")
    no_weights = tmp_path / "config_only"
    audio_config().save_pretrained(no_weights)
    with pytest.raises(FileNotFoundError, match="--audio: cannot read the weights"):
        convert_data2vec_checkpoints(out, audio=no_weights)
    bert = tmp_path / "bert"
    BertModel(BertConfig(**BLOCKS, vocab_size=50)).save_pretrained(bert)
    with pytest.raises(ValueError, match="--text: .* holds a `bert` model, not a `data2vec-text` one"):
        convert_data2vec_checkpoints(out, text=bert)
    with pytest.raises(ValueError, match="--text: .* holds a `data2vec-vision` model"):
        convert_data2vec_checkpoints(out, text=saved["image"])
    per_layer = tmp_path / "ft1k_like"
    Data2VecVisionModel(vision_config(use_relative_position_bias=True, use_shared_relative_position_bias=False,
                                      use_mean_pooling=True)).save_pretrained(per_layer)
    with pytest.raises(ValueError, match=r"relative position bias per block \(use_relative_position_bias=True"):
        convert_data2vec_checkpoints(out, vision=per_layer)
    for flag, config, message in [
        ("audio", audio_config(add_adapter=True), "--audio: .* adapter after its blocks"),
        ("text", text_config(is_decoder=True), "--text: this is a decoder checkpoint"),
    ]:
        config.save_pretrained(tmp_path / flag)  # refused from its configuration, before any weights are read
        with pytest.raises(ValueError, match=message):
            convert_data2vec_checkpoints(out, **{flag: tmp_path / flag})
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        convert_data2vec_checkpoints(out, text=saved["text"])
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_reports_a_missing_modality_as_a_user_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", "data2vec", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "hf-mmdl convert: error: Pass at least one of --text, --vision or --audio" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_reloaded_model_rebuilds_the_text_position_buffers(sources, tmp_path):
    """`position_ids` / `token_type_ids` of the text embeddings are not saved; `from_pretrained` must rebuild them
    (left uninitialised, text inputs crashed or gave other outputs after loading)."""
    converted = converted_model(text=sources["text"])
    converted.save_pretrained(tmp_path / "saved")
    reloaded = Data2VecMultimodalModel.from_pretrained(tmp_path / "saved").eval()
    embeddings = reloaded.text_encoder.embeddings
    assert torch.equal(embeddings.position_ids[0], torch.arange(text_config().max_position_embeddings))
    assert not embeddings.token_type_ids.any()
    assert max_hidden_state_diff(sources["text"], reloaded, "text") <= 1e-4


def test_tensors_a_source_layout_lacks_are_filled_as_documented(tmp_path):
    """A mean-pooling vision model saved without its pooler has no final norm: `final_norm.image` is weight 1, bias
    0; an audio model without a mask embedding (no masking configured) gets a zero one. Hidden states stay exact."""
    torch.manual_seed(2)
    vision = perturbed(Data2VecVisionModel(vision_config(use_mean_pooling=True)), 7)
    audio = perturbed(Data2VecAudioModel(audio_config(mask_time_prob=0.0)), 8)
    assert not hasattr(audio, "masked_spec_embed")
    vision.save_pretrained(tmp_path / "vision")
    audio.save_pretrained(tmp_path / "audio")
    model = AutoModel.from_pretrained(convert_data2vec_checkpoints(tmp_path / "out", vision=tmp_path / "vision",
                                                                   audio=tmp_path / "audio")).eval()
    assert torch.equal(model.final_norm["image"].weight, torch.ones(32))
    assert torch.equal(model.final_norm["image"].bias, torch.zeros(32))
    assert torch.equal(model.audio_encoder.masked_spec_embed, torch.zeros(32))
    assert max_hidden_state_diff(vision, model, "image") <= 1e-4
    assert max_hidden_state_diff(audio, model, "audio") <= 1e-4
