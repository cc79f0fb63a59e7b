"""Loading and saving rules every architecture shares (`hf_mmdl/modeling/loading.py`, `modeling/inputs.py`):
a folder of another architecture is refused, saving onto a file raises, a damaged weights file is named, and a
model loaded in bfloat16 takes the processors' float32 inputs."""

import pytest
import torch
from transformers import BertConfig

from hf_mmdl import (
    DiscreteVAEConfig,
    DiscreteVAEModel,
    GlideConfig,
    GlideModel,
    GlideTextConfig,
    ImageVAEConfig,
    ImageVAEModel,
    M2Config,
    M2ForConditionalGeneration,
)

from hf_mmdl.processing import train_caption_tokenizer

from conftest import CAPTIONS, tiny_region_config
from test_autoencoder_modeling import tiny_dvae, tiny_vae
from test_glide_modeling import tiny_glide


def tiny_m2():
    torch.manual_seed(0)
    return M2ForConditionalGeneration(tiny_region_config(train_caption_tokenizer(CAPTIONS, min_count=1))).eval()


MAKERS = {"m2": tiny_m2, "vae": tiny_vae, "dvae": tiny_dvae, "glide": tiny_glide}
CONFIGS = {"m2": M2Config, "vae": ImageVAEConfig, "dvae": DiscreteVAEConfig, "glide": GlideConfig}
MODELS = {"m2": M2ForConditionalGeneration, "vae": ImageVAEModel, "dvae": DiscreteVAEModel, "glide": GlideModel}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_folder_of_another_architecture_is_refused_not_loaded_with_random_weights(name, tmp_path):
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match=rf"holds a `bert` model, not a `{CONFIGS[name].model_type}` one"):
        MODELS[name].from_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="holds a `bert` model"):
        CONFIGS[name].from_pretrained(tmp_path / "bert")
    # Another architecture of the package is as foreign as BERT: e.g. a dVAE folder into the VAE.
    other = "dvae" if name != "dvae" else "vae"
    MAKERS[other]().save_pretrained(tmp_path / other)
    with pytest.raises(ValueError, match=rf"holds a `{CONFIGS[other].model_type}` model"):
        MODELS[name].from_pretrained(tmp_path / other)


def test_a_sub_configuration_still_loads_from_its_composite_folder(tmp_path):
    tiny_glide().save_pretrained(tmp_path)
    assert GlideTextConfig.from_pretrained(tmp_path).width == 32


@pytest.mark.parametrize("name", list(MODELS))
def test_saving_onto_an_existing_file_raises(name, tmp_path):
    target = tmp_path / "model.bin"
    target.write_text("something else")
    with pytest.raises(FileExistsError, match="is an existing file. Pass a folder path"):
        MAKERS[name]().save_pretrained(target)
    assert target.read_text() == "something else"


@pytest.mark.parametrize("name", list(MODELS))
def test_a_truncated_weights_file_is_named(name, tmp_path):
    MAKERS[name]().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=rf"{weights}.*damaged or incomplete"):
        MODELS[name].from_pretrained(tmp_path)


def float32_call(name, model):
    """One public entry point per architecture fed float32 inputs, as the processors return them."""
    generator = torch.Generator().manual_seed(0)
    if name == "m2":
        regions = torch.randn(2, 10, 16, generator=generator)
        ids = model.generate(region_features=regions, num_beams=2, max_new_tokens=3)
        return model(region_features=regions, decoder_input_ids=ids).logits
    images = torch.rand(2, 3, 16, 16, generator=generator)
    if name == "vae":
        model.decode(torch.randn(2, 8, generator=generator))
        return model(images * 2 - 1).reconstruction
    if name == "dvae":
        model.get_codebook_indices(model.map_pixels(images))
        return model(model.map_pixels(images)).decoder_output
    input_ids = torch.randint(1, 50, (2, 8), generator=generator)
    return model(images * 2 - 1, input_ids, torch.ones_like(input_ids)).model_output


@pytest.mark.parametrize("name", list(MODELS))
def test_a_bfloat16_model_takes_float32_inputs(name):
    model = MAKERS[name]().to(torch.bfloat16)
    output = float32_call(name, model)
    assert output.dtype == torch.bfloat16 and torch.isfinite(output.float()).all()
