"""Which of a worker's tasks a message is about, from each task's example phrases; or none.

A message is embedded (extraction/embeddings.py) and compared with every example phrase of
every task (and the task's description, as one more phrase). A task's score is a soft maximum
of those cosine similarities: close to the best match, but a task with several close examples
beats one with a single lucky one. Phrases that are close to other tasks' phrases count a little
less (GENERIC_DISCOUNT). The best task wins if its score reaches the threshold;
below it the message is out of scope (`task=None`).

Synchronous and CPU-bound (about 1.5 ms a message on one core): the engine calls it in a
worker thread, never on the event loop. Measured in bench/routing.py; how to write examples:
docs/routing.md.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field, model_validator

from extraction.embeddings import SentenceEncoder, default_encoder

# Chosen by bench/routing.py on its tuning split (BANKING77 tasks against CLINC150's intents and
# out-of-scope queries: best mean of in-scope accuracy and rejection), then reported on its
# held-out split; see bench/RESULTS.md. It belongs to this model: another model, another number.
DEFAULT_THRESHOLD = 0.46
# Sharpness of the soft maximum over a task's phrases (1/temperature on cosine similarity):
# 10 was best of 1 (plain mean), 10, 20 and a hard maximum on the tuning split.
SHARPNESS = 10.0
# A phrase close to other tasks' phrases ("I have a problem with my card") says less about its own
# task: its similarities are lowered by GENERIC_DISCOUNT x (its mean similarity to its
# GENERIC_NEIGHBOURS nearest phrases of other tasks, minus the spec's average of that). Centred on
# the spec's average so the threshold keeps its meaning whatever the spec's size. 0.2 and 0.3 tied
# on the bench's tuning split (+0.5 point in-scope at the same rejection); 0.5 and more lost.
GENERIC_DISCOUNT = 0.3
GENERIC_NEIGHBOURS = 3
ALTERNATIVES = 3
_CACHE_SPECS = 64


class TaskExamples(BaseModel):
    """What routing needs of one task: its name, what it is for, and phrases that start it."""

    name: str = Field(min_length=1)
    description: str = ""
    examples: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_phrases(self) -> TaskExamples:
        if not self.phrases():
            raise ValueError(f"task {self.name!r} needs at least one example phrase or a description")
        return self

    def phrases(self) -> list[str]:
        """The texts a message is compared with: the examples, then the description."""
        texts = [e.strip() for e in self.examples if e.strip()]
        if self.description.strip():
            texts.append(self.description.strip())
        return texts


class Alternative(BaseModel):
    task: str
    score: float


class Routed(BaseModel):
    """The task a message starts (None: out of scope) and how sure routing is."""

    task: str | None
    confidence: float = Field(
        ge=0, le=1,
        description="The best task's similarity score (0..1), compared with the threshold; "
        "a similarity, not a calibrated probability.",
    )
    alternatives: list[Alternative] = Field(
        default_factory=list, description="The next best tasks, best first, with their scores."
    )


class _Index:
    """A spec's phrase vectors and which task each belongs to; immutable once built."""

    def __init__(self, encoder: SentenceEncoder, vectors: np.ndarray, owner: np.ndarray, names: list[str]) -> None:
        # The encoder is kept so a cache key's id() can never be reused by another encoder.
        self.encoder = encoder
        self.vectors = vectors
        self.owner = owner
        self.names = names
        self.discount = _generic_discount(vectors, owner)


