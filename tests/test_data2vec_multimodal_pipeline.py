"""transformers' pipelines over data2vec-multimodal's shared space, on tiny random models saved with their processor:
feature-extraction (text), image-feature-extraction, zero-shot-image-classification (from a folder) and
zero-shot-audio-classification (from a loaded model)."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor, pipeline

from hf_mmdl import (
    Data2VecMultimodalForPreTraining, Data2VecMultimodalForZeroShotClassification, Data2VecMultimodalModel,
    Data2VecMultimodalProcessor,
)
from hf_mmdl.data.trimodal import SCENE_CONCEPTS
from hf_mmdl.modeling.configuration_data2vec_multimodal import data2vec_multimodal_config_for

IMAGE_SIZE = 24  # the built-in scenes' smallest side, which the demo's gallery needs
LABELS = ["red circle", "blue square", "green star"]
TRAINED_TEMPERATURE = 0.2  # a learned temperature unlike the configured initial one (0.07)


def save_tiny_model(folder, model_class=Data2VecMultimodalForPreTraining, seed=0):
    """A tiny random data2vec-multimodal model of `model_class` saved with its processor (a BPE trained on scene
    captions, IMAGE_SIZE px images, 16 kHz audio) in `folder`; returns the folder."""
    processor = Data2VecMultimodalProcessor.for_texts(
        [f"a {size} {concept} {where}" for concept in SCENE_CONCEPTS for size in ("small", "large")
         for where in ("on the left", "in the centre", "at the top")], image_size=IMAGE_SIZE, vocab_size=300)
    tokenizer = processor.tokenizer
    config = data2vec_multimodal_config_for(
        "tiny", vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, image_size=IMAGE_SIZE)
    torch.manual_seed(seed)
    model = model_class(config)
    if isinstance(model, Data2VecMultimodalForPreTraining):
        with torch.no_grad():  # as if training had learned a temperature
            model.contrastive.logit_scale.fill_(math.log(1 / TRAINED_TEMPERATURE))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pretraining_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("d2v-pretraining"))


@pytest.fixture(scope="module")
def bare_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("d2v-bare"), Data2VecMultimodalModel)


@pytest.fixture(scope="module")
def encoder(pretraining_folder):
    return Data2VecMultimodalModel.from_pretrained(pretraining_folder).eval()


@pytest.fixture(scope="module")
def processor(pretraining_folder):
    return Data2VecMultimodalProcessor.from_pretrained(pretraining_folder)


def random_image(seed=0) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


def waveform(seed=0, samples=4000) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(samples).astype(np.float32) * 0.1


def expected_scores(encoder, processor, other: torch.Tensor, template: str, temperature: float) -> dict[str, float]:
    """softmax over the labels of cos(other, caption) / τ, from the bare encoder's features."""
    with torch.no_grad():
        texts = encoder.get_text_features(**processor(text=[template.format(label) for label in LABELS]))
    return dict(zip(LABELS, ((other @ texts.T)[0] / temperature).softmax(-1).tolist()))


def test_feature_extraction_pipeline_gives_the_encoders_token_states(pretraining_folder, encoder, processor):
    extractor = pipeline("feature-extraction", model=str(pretraining_folder))
    assert isinstance(extractor.model, Data2VecMultimodalModel)
    states = torch.tensor(extractor("a small red circle on the left"))
    inputs = processor(text=["a small red circle on the left"])
    with torch.no_grad():
        output = encoder(**inputs)
    assert states.shape == (1, inputs["input_ids"].shape[1], encoder.config.hidden_size)
    torch.testing.assert_close(states, output.last_hidden_state, atol=1e-5, rtol=1e-5)
    # Mean-pooled, they are the encoder's pooled output; `get_text_features` projects that into the shared space.
    torch.testing.assert_close(states.mean(1), output.pooler_output, atol=1e-5, rtol=1e-5)


def test_image_feature_extraction_pipeline_pools_as_the_encoder_does(pretraining_folder, encoder, processor):
    extractor = pipeline("image-feature-extraction", model=str(pretraining_folder))
    pooled = torch.tensor(extractor(random_image(), pool=True))
    with torch.no_grad():
        expected = encoder(**processor(images=[random_image()])).pooler_output
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)


