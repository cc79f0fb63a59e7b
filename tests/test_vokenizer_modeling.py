"""The Vokenizer matcher and its ResNeXt backbone: keys, relevance, hinge losses, freezing, torchvision names."""

import pytest
import torch
from transformers import AutoBackbone, AutoConfig, BertConfig, ConvNextConfig, ResNetConfig

from hf_mmdl import ResNeXtBackbone, ResNeXtConfig, VokenizerConfig, VokenizerModel
from hf_mmdl.modeling.losses import batchwise_hinge_loss, paired_hinge_loss
from hf_mmdl.modeling.modeling_resnext import FrozenBatchNorm2d


def tiny_text_config(**overrides) -> BertConfig:
    return BertConfig(**(dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=37, max_position_embeddings=64) | overrides))


def tiny_config(**overrides) -> VokenizerConfig:
    """The spec's tiny matcher: BERT 2L/32H, last 2 layers, a 2-stage basic ResNet, MLP 16 → 8-d keys."""
    vision = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    return VokenizerConfig(**(dict(text_config=tiny_text_config(), vision_config=vision, lang_layers=[-2, -1],
                                   mlp_hidden_size=16, joint_dim=8) | overrides))


def paired_inputs(batch_size: int = 2, length: int = 6, image_size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(batch_size)
    input_ids = torch.randint(5, 99, (batch_size, length), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 1, 2
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length - 2:] = 0  # one padded sentence
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "pixel_values": torch.randn(batch_size, 3, image_size, image_size, generator=generator)}


def make(**overrides) -> VokenizerModel:
    torch.manual_seed(0)
    return VokenizerModel(tiny_config(**overrides)).eval()


