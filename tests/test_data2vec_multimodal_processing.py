"""Data2VecMultimodalProcessor: captions, images and waveforms → the model's input names, shapes, dtypes and ranges;
paired batches; save and reload; and a clear error for each kind of bad input."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from hf_mmdl.processing import (
    Data2VecMultimodalImageProcessor,
    Data2VecMultimodalProcessor,
    train_byte_level_bpe,
    validate_audio,
)

CAPTIONS = ["a small red circle on the left", "at the top there is a large blue square", "a green star in the centre",
            "the white cross is small and sits on the right"] * 3


@pytest.fixture(scope="module")
def processor():
    return Data2VecMultimodalProcessor.for_texts(CAPTIONS, image_size=16, vocab_size=300, model_max_length=24)


def _clips(*lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(n) + 0.2).astype(np.float32) for n in lengths]


def _image(colour=(255, 0, 0), size=(20, 24), mode="RGB"):
    return PIL.Image.new(mode, size, colour)


def test_text_gives_roberta_framed_ids_and_mask(processor):
    tokenizer = processor.tokenizer
    assert [tokenizer.bos_token, tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.mask_token] == \
        tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    batch = processor(text=["a red circle", "a large blue square"])
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.int64
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and ids.shape[0] == 2
    assert (ids[:, 0] == 0).all() and mask[1].all() and ids[1, -1] == 2  # <s> ... </s>, longest one unpadded
    short = int(mask[0].sum())
    assert ids[0, short - 1] == 2 and (ids[0, short:] == 1).all() and (mask[0, short:] == 0).all()
    assert processor.batch_decode(ids) == ["a red circle", "a large blue square"]
    # Unseen words and characters still encode (byte-level), to real tokens, not <unk>.
    assert 3 not in processor(text="zebra über ☃")["input_ids"][0]
    assert processor(text="a red circle", padding="max_length", max_length=10)["input_ids"].shape == (1, 10)
    # Over-long captions are cut to model_max_length (24), keeping </s>.
    cut = processor(text="a small red circle on the left " * 6)["input_ids"]
    assert cut.shape == (1, 24) and cut[0, -1] == 2


def test_images_become_normalised_pixels(processor):
    batch = processor(images=[_image((255, 0, 0)), np.zeros((10, 10, 3), dtype=np.uint8)])
    assert set(batch) == {"pixel_values"} and batch["pixel_values"].dtype == torch.float32
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    assert torch.allclose(batch["pixel_values"][0, :, 5, 5], torch.tensor([1.0, -1.0, -1.0]))
    assert (batch["pixel_values"][1] == -1).all()
    # Transparent pixels are composited on white (the package's image rule).
    transparent = processor(images=_image((0, 0, 0, 0), mode="RGBA"))["pixel_values"]
    assert torch.allclose(transparent, torch.ones_like(transparent))


def test_audio_is_normalised_per_clip_padded_and_masked(processor):
    clips = _clips(1600, 1000)
    batch = processor(audio=clips, sampling_rate=16_000)
    assert set(batch) == {"input_values", "audio_attention_mask"}
    values, mask = batch["input_values"], batch["audio_attention_mask"]
    assert values.dtype == torch.float32 and mask.dtype == torch.int64 and values.shape == mask.shape == (2, 1600)
    assert mask[0].all() and mask[1, :1000].all() and not mask[1, 1000:].any()
    for row, length in ((0, 1600), (1, 1000)):
        real = values[row, :length]
        assert abs(real.mean()) < 1e-4 and abs(real.std() - 1) < 1e-2  # zero mean, unit variance over real samples
    assert (values[1, 1000:] == 0).all()
    # One clip alone, a tensor, and int16 / int32 PCM, read as their full scale (2**15, 2**31) → [-1, 1].
    assert processor(audio=torch.from_numpy(clips[0]), sampling_rate=16_000)["input_values"].shape == (1, 1600)
    pcm = np.round(clips[0] / 2 * 32767).astype(np.int16)
    assert np.allclose(validate_audio(pcm, 16_000, 16_000)[0], pcm / 32768.0)
    assert np.allclose(validate_audio([pcm.astype(np.int32) * 65536], 16_000, 16_000)[0], pcm / 32768.0)
    # datasets' decoded Audio rows: {"array", "sampling_rate"} dicts, their rate checked.
    rows = [{"array": clip, "sampling_rate": 16_000} for clip in clips]
    assert torch.equal(processor(audio=rows)["input_values"], values)
    from_pcm = processor(audio=pcm, sampling_rate=16_000)["input_values"][0]
    assert torch.allclose(from_pcm, processor(audio=pcm / 32768.0, sampling_rate=16_000)["input_values"][0], atol=1e-4)


def test_paired_batches_carry_every_modality(processor):
    batch = processor(text=["a red circle", "a blue square"], images=[_image(), _image((0, 0, 255))],
                      audio=_clips(800, 1200), sampling_rate=16_000)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "input_values", "audio_attention_mask"}
    assert {len(value) for value in batch.values()} == {2}
    assert batch["attention_mask"].shape != batch["audio_attention_mask"].shape  # text and audio masks kept apart
    numpy_batch = processor(text="a red circle", images=_image(), return_tensors="np")
    assert isinstance(numpy_batch["pixel_values"], np.ndarray) and numpy_batch["input_ids"].dtype == np.int64


def test_save_and_reload_give_identical_outputs(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "processor_config.json").read_text())["processor_class"] == "Data2VecMultimodalProcessor"
    loaded = Data2VecMultimodalProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded.image_processor, Data2VecMultimodalImageProcessor)
    assert loaded.tokenizer.model_max_length == 24 and loaded.feature_extractor.sampling_rate == 16_000
    inputs = {"text": ["a red circle", "zebra on the left"], "images": [_image(), _image((0, 255, 0), (30, 18))],
              "audio": _clips(900, 1300), "sampling_rate": 16_000}
    before, after = processor(**inputs), loaded(**inputs)
    assert set(before) == set(after)
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_a_folder_without_the_tokenizer_is_refused(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(OSError, match="tokenizer.json"):
        Data2VecMultimodalProcessor.from_pretrained(tmp_path)


def test_tokenizer_training_refuses_what_it_cannot_use():
    with pytest.raises(ValueError, match="at least 261"):
        train_byte_level_bpe(CAPTIONS, vocab_size=100)
    with pytest.raises(ValueError, match="No text"):
        train_byte_level_bpe(["", "  "])


BAD_INPUTS = {
    # name: (call keywords, error message pattern)
    "wrong sampling rate": (dict(audio=_clips(1000), sampling_rate=44_100), "sampled at 44100 Hz; this processor reads 16000"),
    "stereo clip in a list": (dict(audio=[np.zeros((2, 1000), np.float32) + _clips(1000)[0]], sampling_rate=16_000),
                              r"shape \(2, 1000\).*mono"),
    "one 2-D array": (dict(audio=np.stack(_clips(1000, 1000)), sampling_rate=16_000), "stereo clip or a batch"),
    "empty clip": (dict(audio=[np.zeros(0, np.float32)], sampling_rate=16_000), "clip 0 is empty"),
    "silent clip": (dict(audio=_clips(500) + [np.zeros(800, np.float32)], sampling_rate=16_000), "clip 1 is silent"),
    "constant clip": (dict(audio=[np.full(800, 0.3, np.float32)], sampling_rate=16_000), "silent"),
    "NaN in a clip": (dict(audio=[np.where(np.arange(800) == 5, np.nan, _clips(800)[0])], sampling_rate=16_000), "NaN"),
    "infinity in a clip": (dict(audio=[np.where(np.arange(800) == 5, np.inf, _clips(800)[0])], sampling_rate=16_000), "infinite"),
    "uint8 audio": (dict(audio=np.arange(800, dtype=np.uint8), sampling_rate=16_000), "uint8 integers, whose scale is unknown"),
    "Python int list": (dict(audio=[0, 5, -3, 7], sampling_rate=16_000), "int64 integers"),
    "boolean audio": (dict(audio=np.arange(800) % 2 == 0, sampling_rate=16_000), "dtype bool"),
    "batch mixing arrays and number lists": (dict(audio=[_clips(800)[0], [0.1, -0.2, 0.3]], sampling_rate=16_000), "mixes"),
    "dict clip at another rate": (dict(audio={"array": _clips(800)[0], "sampling_rate": 8000}), "8000 Hz"),
    "dict clips at two rates": (dict(audio=[{"array": _clips(800)[0], "sampling_rate": r} for r in (16_000, 8000)]),
                                "different rates"),
    "dict clip without its rate": (dict(audio={"array": _clips(800)[0]}), "needs 'array' and 'sampling_rate'"),
    "batch mixing dicts and arrays": (dict(audio=[{"array": _clips(800)[0], "sampling_rate": 16_000}, _clips(800)[0]],
                                           sampling_rate=16_000), "mixes"),
    "text passed as audio": (dict(audio=["a red circle"], sampling_rate=16_000), "clip 0 is a str"),
    "empty audio list": (dict(audio=[], sampling_rate=16_000), "empty list"),
    "empty caption": (dict(text=["a red circle", ""]), r"`text`\[1\] is empty"),
    "blank caption": (dict(text="   "), r"`text`\[0\] is blank"),
    "image passed as text": (dict(text=[_image()]), r"`text`\[0\] is a Image.*images="),
    "empty text list": (dict(text=[]), "empty list"),
    "over-long caption without truncation": (dict(text="a small red circle on the left " * 6, truncation=False),
                                             "at most 24 fit"),
    "16-bit image": (dict(images=PIL.Image.new("I;16", (8, 8))), "PIL mode 'I;16'"),
    "float image outside [0, 1]": (dict(images=np.full((8, 8, 3), 2.0, np.float32)), r"must lie in \[0, 1\]"),
    "integer image outside 0-255": (dict(images=np.full((8, 8, 3), 300, np.int32)), "outside 0-255"),
    "caption passed as image": (dict(images=["a red circle"]), "Image 0 is a str"),
    "text and images of different batch sizes": (dict(text=["a", "b"], images=[_image()]), "2 captions, 1 images"),
    "images and audio of different batch sizes": (dict(images=[_image()] * 3, audio=_clips(800, 900), sampling_rate=16_000),
                                                  "3 images, 2 audio clips"),
    "nothing": (dict(), "Nothing to process"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_raise_a_clear_error(processor, case):
    kwargs, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        processor(**kwargs)


def test_an_unknown_keyword_is_refused_not_ignored(processor):
    with pytest.raises(TypeError, match="audio_sampling_rate"):
        processor(audio=_clips(800), audio_sampling_rate=8000)


def test_missing_sampling_rate_assumes_16khz_with_a_warning(processor):
    with pytest.warns(UserWarning, match="assuming 16000 Hz"):
        batch = processor(audio=_clips(800))
    assert batch["input_values"].shape == (1, 800)
