from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

import hf_mmdl
from hf_mmdl import M2Config, M2ForConditionalGeneration, M2ImageProcessor, M2Model, M2Processor


def test_model_types_do_not_collide_with_transformers():
    assert hf_mmdl.MODEL_TYPES
    assert not set(hf_mmdl.MODEL_TYPES) & set(CONFIG_MAPPING_NAMES), "a model_type shadows a transformers model"
    assert M2Config.model_type == "m2_transformer"


def test_auto_classes_resolve_m2(tokenizer):
    config = AutoConfig.for_model("m2_transformer", d_model=32, num_attention_heads=4)
    assert isinstance(config, M2Config)
    assert type(AutoModel.from_config(config)) is M2Model
    assert type(AutoModelForImageTextToText.from_config(config)) is M2ForConditionalGeneration


def test_auto_processor_and_image_processor_reload(tmp_path, image_processor_m2):
    M2Config(d_model=32, num_attention_heads=4).save_pretrained(tmp_path)
    image_processor_m2.save_pretrained(tmp_path)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), M2Processor)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), M2ImageProcessor)
