"""VokenizerProcessor: BERT tokenizer + ImageNet-style image processor, saved and loaded through AutoProcessor."""

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoProcessor

from hf_mmdl import VokenizerModel, VokenizerProcessor
from hf_mmdl.processing import VokenizerImageProcessor, train_bert_wordpiece
from hf_mmdl.processing.processing_vokenizer import IMAGENET_MEAN, IMAGENET_STD

from test_vokenizer_modeling import tiny_config, tiny_text_config

CAPTIONS = ["a red circle", "a blue square above a green star", "two cats on a mat"]


@pytest.fixture(scope="module")
def processor():
    return VokenizerProcessor(VokenizerImageProcessor.for_size(32),
                              train_bert_wordpiece(CAPTIONS * 2, vocab_size=80, model_max_length=12))


def image(colour=(200, 30, 30), size=(40, 48)):
    return PIL.Image.fromarray(np.full((*size, 3), colour, dtype=np.uint8))


def test_text_and_images_become_paired_model_inputs(processor):
    batch = processor(text=CAPTIONS[:2], images=[image(), image((0, 0, 255))])
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"][0, 0] == processor.tokenizer.cls_token_id
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    red = (200 / 255 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    torch.testing.assert_close(batch["pixel_values"][0, 0], torch.full((32, 32), red), atol=1e-2, rtol=0)
    model = VokenizerModel(tiny_config(text_config=tiny_text_config(vocab_size=len(processor.tokenizer)))).eval()
    assert model(**batch).loss is not None


def test_the_default_image_processor_is_the_released_keys_preprocessing():
    default = VokenizerImageProcessor()
    assert default.size == {"shortest_edge": 256} and default.crop_size == {"height": 224, "width": 224}
    assert default(images=[image(size=(300, 400))])["pixel_values"].shape == (1, 3, 224, 224)


def test_save_and_auto_processor_reload(processor, tmp_path):
    model = VokenizerModel(tiny_config(text_config=tiny_text_config(vocab_size=len(processor.tokenizer))))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(reloaded) is VokenizerProcessor
    for key, value in processor(text=CAPTIONS, images=[image()] * 3).items():
        torch.testing.assert_close(reloaded(text=CAPTIONS, images=[image()] * 3)[key], value)


def test_over_long_sentences_are_cut_or_refused(processor):
    long = " ".join(CAPTIONS * 3)
    assert processor(text=[long])["input_ids"].shape[1] == 12
    with pytest.raises(ValueError, match="at most 12 fit"):
        processor(text=[long], truncation=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(text=""), "empty"), (dict(text=["a cat", " "]), "blank"), (dict(text=[image()]), "not a string"),
    (dict(), "Nothing to process"), (dict(text=["a", "b"], images=[image()]), "Batch mismatch"),
    (dict(images=[np.full((8, 8, 3), 300)]), "outside 0-255"),
])
def test_bad_inputs_are_refused(processor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        processor(**kwargs)


def test_a_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False
    with pytest.raises(TypeError, match="fast tokenizer"):
        VokenizerProcessor(VokenizerImageProcessor(), Slow())