def test_token_and_image_keys_are_unit_vectors_and_relevance_is_their_inner_product():
    model, inputs = make(), paired_inputs(4)
    with torch.no_grad():
        out = model(**inputs)
    assert out.text_keys.shape == (4, 6, 8) and out.image_keys.shape == (4, 8)
    torch.testing.assert_close(out.text_keys.norm(dim=-1), torch.ones(4, 6))
    torch.testing.assert_close(out.image_keys.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(out.logits_per_token, out.text_keys @ out.image_keys.T)
    with torch.no_grad():
        torch.testing.assert_close(model.get_text_keys(inputs["input_ids"], inputs["attention_mask"]), out.text_keys)
        torch.testing.assert_close(model.get_image_keys(inputs["pixel_values"]), out.image_keys)


def test_token_keys_read_the_concatenated_lang_layers():
    model, inputs = make(), paired_inputs(2)
    with torch.no_grad():
        hidden = model.lang_model.backbone(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                           output_hidden_states=True).hidden_states
        expected = torch.nn.functional.normalize(model.lang_model.mlp(torch.cat([hidden[-2], hidden[-1]], -1)), dim=-1)
        torch.testing.assert_close(model.get_text_keys(inputs["input_ids"], inputs["attention_mask"]), expected)


def test_paired_hinge_loss_matches_a_hand_computation():
    # Batch 4: halves (0, 1) and (2, 3); sentence 0's negative image is 2, 1's is 3, 2's is 0, 3's is 1.
    text = torch.nn.functional.normalize(torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(4, 5, generator=torch.Generator().manual_seed(1)), dim=-1)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    negative_of = {0: 2, 1: 3, 2: 0, 3: 1}
    total, count = 0.0, 0
    for b in range(4):
        for i in range(3):
            if mask[b, i]:
                positive = float(text[b, i] @ images[b])
                negative = float(text[b, i] @ images[negative_of[b]])
                total += max(0.0, 0.5 - positive + negative)
                count += 1
    assert paired_hinge_loss(text, images, mask, 0.5).item() == pytest.approx(total / count, rel=1e-5)
    batchwise = sum(max(0.0, 0.5 - float(text[b, i] @ images[b]) + float(text[b, i] @ images[c]))
                    for b in range(4) for i in range(3) for c in range(4) if mask[b, i] and c != b) / count
    assert batchwise_hinge_loss(text, images, mask, 0.5).item() == pytest.approx(batchwise, rel=1e-5)


def test_the_model_loss_follows_loss_type_and_margin():
    inputs = paired_inputs(4)
    for loss_type, hinge in (("paired", paired_hinge_loss), ("batchwise", batchwise_hinge_loss)):
        model = make(loss_type=loss_type, margin=0.3)
        with torch.no_grad():
            out = model(**inputs)
        expected = hinge(out.text_keys, out.image_keys, inputs["attention_mask"], 0.3)
        torch.testing.assert_close(out.loss, expected)


def test_an_odd_batch_is_refused_by_the_paired_loss_but_not_by_the_batchwise_one():
    with pytest.raises(ValueError, match="(?i)even"):
        make()(**paired_inputs(3))
    assert make()(**paired_inputs(3), return_loss=False).loss is None
    assert make(loss_type="batchwise")(**paired_inputs(3)).loss is not None


def test_frozen_backbones_get_no_gradient_and_stay_in_eval_mode():
    model = make(freeze_text_backbone=True, freeze_vision_backbone=True).train()
    assert not model.lang_model.backbone.training and not model.visn_model.backbone.training
    assert model.lang_model.mlp.training and model.visn_model.mlp.training
    stats = model.visn_model.backbone.embedder.embedder.normalization.running_mean.clone()
    model(**paired_inputs(4)).loss.backward()
    torch.testing.assert_close(model.visn_model.backbone.embedder.embedder.normalization.running_mean, stats, rtol=0, atol=0)
    trained = {name for name, p in model.named_parameters() if p.grad is not None}
    assert trained == {name for name, _ in model.named_parameters() if ".mlp." in name}


@pytest.mark.parametrize("vision", [
    ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], patch_size=4),
    ResNeXtConfig(embedding_size=8, hidden_sizes=[16, 32], depths=[1, 1], groups=2, width_per_group=4,
                  frozen_batch_norm=True),
], ids=["convnext", "resnext"])
def test_any_transformers_backbone_serves_the_image_side(vision, tmp_path):
    model = make(vision_config=vision)
    with torch.no_grad():
        keys = model.get_image_keys(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(keys.norm(dim=-1), torch.ones(2))
    model.save_pretrained(tmp_path)
    reloaded = VokenizerModel.from_pretrained(tmp_path).eval()
    assert type(reloaded.config.vision_config) is type(vision)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.get_image_keys(torch.ones(2, 3, 32, 32)), model.get_image_keys(torch.ones(2, 3, 32, 32)))


@pytest.mark.parametrize("overrides, match", [
    (dict(loss_type="triplet"), "loss_type"),
    (dict(margin=0.0), "margin"),
    (dict(dropout=1.0), "dropout"),
    (dict(joint_dim=0), "joint_dim"),
    (dict(lang_layers=[]), "lang_layers"),
    (dict(lang_layers=[-1, 2]), "twice"),
    (dict(lang_layers=[-4]), "lang_layers"),
    (dict(vision_config=BertConfig()), "backbone"),
])
def test_bad_configurations_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_ids_of_another_tokenizer_and_mismatched_masks_are_refused():
    model, inputs = make(), paired_inputs(2)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 99\).*another tokenizer"):
        model(**(inputs | {"input_ids": inputs["input_ids"] + 200}))
    with pytest.raises(ValueError, match="attention_mask"):
        model(**(inputs | {"attention_mask": inputs["attention_mask"][:, :3]}))
    with pytest.raises(ValueError, match="channels"):
        model(**(inputs | {"pixel_values": inputs["pixel_values"][:, :1]}))
    with pytest.raises(ValueError, match="paired"):
        model(input_ids=inputs["input_ids"], return_loss=True)


def test_ids_longer_than_the_berts_positions_are_refused():
    model = make()
    with pytest.raises(ValueError, match="input_ids"):
        model.get_text_keys(torch.randint(5, 99, (1, 65)))


