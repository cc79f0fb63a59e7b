"""Spoken captions synthesised offline with espeak-ng, through the `espeakng-loader` wheel (libespeak-ng and its
voice data, GPL-3+; `pip install espeakng-loader`, in the `data` extra). Nothing is downloaded or written to disk.

espeak-ng speaks at 22,050 Hz in int16; `synthesize_speech` trims the leading and trailing silence, scales to
float32 in [-1, 1] and resamples to 16 kHz (`SAMPLING_RATE`, what wav2vec2-style audio encoders read) with a
polyphase filter (scipy's `resample_poly`, 320/441). Clips are cached in this process only.
"""

import ctypes
import threading
from functools import lru_cache

import numpy as np

SAMPLING_RATE = 16_000
ESPEAK_SAMPLING_RATE = 22_050
# English voices (accent + variant) that the bundled espeak-ng data holds; examples draw one each. Not the variants
# with breath noise (+f2, +f3): espeak draws it from an unseeded generator, so their clips differ between processes.
VOICES = ("en-us", "en-us+m3", "en-us+f1", "en-us+f4", "en", "en-us+m7")
RATE_RANGE = (150, 210)  # words per minute (espeak's default is 175)
PITCH_RANGE = (30, 70)  # espeak's 0-100 scale (default 50)
_SILENCE = 0.01  # of full scale: quieter leading/trailing samples are trimmed
_MARGIN = 0.04  # seconds of silence kept at each end
# espeak_SetParameter ids, espeak_Synth flags and espeak_Initialize's synchronous output mode (speak_lib.h).
_RATE, _PITCH = 1, 3
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1


class _Espeak:
    """The process's one libespeak-ng (its state is global): voice, rate and pitch are set before each clip under a
    lock, and the synth callback collects the clip's int16 samples."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as error:
            raise ImportError(
                "Spoken captions need espeak-ng through the `espeakng-loader` wheel: pip install espeakng-loader "
                "(or the package's `data` extra)."
            ) from error
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate != ESPEAK_SAMPLING_RATE:
            raise RuntimeError(f"libespeak-ng started at {rate} Hz; expected {ESPEAK_SAMPLING_RATE} Hz (error code if negative).")
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._chunks: list[np.ndarray] = []
        # Kept on the instance: ctypes would free a callback that nothing references while espeak still calls it.
        self._callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)(self._collect)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0 = continue synthesis

    def speak(self, text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
        encoded = text.encode("utf-8")
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}; use one of {VOICES}.")
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks = []
            status = self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if status != 0 or not chunks:
            raise RuntimeError(f"espeak-ng could not speak {text!r} (status {status}).")
        return np.concatenate(chunks)


@lru_cache(maxsize=1)
def _espeak() -> _Espeak:
    return _Espeak()


def _trim_silence(samples: np.ndarray, sampling_rate: int) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > _SILENCE * np.abs(samples).max())
    margin = round(_MARGIN * sampling_rate)
    return samples[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def resample(samples: np.ndarray, from_rate: int, to_rate: int = SAMPLING_RATE) -> np.ndarray:
    """`samples` (1-D float) from `from_rate` to `to_rate` Hz with a polyphase low-pass filter, as float32."""
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    divisor = np.gcd(int(from_rate), int(to_rate))
    up, down = to_rate // divisor, from_rate // divisor
    return resample_poly(np.asarray(samples, dtype=np.float64), up, down, window=_lowpass(up, down)).astype(np.float32)


@lru_cache(maxsize=8)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing filter `resample_poly` designs for (up, down) by default (Kaiser, beta 5), designed once:
    it took half of each clip's resampling time."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1 / max_rate, window=("kaiser", 5.0))


@lru_cache(maxsize=4096)
def _cached_speech(text: str, voice: str, rate: int, pitch: int) -> np.ndarray:
    samples = _espeak().speak(text, voice, rate, pitch).astype(np.float32) / 32768.0
    clip = resample(_trim_silence(samples, ESPEAK_SAMPLING_RATE), ESPEAK_SAMPLING_RATE, SAMPLING_RATE)
    clip.setflags(write=False)  # shared by every caller of the cache
    return clip


def synthesize_speech(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50) -> np.ndarray:
    """`text` spoken by espeak-ng: a read-only float32 waveform in [-1, 1] at 16 kHz (`SAMPLING_RATE`), leading and
    trailing silence trimmed to 40 ms. `voice` is one of `VOICES` (or any espeak-ng voice name), `rate` in words per
    minute, `pitch` on espeak's 0-100 scale. Raises ImportError without `espeakng-loader`, ValueError for empty text
    or an unknown voice."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"Cannot speak {text!r}: pass a non-empty string.")
    return _cached_speech(text, voice, int(rate), int(pitch))


def random_voice(rng) -> dict:
    """Voice, rate and pitch drawn with `rng` (a `random.Random`): the spoken variation between examples."""
    return {"voice": rng.choice(VOICES), "rate": rng.randint(*RATE_RANGE), "pitch": rng.randint(*PITCH_RANGE)}
