"""Audio as the voice channel handles it: 16-bit PCM in numpy, G.711 mu-law at 8 kHz on the
telephone side (what Twilio Media Streams carry), 16 kHz float for the recogniser."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

TELEPHONE_RATE = 8000
RECOGNISER_RATE = 16000

_BIAS = 0x84


class AudioError(ValueError):
    """The file is not audio this channel can read; the message says why."""


def read_wav(path: Path | BinaryIO) -> tuple[np.ndarray, int]:
    """Mono 16-bit samples and the sample rate of a PCM WAV file (stereo is mixed down)."""
    try:
        with wave.open(str(path) if isinstance(path, (str, Path)) else path, "rb") as wav:
            channels, width, rate, frames = wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()
            raw = wav.readframes(frames)
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{_name(path)}: not a PCM WAV file ({exc})") from None
    if width != 2:
        raise AudioError(f"{_name(path)}: {8 * width}-bit samples; 16-bit PCM WAV is needed (sox in.wav -b 16 out.wav)")
    samples = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if samples.size == 0:
        raise AudioError(f"{_name(path)}: no audio in the file")
    return samples, rate


def _name(source: Path | BinaryIO) -> str:
    return str(source) if isinstance(source, (str, Path)) else "audio"


def resample(samples: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """Linear-interpolation resampling; enough for speech between 8 and 48 kHz, where the
    recogniser's own filter bank discards what interpolation blurs."""
    if rate == to_rate:
        return samples
    duration = samples.size / rate
    target = np.arange(int(round(duration * to_rate))) / to_rate
    source = np.arange(samples.size) / rate
    out = np.interp(target, source, samples.astype(np.float64))
    return out.astype(samples.dtype) if samples.dtype != np.float64 else out


_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def ulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 mu-law, as telephone networks and Twilio Media Streams carry it (bit-exact with
    the reference g711.c that CPython's audioop and pipecat use)."""
    pcm = samples.astype(np.int32) >> 2  # the 14-bit form of the reference code
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), 8159) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, pcm)  # first segment whose end is >= pcm
    code = np.where(segment > 7, 0x7F, (segment << 4) | ((pcm >> (segment + 1)) & 0x0F))  # loudest code at the clip
    return ((code ^ mask) & 0xFF).astype(np.uint8).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    code = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    sign, exponent, mantissa = code & 0x80, (code >> 4) & 0x07, code & 0x0F
    magnitude = ((mantissa << 3) + _BIAS) << exponent
    return np.where(sign != 0, _BIAS - magnitude, magnitude - _BIAS).astype(np.int16)


def telephone(samples: np.ndarray, rate: int) -> np.ndarray:
    """What a caller's audio sounds like after the phone network: 8 kHz mu-law and back."""
    return ulaw_decode(ulaw_encode(resample(samples, rate, TELEPHONE_RATE)))


def for_recogniser(samples: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz float32 in [-1, 1], what Whisper takes."""
    return (resample(samples, rate, RECOGNISER_RATE).astype(np.float32) / 32768.0).astype(np.float32)