def _generic_discount(vectors: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Per phrase, how much its similarities are lowered (see GENERIC_DISCOUNT); 0 with one task."""
    closeness = np.zeros(len(vectors), dtype=np.float64)
    similarity = (vectors @ vectors.T).astype(np.float64)
    for i in range(len(vectors)):
        others = np.sort(similarity[i, owner != owner[i]])
        if len(others):
            closeness[i] = others[-GENERIC_NEIGHBOURS:].mean()
    return GENERIC_DISCOUNT * (closeness - closeness.mean())


_indexes: OrderedDict[tuple[int, str], _Index] = OrderedDict()
_indexes_lock = threading.Lock()


def _spec_key(tasks: Sequence[TaskExamples]) -> str:
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(task.model_dump_json().encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _index_for(tasks: Sequence[TaskExamples], encoder: SentenceEncoder) -> _Index:
    # Cached per spec (and encoder): every conversation of a worker builds its router from the
    # same tasks, and embedding a hundred phrases costs about 0.15 s.
    key = (id(encoder), _spec_key(tasks))
    with _indexes_lock:
        found = _indexes.get(key)
        if found is not None and found.encoder is encoder:
            _indexes.move_to_end(key)
            return found
    phrases: list[str] = []
    owner: list[int] = []
    for number, task in enumerate(tasks):
        for phrase in task.phrases():
            phrases.append(phrase)
            owner.append(number)
    index = _Index(encoder, encoder.encode(phrases), np.array(owner), [t.name for t in tasks])
    with _indexes_lock:
        _indexes[key] = index
        while len(_indexes) > _CACHE_SPECS:
            _indexes.popitem(last=False)
    return index


class TaskRouter:
    """Routes messages to one of a spec's tasks. Build once per spec; safe across threads."""

    def __init__(self, index: _Index, encoder: SentenceEncoder, threshold: float) -> None:
        self._index = index
        self._encoder = encoder
        self.threshold = threshold

    @classmethod
    def build(
        cls,
        tasks: Sequence[TaskExamples],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        encoder: SentenceEncoder | None = None,
    ) -> TaskRouter:
        if not tasks:
            raise ValueError("a router needs at least one task")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique: {names}")
        encoder = encoder or default_encoder()
        return cls(_index_for(tasks, encoder), encoder, threshold)

    @property
    def tasks(self) -> list[str]:
        return list(self._index.names)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's score for each task (rows: texts, columns: tasks in spec order)."""
        return self.score_vectors(self._encoder.encode(list(texts)))

    def score_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """`scores` for texts already embedded by this router's encoder (the bench reuses them)."""
        # Row by row: one matrix product over many rows may round differently from the same row
        # alone, and a message's answer must not depend on what was routed with it.
        similarity = np.vstack([row @ self._index.vectors.T for row in vectors]) if len(vectors) else (
            np.zeros((0, len(self._index.owner)), dtype=np.float32)
        )
        similarity = similarity - self._index.discount
        out = np.empty((len(vectors), len(self._index.names)), dtype=np.float64)
        for number in range(len(self._index.names)):
            mine = similarity[:, self._index.owner == number].astype(np.float64)
            # log-mean-exp, shifted by the row maximum so exp never overflows.
            top = mine.max(axis=1, keepdims=True)
            out[:, number] = top[:, 0] + np.log(np.exp(SHARPNESS * (mine - top)).mean(axis=1)) / SHARPNESS
        return out

    def route(self, text: str) -> Routed:
        return self.route_many([text])[0]

    def route_many(self, texts: Sequence[str]) -> list[Routed]:
        """One `Routed` per text, in order; the same answer as `route` on each alone."""
        results: list[Routed | None] = [None] * len(texts)
        # Nothing to say is nobody's task; it is not sent to the model.
        live = [i for i, t in enumerate(texts) if t.strip()]
        for i, text in enumerate(texts):
            if not text.strip():
                results[i] = Routed(task=None, confidence=0.0)
        if live:
            table = self.scores([texts[i] for i in live])
            for row, i in enumerate(live):
                results[i] = self._decide(table[row])
        return [r for r in results if r is not None]

    def _decide(self, row: np.ndarray) -> Routed:
        order = np.argsort(-row, kind="stable")
        best = int(order[0])
        score = float(np.clip(row[best], 0.0, 1.0))
        others = [
            Alternative(task=self._index.names[int(k)], score=round(float(row[k]), 4))
            for k in order[1 : 1 + ALTERNATIVES]
        ]
        if score < self.threshold:
            # Out of scope: the best task is still offered, first among the alternatives.
            others = [Alternative(task=self._index.names[best], score=round(float(row[best]), 4)), *others]
            return Routed(task=None, confidence=score, alternatives=others[:ALTERNATIVES])
        return Routed(task=self._index.names[best], confidence=score, alternatives=others)