# torchvision's resnext101_32x8d without `fc`: 88,791,336 parameters in all, minus 2048 x 1000 + 1000 for fc.
RESNEXT101_32X8D_PARAMETERS = 86_742_336


def test_the_resnext101_32x8d_layout_has_torchvisions_names_and_shapes():
    with torch.device("meta"):
        backbone = ResNeXtBackbone(ResNeXtConfig(frozen_batch_norm=True))
    state = {name: tuple(t.shape) for name, t in backbone.state_dict().items()}
    assert state["conv1.weight"] == (64, 3, 7, 7) and state["bn1.running_var"] == (64,)
    blocks = {stage: len({n.split(".")[1] for n in state if n.startswith(f"layer{stage}.")}) for stage in (1, 2, 3, 4)}
    assert blocks == {1: 3, 2: 4, 3: 23, 4: 3}
    for stage, width in zip((1, 2, 3, 4), (256, 512, 1024, 2048)):
        assert state[f"layer{stage}.0.conv2.weight"] == (width, width // 32, 3, 3)  # grouped, 32 groups
        assert state[f"layer{stage}.0.conv3.weight"] == (width, width, 1, 1)
        assert state[f"layer{stage}.0.downsample.0.weight"][0] == width
        assert f"layer{stage}.0.downsample.1.running_mean" in state and f"layer{stage}.1.downsample.0.weight" not in state
    assert not [n for n in state if "num_batches_tracked" in n or n.startswith("fc.")]
    assert all(n.rsplit(".", 1)[-1] in ("weight", "bias", "running_mean", "running_var") for n in state)
    with torch.device("meta"):
        trainable = ResNeXtBackbone(ResNeXtConfig())
    assert sum(p.numel() for p in trainable.parameters()) == RESNEXT101_32X8D_PARAMETERS
    assert backbone.channels == [2048]


def test_the_resnext_backbone_loads_through_auto_backbone_with_strides_of_torchvision():
    config = ResNeXtConfig(embedding_size=8, hidden_sizes=[16, 32, 64], depths=[1, 2, 1], groups=4, width_per_group=2,
                           out_features=["stem", "stage1", "stage2", "stage3"])
    assert type(AutoConfig.for_model("hf_mmdl_resnext")) is ResNeXtConfig
    backbone = AutoBackbone.from_config(config).eval()
    assert type(backbone) is ResNeXtBackbone
    maps = backbone(torch.randn(1, 3, 64, 64)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(1, 8, 16, 16), (1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4)]


def test_frozen_batch_norm_equals_batch_norm_in_eval_and_never_changes():
    bn = torch.nn.BatchNorm2d(4).eval()
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).data = torch.rand(4) + 0.5
    frozen = FrozenBatchNorm2d(4)
    frozen.load_state_dict({k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"})
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(frozen.train()(x), bn(x))
    assert not list(frozen.parameters())


@pytest.mark.parametrize("overrides", [dict(depths=[1, 1], hidden_sizes=[8]), dict(groups=0), dict(depths=[1, True])])
def test_bad_resnext_configurations_are_refused(overrides):
    with pytest.raises(ValueError, match="ResNeXtConfig|hidden_sizes"):
        ResNeXtConfig(**overrides)


def test_a_backbone_with_no_trainable_parameter_keeps_its_batch_norm_statistics():
    # LoRA (or a user) turning requires_grad off must not leave batch norm updating its running statistics.
    model = make(freeze_vision_backbone=False)
    model.visn_model.backbone.requires_grad_(False)
    stats = model.visn_model.backbone.embedder.embedder.normalization.running_mean.clone()
    model.train()(**paired_inputs(4))
    torch.testing.assert_close(model.visn_model.backbone.embedder.embedder.normalization.running_mean, stats, rtol=0, atol=0)
    model.visn_model.backbone.requires_grad_(True)
    model.train()(**paired_inputs(4))
    assert not torch.equal(model.visn_model.backbone.embedder.embedder.normalization.running_mean, stats)
