"""Decoding over a list of phrases: which of the expected answers the audio says, and how
well the model believes it.

The phrases (channels/voice/vocabulary.py) are tokenised into a prefix tree, and a beam search
walks the tree: at each step the decoder's next-token distribution (the audio encoded once,
the question as previous text) is read for every beam, and only tokens that continue some
phrase are kept. A phrase ends where the model would end the transcript (end of text, or
punctuation). The score of a phrase is its total log-probability, comparable with the score of
the free transcription of the same audio (`score`), so the recogniser can decide whether the
audio supports an expected phrase about as well as whatever the model would write freely.

Cost: one batched decoder pass per token of the longest phrase kept in the beam (names are
1-4 tokens), with no second encoder pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from channels.voice.whisper_model import SAMPLE_RATE, Whisper

BEAM = 4  # bench/voice_short.py: 6 is 2 points better on the tune half and 40 % slower (p95 555 against 439 ms)
MAX_STEPS = 10


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    phrase: str | None = None  # set where a phrase ends
    prior: float = 0.0  # the phrase's log-weight (a common name over a rare one)


@dataclass(frozen=True)
class Match:
    phrase: str
    logprob: float  # total, including the end of the transcript
    tokens: int
    rank: float = 0.0  # what the search ranked it by: with the token bonus and the prior


def _log_softmax(values: np.ndarray) -> np.ndarray:
    return values - np.logaddexp.reduce(values)


class PhraseDecoder:
    """Shares the recogniser's model; blocking (the recogniser runs it in a thread)."""

    def __init__(self, whisper: Whisper):
        self._whisper = whisper
        self._model = whisper.model.model
        tokenizer = whisper.tokenizer
        self._eot = tokenizer.eot
        # Where a transcript may end after a phrase: end of text, or the punctuation before it.
        self._ends = [self._eot] + [t[0] for t in (tokenizer.encode(p) for p in (".", "!", "?", ",")) if len(t) == 1]
        self.tree = functools.lru_cache(maxsize=16)(self._tree)

    def _tree(self, phrases: tuple[str, ...], priors: tuple[float, ...] | None = None) -> _Node:
        root = _Node()
        for n, phrase in enumerate(phrases):
            node = root
            for token in self._whisper.tokenizer.encode(" " + phrase):
                node = node.children.setdefault(token, _Node())
            if node.phrase is None:
                node.phrase, node.prior = phrase, priors[n] if priors else 0.0
        return root

    def _next(self, encoded: np.ndarray, previous: list[int], sequences: list[list[int]]) -> list[np.ndarray]:
        """Log-probabilities of the token after each sequence (all the same length)."""
        return [steps[-1] for steps in self._steps(encoded, previous, sequences)]

    def _steps(self, encoded: np.ndarray, previous: list[int], sequences: list[list[int]]) -> list[list[np.ndarray]]:
        """Per sequence (all the same length), the log-probabilities of each of its tokens' positions
        and of the position after it."""
        from faster_whisper.transcribe import get_ctranslate2_storage

        position = len(sequences[0])
        batch = np.repeat(encoded, len(sequences), axis=0) if len(encoded) == 1 else encoded
        results = self._model.generate(
            get_ctranslate2_storage(np.ascontiguousarray(batch)),
            [previous + self._whisper.prompt + s for s in sequences], beam_size=1,
            # Just long enough for CTranslate2 to return the logits after the forced tokens.
            max_length=max(2 * (position + 1), len(previous) + position + 2),
            return_logits_vocab=True, suppress_blank=False, suppress_tokens=[])
        return [[_log_softmax(np.asarray(r.logits[0][i], dtype=np.float64)) for i in range(position + 1)]
                for r in results]

    def best(self, encoded: np.ndarray, previous: list[int], phrases: tuple[str, ...],
             priors: tuple[float, ...] | None = None, token_bonus: float = 0.0) -> Match | None:
        found = self.candidates(encoded, previous, phrases, priors, token_bonus)
        return found[0] if found else None

    def candidates(self, encoded: np.ndarray, previous: list[int], phrases: tuple[str, ...],
                   priors: tuple[float, ...] | None = None, token_bonus: float = 0.0) -> list[Match]:
        """The expected phrase the audio (`encoded`, one item) most likely says, or None;
        `candidates` gives every phrase the search ended, best first.
        `token_bonus` per token offsets the decoder's preference for short phrases ("1" over
        "quarter past one"); `priors` (log-weights, one per phrase) favour common phrases."""
        beams: list[tuple[list[int], _Node, float]] = [([], self.tree(phrases, priors), 0.0)]
        hope = token_bonus + (max(priors) if priors else 0.0)  # the most a beam may gain in one step
        finished: list[Match] = []
        for _ in range(MAX_STEPS):
            if not beams:
                break
            extended: list[tuple[list[int], _Node, float]] = []
            for (tokens, node, score), lp in zip(beams, self._next(encoded, previous, [b[0] for b in beams])):
                if node.phrase is not None and tokens:
                    end = float(np.logaddexp.reduce(lp[self._ends]))
                    finished.append(Match(node.phrase, score + end, len(tokens) + 1, score + end + node.prior))
                extended += [(tokens + [t], child, score + float(lp[t]) + token_bonus) for t, child in node.children.items()]
            extended.sort(key=lambda b: -b[2])
            beams = extended[:BEAM]
            if finished and beams and max(f.rank for f in finished) >= beams[0][2] + hope:
                break  # no beam is likely to end better than what has ended
        # The bonus steered the search; the score reported is the model's own.
        return [Match(f.phrase, f.logprob - token_bonus * (f.tokens - 1), f.tokens, f.rank)
                for f in sorted(finished, key=lambda f: -f.rank)]

    def lift(self, encoded: np.ndarray, previous: list[int], tokens: list[int], context_seconds: float) -> float:
        """How much likelier a transcript is given the audio (`encoded`, one item) than given
        no speech at all: the least of its log-probability ratios against digital silence and
        hiss at several levels. Whisper writes "Okay." or "Thank you." for silence, more so after a
        question; such a transcript is about as likely without the audio, so its lift is near
        zero. One decoder pass (the audio and both references in one batch)."""
        batch = np.concatenate([encoded, self._content_free(context_seconds)])
        totals = [sum(float(lps[i][t]) for i, t in enumerate(tokens)) + float(lps[-1][self._eot])
                  for lps in self._steps(batch, previous, [tokens] * len(batch))]
        return totals[0] - max(totals[1:])

    @functools.lru_cache(maxsize=4)  # noqa: B019 (one decoder per process)
    def _content_free(self, context_seconds: float) -> np.ndarray:
        from faster_whisper.transcribe import get_ctranslate2_storage

        # Digital silence, and a second of hiss at several levels (a line's hiss varies; the
        # transcript must beat the likeliest of them), each with pipecat's 0.5 s of padding.
        quiet = np.zeros(SAMPLE_RATE // 2, np.float32)
        references = [np.concatenate([np.random.default_rng(0).normal(0, level, SAMPLE_RATE).astype(np.float32), quiet])
                      for level in (0.0, 0.001, 0.003, 0.01, 0.03)]
        features = np.stack([self._whisper.features(a, context_seconds) for a in references])
        return np.asarray(self._model.encode(get_ctranslate2_storage(features), to_cpu=True))

    def score(self, encoded: np.ndarray, previous: list[int], tokens: list[int]) -> float:
        """Total log-probability of a transcript `tokens` (without end of text), ending included."""
        lps = self._steps(encoded, previous, [tokens])[0]
        return sum(float(lps[i][t]) for i, t in enumerate(tokens)) + float(lps[-1][self._eot])
