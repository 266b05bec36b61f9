"""Reading a number said digit by digit ("four, oh, seven, two, nine, one"), for digit fields.

Whisper tiny.en transcribes a string of spoken digits badly ("457 to die in one"): it writes
language, and a run of isolated digits is not much of a sentence. Asked a narrower question,
"which digit is this?", the same model is far better. So a digit field is read in two views
and the two are combined:

1. Each digit on its own. `word_spans` finds the voiced stretches; each is cut out,
   normalised and heard alone, and the model's next-token distribution over the digit tokens
   ("7", " 7", " seven", " Seven", ...) is read directly, with no free decoding. Each stretch is
   heard in a few renderings (as is, 10% slower, with a longer lead-in) and after a few priming
   "previous texts" (digit lists), each view's prior over digits (what it says of plain noise)
   is subtracted, and the log-probabilities are averaged: an ensemble over views of the same
   audio, with no training and nothing specific to a speaker.
2. The whole utterance, after the spelt-out digit primer, one digit token per stretch: this
   view hears the context and coarticulation the isolated cuts lose.

A beam search over positions adds the two views' log-probabilities (the isolated view
weighted by ISOLATED_WEIGHT). On the bench (bench/voice.py digits) this moves 6-digit numbers
from about 75% to 95-98% exactly right.

When the number of voiced stretches is not a length the field allows, the utterance is not a
number read digit by digit ("it's on my card, hold on"), `read` returns None and the caller
uses the ordinary transcription.

The first view is most of the cost (three encodes per stretch), and a stretch's views depend
on its samples alone: they are kept by the stretch's content (`StretchViews`), so views worked
out while the caller is still speaking (channels/voice/digit_stream.py) are the very numbers a
reading at the end would compute.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from channels.voice.digits import DIGIT_WORDS as WORD_VALUES
from channels.voice.digits import REPEATS, SOUND_ALIKES
from channels.voice.whisper_model import SAMPLE_RATE, Whisper
from channels.voice.word_spans import word_spans

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# "Previous text" that tells the decoder digits are coming, without favouring any one digit:
# each lists every digit, in different orders and spellings.
PRIMERS = (
    " 4 0 7 2 9 1 3 5 6 8",
    " zero, one, two, three, four, five, six, seven, eight, nine.",
    " 3 1 9 0 4 7 2 8 5 6 6 5 8 2 7 4 0 9 1 3",
)
ISOLATED_WEIGHT = 3.0  # bench/voice.py digits: 2 and 4 each lose about a point against 3
BEAM = 5
WHOLE_PRIMER = 1  # the digits spelt out: a point better than no primer on the bench, never worse
CONTEXT_SECONDS = 10  # what the encoder is given per piece; shorter contexts lose accuracy
SOT_PREV = "<|startofprev|>"


# A stretch's views ([rendering, primer, digit] log-probabilities), by `stretch_key` of its samples.
StretchViews = dict[bytes, np.ndarray]


def stretch_key(samples: np.ndarray) -> bytes:
    """What a stretch's views are kept under: a digest of its samples, so the same sound cut
    from a longer or shorter recording finds them (views depend on the samples alone)."""
    return hashlib.blake2b(np.ascontiguousarray(samples, dtype=np.float32).tobytes(), digest_size=16).digest()


def stretches(audio: np.ndarray) -> list[tuple[int, int]]:
    """The voiced stretches the reader takes one digit each from (the whole audio when it is too
    short to measure)."""
    return word_spans(audio) or [(0, len(audio))]


def accepted(count: int, lengths: tuple[int, int], heard: str | None) -> bool:
    """Whether `count` stretches can be read as the digit field's number: a count the field
    allows, and, given the ordinary transcription `heard`, one digit per stretch."""
    return lengths[0] <= count <= lengths[1] and (heard is None or one_digit_per_stretch(heard, count))


@dataclass(frozen=True)
class DigitReading:
    digits: str
    confidence: float  # probability of the least certain digit, 0..1


def tally(text: str) -> tuple[int, int]:
    """(digits, other words) in a transcription: numerals count a digit per character, digit
    words and sound-alikes one each ("457 to die in one": 5 digits, 2 other words)."""
    digits = others = 0
    for word in re.findall(r"\d+|[A-Za-z']+", text.lower()):
        if word.isdigit():
            digits += len(word)
        elif word in WORD_VALUES or word in SOUND_ALIKES:
            digits += 1
        elif word in REPEATS:
            digits += REPEATS[word] - 1  # "double five": the five counts itself
        else:
            others += 1
    return digits, others


def digits_heard(text: str) -> int:
    """How many digits a transcription seems to hold when it is mostly spoken digits, or 0
    when it is mostly other words ("hold on, let me look"; "it is my card number 1234" has 4
    digits against 5 words)."""
    digits, others = tally(text)
    return digits if digits >= others else 0


def one_digit_per_stretch(text: str, stretches: int) -> bool:
    """Whether `stretches` voiced stretches can be the digits of a transcription that is mostly
    digits. The transcription's own count is no guide on its own: tiny.en repeats a run of
    digits ("7 0 2 8 3 7 0 2 8 3" for six) and drops some ("2 2 0 2" for 722022). But fewer
    than half as many stretches as digits is a number said without pauses, and several other
    words with a count that disagrees is a sentence around a number ("my account number is
    4 5 7 1 9 0"): its words would be read as digits."""
    digits, others = tally(text)
    if digits < others or 2 * stretches < min(digits, 12):
        return False  # mostly words, or digits said without pauses ("four five seven" in one breath)
    return others <= 1 or abs(stretches - digits) <= 1


def _pad_seconds(audio: np.ndarray, lead: float, tail: float = 0.3, peak: float = 0.5) -> np.ndarray:
    audio = audio / (np.abs(audio).max() + 1e-9) * peak
    return np.concatenate([np.zeros(int(lead * SAMPLE_RATE), np.float32), audio.astype(np.float32),
                           np.zeros(int(tail * SAMPLE_RATE), np.float32)])


def _slower(audio: np.ndarray, factor: float) -> np.ndarray:
    n = int(len(audio) * factor)
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(np.float32)


RENDERINGS = (
    lambda a: _pad_seconds(a, 0.4),
    lambda a: _pad_seconds(_slower(a, 1 / 0.9), 0.4),
    lambda a: _pad_seconds(a, 1.0),
)


def _log_softmax(values: np.ndarray) -> np.ndarray:
    return values - np.logaddexp.reduce(values, axis=-1, keepdims=True)


class DigitReader:
    """Shares the recogniser's model; `read` is blocking (run it in a thread)."""

    def __init__(self, whisper: Whisper):
        self._shared = whisper
        self._whisper = whisper.model.model
        tokenizer = whisper.tokenizer
        self._prompt = whisper.prompt
        # Every single-token spelling of each digit; the model's belief in a digit is the sum.
        forms: list[list[int]] = []
        for d, word in enumerate(DIGIT_WORDS):
            spellings = {f" {d}", f"{d}", f" {word}", word, f" {word.capitalize()}", word.capitalize()}
            if d == 0:
                spellings |= {" oh", " Oh"}
            ids = {t[0] for t in (tokenizer.encode(s) for s in spellings) if len(t) == 1}
            forms.append(sorted(ids))
        self._forms = forms
        self._numeral = [tokenizer.encode(f" {d}")[0] for d in range(10)]
        allowed = {t for ids in forms for t in ids}
        vocabulary = whisper.model.hf_tokenizer.get_vocab_size()
        self._suppress = [t for t in range(vocabulary) if t not in allowed]
        sot_prev = tokenizer.tokenizer.token_to_id(SOT_PREV)
        self._primers = [[sot_prev, *tokenizer.encode(text)] for text in PRIMERS]
        self._bias = self._content_free()

    def _content_free(self) -> np.ndarray:
        """What the model says of a stretch with no digit in it (seeded white noise), per
        rendering and primer: its prior over digits, which each real stretch's reading has
        subtracted ("contextual calibration", Zhao et al. 2021). Given nothing, tiny.en says
        1, 2 or 5; uncorrected, that bias is most of the isolated view's misreadings."""
        noise = np.random.default_rng(0).normal(0, 0.05, SAMPLE_RATE // 2).astype(np.float32)
        return self._views(noise, [(0, len(noise))])[0]

    def read(self, audio: np.ndarray, lengths: tuple[int, int] = (1, 20), heard: str | None = None,
             known: StretchViews | None = None) -> DigitReading | None:
        """The digits said in `audio` (16 kHz float), one per voiced stretch; None when that is
        not a count within `lengths`, or when the ordinary transcription `heard` says the
        stretches are not one digit each (`one_digit_per_stretch`). Stretch views already in
        `known` are not computed again; the ones computed are added to it."""
        spans = stretches(audio)
        if not accepted(len(spans), lengths, heard):
            return None
        return self.reading(audio, spans, known)

    def stretch_views(self, samples: np.ndarray) -> np.ndarray:
        """One stretch heard alone: [rendering, primer, digit] log-probabilities (uncalibrated)."""
        return self._views(samples, [(0, len(samples))])[0]

    def reading(self, audio: np.ndarray, spans: list[tuple[int, int]], known: StretchViews | None = None) -> DigitReading:
        """The beam over both views, one digit per span of `audio`."""
        known = {} if known is None else known
        isolated = []
        for s, e in spans:
            key = stretch_key(audio[s:e])
            if key not in known:
                known[key] = self.stretch_views(audio[s:e])
            isolated.append(self._calibrated(known[key]))
        whole = self._encode([self._features(audio)])
        beams: list[tuple[str, float, float]] = [("", 0.0, 1.0)]  # digits, score, least certain digit
        for position in range(len(spans)):
            prefixes = [b[0] for b in beams]
            whole_lp = self._next_digit(whole, prefixes)
            extended = []
            for (digits, score, least), lp in zip(beams, whole_lp):
                combined = lp + ISOLATED_WEIGHT * isolated[position]
                probability = np.exp(_log_softmax(combined))
                extended += [(digits + str(d), score + combined[d], min(least, float(probability[d]))) for d in range(10)]
            extended.sort(key=lambda b: -b[1])
            beams = extended[:BEAM]
        digits, _, least = beams[0]
        return DigitReading(digits, round(least, 3))

    def _features(self, audio: np.ndarray) -> np.ndarray:
        return self._shared.features(audio, CONTEXT_SECONDS)

    def _encode(self, features: list[np.ndarray]) -> np.ndarray:
        from faster_whisper.transcribe import get_ctranslate2_storage

        width = max(f.shape[1] for f in features)
        batch = np.stack([np.pad(f, ((0, 0), (0, width - f.shape[1]))) for f in features])
        return np.array(self._whisper.encode(get_ctranslate2_storage(batch), to_cpu=True))

    def _digit_log_probs(self, logits: object) -> np.ndarray:
        lp = _log_softmax(np.array(logits, dtype=np.float64))
        return _log_softmax(np.array([np.logaddexp.reduce(lp[ids]) for ids in self._forms]))

    def _logits(self, encoded: np.ndarray, prompts: list[list[int]], position: int, previous: int) -> list[np.ndarray]:
        """Digit log-probabilities of the token after each prompt (`position` tokens after the
        start of transcript, `previous` tokens of previous text before it)."""
        from faster_whisper.transcribe import get_ctranslate2_storage

        results = self._whisper.generate(
            get_ctranslate2_storage(np.ascontiguousarray(encoded)), prompts, beam_size=1,
            # Just long enough for CTranslate2 to return the logits of that one next token.
            max_length=max(2 * (position + 1), previous + position + 2),
            return_logits_vocab=True, suppress_blank=False, suppress_tokens=self._suppress)
        return [self._digit_log_probs(r.logits[0][position]) for r in results]

    def _views(self, audio: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
        """Digit log-probabilities of each stretch heard alone: [stretch, rendering, primer, digit]."""
        pieces = [self._features(render(audio[s:e])) for s, e in spans for render in RENDERINGS]
        encoded = self._encode(pieces)
        out = np.zeros((len(spans), len(RENDERINGS), len(self._primers), 10))
        for j, primer in enumerate(self._primers):
            for i, lp in enumerate(self._logits(encoded, [primer + self._prompt] * len(pieces), 0, len(primer))):
                out[i // len(RENDERINGS), i % len(RENDERINGS), j] = lp
        return out

    def _calibrated(self, views: np.ndarray) -> np.ndarray:
        """A stretch's digit log-probabilities: its views less their prior, averaged over
        renderings and primers."""
        return _log_softmax((views - self._bias).mean(axis=(0, 1)))

    def _next_digit(self, whole: np.ndarray, prefixes: list[str]) -> list[np.ndarray]:
        encoded = np.repeat(whole, len(prefixes), axis=0)
        primer = self._primers[WHOLE_PRIMER]
        prompts = [primer + self._prompt + [self._numeral[int(c)] for c in p] for p in prefixes]
        return self._logits(encoded, prompts, len(prefixes[0]), len(primer))