def test_zero_shot_image_pipeline_loads_from_a_folder_with_the_learned_temperature(pretraining_folder, encoder,
                                                                                    processor):
    classifier = pipeline("zero-shot-image-classification", model=str(pretraining_folder))
    assert isinstance(classifier.model, Data2VecMultimodalForZeroShotClassification)
    result = classifier(random_image(), candidate_labels=LABELS, hypothesis_template="a {}")
    assert [r["label"] for r in result] == sorted(LABELS, key=lambda label: -next(
        r["score"] for r in result if r["label"] == label))
    with torch.no_grad():
        image = encoder.get_image_features(**processor(images=[random_image()]))
    expected = expected_scores(encoder, processor, image, "a {}", TRAINED_TEMPERATURE)
    for r in result:
        assert r["score"] == pytest.approx(expected[r["label"]], abs=1e-5)
    # The configured initial temperature would give other scores: the learned one was loaded.
    initial = expected_scores(encoder, processor, image, "a {}", encoder.config.contrastive_temperature)
    assert max(abs(initial[label] - expected[label]) for label in LABELS) > 1e-3


def test_zero_shot_audio_pipeline_scores_captions_against_a_clip(pretraining_folder, encoder, processor):
    model = Data2VecMultimodalForZeroShotClassification.from_pretrained(pretraining_folder)
    # The pipeline passes the text's and the feature extractor's outputs in one call, so the extractor must not add
    # its own `attention_mask` (one clip needs none).
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(pretraining_folder, return_attention_mask=False)
    classifier = pipeline("zero-shot-audio-classification", model=model, tokenizer=processor.tokenizer,
                          feature_extractor=extractor)
    result = classifier(waveform(), candidate_labels=LABELS, hypothesis_template="a {}")
    with torch.no_grad():
        audio = encoder.get_audio_features(**processor(audio=waveform(), sampling_rate=16000))
    expected = expected_scores(encoder, processor, audio, "a {}", TRAINED_TEMPERATURE)
    assert sum(r["score"] for r in result) == pytest.approx(1.0)
    for r in result:
        assert r["score"] == pytest.approx(expected[r["label"]], abs=1e-5)


def test_zero_shot_audio_pipeline_with_the_saved_extractor_collides_on_attention_mask(pretraining_folder, processor):
    """Why the test above loads the extractor with return_attention_mask=False: transformers' pipeline calls
    `model(**text_inputs, **audio_inputs)`, and both carry an `attention_mask`."""
    model = Data2VecMultimodalForZeroShotClassification.from_pretrained(pretraining_folder)
    classifier = pipeline("zero-shot-audio-classification", model=model, tokenizer=processor.tokenizer,
                          feature_extractor=processor.feature_extractor)
    with pytest.raises(TypeError, match="multiple values for keyword argument 'attention_mask'"):
        classifier(waveform(), candidate_labels=LABELS)


def test_a_bare_model_folder_gives_the_configured_initial_temperature(bare_folder):
    model = Data2VecMultimodalForZeroShotClassification.from_pretrained(bare_folder)
    temperature = model.config.contrastive_temperature
    assert model.contrastive.logit_scale.item() == pytest.approx(math.log(1 / temperature))
    bare = Data2VecMultimodalModel.from_pretrained(bare_folder)
    for name, value in bare.state_dict().items():  # every encoder weight loaded, none left at a fresh init
        torch.testing.assert_close(model.data2vec_multimodal.state_dict()[name], value)


def test_zero_shot_logits_are_scaled_cosines_per_image_and_per_text(pretraining_folder, processor):
    model = Data2VecMultimodalForZeroShotClassification.from_pretrained(pretraining_folder).eval()
    images = [random_image(0), random_image(1)]
    inputs = processor(text=LABELS + ["a yellow cross"], images=images * 2)
    with torch.no_grad():
        output = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                       pixel_values=inputs["pixel_values"][:2])
    assert output.logits_per_image.shape == (2, 4) and output.logits_per_audio is None
    torch.testing.assert_close(output.logits_per_text, output.logits_per_image.T)
    cosine = output.image_embeds @ output.text_embeds.T
    torch.testing.assert_close(output.logits_per_image, cosine / TRAINED_TEMPERATURE)


def test_zero_shot_model_refuses_inputs_it_cannot_score(pretraining_folder, processor):
    model = Data2VecMultimodalForZeroShotClassification.from_pretrained(pretraining_folder).eval()
    text = processor(text=LABELS)
    image = processor(images=[random_image()])["pixel_values"]
    audio = processor(audio=waveform(), sampling_rate=16000)["input_values"]
    with pytest.raises(ValueError, match=r"pass input_ids and exactly one of the other two, got \['pixel_values'\]"):
        model(pixel_values=image)
    with pytest.raises(ValueError, match="exactly one of the other two, got \\['input_ids'\\]"):
        model(**text)
    with pytest.raises(ValueError, match="got \\['input_ids', 'pixel_values', 'input_values'\\]"):
        model(**text, pixel_values=image, input_values=audio)


def test_the_bare_model_names_the_zero_shot_class_for_captions_with_images(encoder, processor):
    with pytest.raises(ValueError, match="use Data2VecMultimodalForZeroShotClassification"):
        encoder(**processor(text=LABELS[:1], images=[random_image()]))
