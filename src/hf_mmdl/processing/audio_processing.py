"""Input rules for raw audio, shared by the package's audio processors (as `image_processing` is for images).

- A clip is a 1-D waveform: a numpy array, a torch tensor or a list of numbers. A batch is a list of clips; a
  single 2-D array or tensor is refused rather than guessed at (it could be a stereo clip or a batch): pass a list
  of 1-D clips, and average a stereo clip's channels yourself (`clip.mean(axis=0)`).
- Floats: any finite values (the feature extractor normalises each clip to zero mean and unit variance); NaN or
  infinity is refused.
- Integers: int16 and int32 PCM are scaled explicitly by their full scale (2**15, 2**31) to [-1, 1]; other integer
  dtypes (uint8, int8, int64, e.g. a list of Python ints) and booleans are refused: their scale is not known.
- Empty clips are refused; so are silent ones (all samples equal: zero variance cannot be normalised).
- A clip may also be a `{"array": ..., "sampling_rate": ...}` dict (what `datasets.Audio` decodes to); its rate
  is checked like the `sampling_rate` argument, which must then agree with it.
- `sampling_rate` must equal the processor's. Without one (and without dicts), the processor's rate is assumed with
  a warning, as transformers' feature extractors do.
- A batch holds one kind of clip: arrays/tensors, number lists or dicts; mixing them (or mixing numbers with clips)
  is refused, and so are strings, images and other objects where a clip should be.

Each refusal is a `ValueError` naming the clip and saying what to pass.
"""

import numbers
import warnings

import numpy as np

PCM_FULL_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


def _kind(item) -> str:
    if isinstance(item, np.ndarray) or hasattr(item, "detach"):
        return "array"
    if isinstance(item, (list, tuple)):
        return "list"
    if isinstance(item, numbers.Number):
        return "number"
    if isinstance(item, dict):
        return "dict"
    return type(item).__name__


def _as_clip(item, index: int) -> np.ndarray:
    if hasattr(item, "detach"):  # a torch tensor; numpy has no bfloat16
        item = item.detach().cpu()
        item = (item.float() if item.is_floating_point() else item).numpy()
    if isinstance(item, (list, tuple)):
        kinds = {_kind(value) for value in item}
        if kinds - {"number"}:
            raise ValueError(f"Audio clip {index} is a list holding {sorted(kinds)}; a clip is a 1-D list or array of "
                             "numbers (pass a batch as a list of clips).")
    clip = np.asarray(item)
    if clip.ndim != 1:
        raise ValueError(f"Audio clip {index} has shape {clip.shape}; each clip must be one mono channel of shape "
                         "(samples,). Average a stereo clip's channels (`clip.mean(axis=0)` for (channels, samples)) "
                         "and pass a batch as a list of 1-D clips.")
    if clip.size == 0:
        raise ValueError(f"Audio clip {index} is empty; every clip needs samples.")
    if clip.dtype == bool or not np.issubdtype(clip.dtype, np.number) or np.iscomplexobj(clip):
        raise ValueError(f"Audio clip {index} has dtype {clip.dtype}; pass float waveforms (or int16/int32 PCM).")
    if np.issubdtype(clip.dtype, np.integer):
        if clip.dtype not in PCM_FULL_SCALE:
            raise ValueError(f"Audio clip {index} holds {clip.dtype} integers, whose scale is unknown; pass float "
                             "waveforms, or int16/int32 PCM (scaled by 2**15 / 2**31).")
        clip = clip / PCM_FULL_SCALE[clip.dtype]
    clip = clip.astype(np.float32)
    if not np.isfinite(clip).all():
        raise ValueError(f"Audio clip {index} contains NaN or infinite samples.")
    if clip.max() == clip.min():
        raise ValueError(f"Audio clip {index} is silent (all {clip.size} samples equal {clip[0]:g}); a constant clip "
                         "cannot be normalised to unit variance. Leave it out or pass a clip with sound.")
    return clip


def validate_audio(audio, sampling_rate: int | None, expected_rate: int) -> list[np.ndarray]:
    """Check one clip or a list of clips against the rules above; return them as float32 1-D arrays. Raises a
    `ValueError` naming the first clip that breaks a rule, or a `sampling_rate` other than `expected_rate`; warns
    (UserWarning) and assumes `expected_rate` when `sampling_rate` is None."""
    if isinstance(audio, dict) or (isinstance(audio, (list, tuple)) and audio and all(isinstance(item, dict) for item in audio)):
        audio, sampling_rate = _unpack_dicts([audio] if isinstance(audio, dict) else audio, sampling_rate)
    if sampling_rate is None:
        warnings.warn(f"No sampling_rate given: assuming {expected_rate} Hz. Pass sampling_rate= to have it checked.",
                      UserWarning, stacklevel=3)
    elif sampling_rate != expected_rate:
        raise ValueError(f"Audio sampled at {sampling_rate} Hz; this processor reads {expected_rate} Hz. Resample it "
                         f"first (e.g. `hf_mmdl.data.speech.resample(clip, {sampling_rate}, {expected_rate})`).")
    if isinstance(audio, str) or audio is None:
        raise ValueError(f"`audio` is a {type(audio).__name__}; pass a 1-D waveform or a list of them.")
    if _kind(audio) == "array":
        if getattr(audio, "ndim", 1) != 1:
            raise ValueError(f"`audio` is one array of shape {tuple(audio.shape)}; pass one mono clip as a 1-D array or "
                             "a batch as a list of 1-D clips (a 2-D array could be a stereo clip or a batch; average "
                             "a stereo clip's channels with `clip.mean(axis=0)`).")
        clips = [audio]
    elif isinstance(audio, (list, tuple)):
        kinds = [_kind(item) for item in audio]
        if not kinds:
            raise ValueError("`audio` is an empty list; pass at least one clip.")
        clips = [audio] if set(kinds) == {"number"} else list(audio)
        if set(kinds) != {"number"}:
            unknown = sorted(set(kinds) - {"array", "list", "number", "dict"})
            if unknown:
                index = next(i for i, kind in enumerate(kinds) if kind in unknown)
                raise ValueError(f"Audio clip {index} is a {kinds[index]}; pass waveforms (arrays, tensors or lists of "
                                 "numbers), images through `images=` and text through `text=`.")
            if len(set(kinds)) > 1:
                raise ValueError(f"The audio batch mixes {sorted(set(kinds))}: pass a list of clips of one kind (all "
                                 "arrays/tensors, or all lists of numbers), or one clip as a list of numbers.")
    else:
        raise ValueError(f"`audio` is a {type(audio).__name__}; pass a 1-D waveform or a list of them.")
    return [_as_clip(clip, index) for index, clip in enumerate(clips)]


def _unpack_dicts(items: list[dict], sampling_rate: int | None) -> tuple[list, int]:
    """`{"array", "sampling_rate"}` clips → their arrays and their one rate (which `sampling_rate`, if given, must
    equal)."""
    for index, item in enumerate(items):
        if "array" not in item or "sampling_rate" not in item:
            raise ValueError(f"Audio clip {index} is a dict with keys {sorted(item)}; a dict clip needs 'array' and "
                             "'sampling_rate' (what datasets' Audio feature decodes to).")
    rates = sorted({item["sampling_rate"] for item in items})
    if len(rates) > 1:
        raise ValueError(f"The audio clips are sampled at different rates {rates}; resample them to one rate first.")
    if sampling_rate is not None and sampling_rate != rates[0]:
        raise ValueError(f"sampling_rate={sampling_rate} but the clips' dicts say {rates[0]} Hz; pass one rate.")
    return [item["array"] for item in items], rates[0]
