"""The jobs the voice bridge hands out, each on its own: when the caller's turn ends, key
presses, silence and re-prompts, and barge-in. No pipeline, no models: plain asyncio."""

from __future__ import annotations

import asyncio

from channels.voice.barge_in import BargeIn
from channels.voice.keypad import Keypad
from channels.voice.silence import SilenceWatch
from channels.voice.turn_taking import HeardTurn, TurnTaking


async def until(condition, timeout: float = 2.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_segments_recognised_before_the_caller_goes_quiet_are_one_turn_taken_once() -> None:
    turns: list[HeardTurn] = []

    async def on_turn(turn: HeardTurn) -> None:
        turns.append(turn)

    taking = TurnTaking(0.05, on_turn, asyncio.create_task)
    taking.caller_started()
    taking.caller_paused(0.3)
    taking.caller_started()  # goes on before the first segment is even recognised
    assert taking.recognised("a table for two", 0.9)  # words, held until the caller stops
    taking.caller_paused(0.3)
    taking.recognised("tomorrow at seven", 0.7)
    await until(lambda: turns)
    await asyncio.sleep(0.1)  # nothing more arrives: the turn is not handed on twice
    [turn] = turns
    assert turn.text == "a table for two tomorrow at seven" and turn.confidence == 0.7
    assert turn.timing["input"] == "speech" and turn.timing["vad_wait_ms"] == 300


async def test_a_turn_waits_for_every_segment_in_recognition() -> None:
    turns: list[HeardTurn] = []

    async def on_turn(turn: HeardTurn) -> None:
        turns.append(turn)

    taking = TurnTaking(0.01, on_turn, asyncio.create_task)
    taking.caller_paused(0.3)
    taking.caller_paused(0.3)  # two segments out
    taking.recognised("Maria", 0.8)
    await asyncio.sleep(0.05)
    assert turns == []  # one still being recognised
    taking.recognised("", None)  # nothing made out, but it counts back in
    await until(lambda: turns)
    assert [t.text for t in turns] == ["Maria"]


async def test_nothing_recognised_is_no_turn() -> None:
    turns: list[HeardTurn] = []

    async def on_turn(turn: HeardTurn) -> None:
        turns.append(turn)

    taking = TurnTaking(0.01, on_turn, asyncio.create_task)
    taking.caller_paused(0.3)
    assert taking.recognised("  ", 0.1) is False
    await asyncio.sleep(0.05)
    assert turns == []


async def test_keys_up_to_the_hash_are_one_number_and_star_starts_again() -> None:
    numbers: list[str] = []

    async def on_number(keys: str) -> None:
        numbers.append(keys)

    keypad = Keypad(5.0, on_number, asyncio.create_task)
    for key in "12*4571#":
        await keypad.press(key)
    await keypad.press("#")  # nothing keyed since: no empty answer
    assert numbers == ["4571"]


async def test_keys_end_after_a_pause_without_a_hash() -> None:
    numbers: list[str] = []

    async def on_number(keys: str) -> None:
        numbers.append(keys)

    keypad = Keypad(0.05, on_number, asyncio.create_task)
    for key in "907":
        await keypad.press(key)
    await until(lambda: numbers)
    assert numbers == ["907"]


class Watched:
    def __init__(self, prompts: int = 1) -> None:
        self.events: list[str] = []
        self.pending = False
        self.watch = SilenceWatch(0.05, prompts, reprompt=self.reprompt, give_up=self.give_up,
                                  speech_pending=lambda: self.pending, spawn=asyncio.create_task, unheard_seconds=0.02)

    async def reprompt(self, not_heard: bool) -> None:
        self.events.append("not heard" if not_heard else "reprompt")

    async def give_up(self, reprompts: int) -> None:
        self.events.append(f"goodbye after {reprompts}")


async def test_silence_gets_a_reprompt_then_a_goodbye() -> None:
    w = Watched()
    w.watch.worker_fell_quiet()
    await until(lambda: w.events == ["reprompt"])
    w.watch.worker_fell_quiet()  # the re-prompt was said
    await until(lambda: len(w.events) == 2)
    assert w.events == ["reprompt", "goodbye after 1"]


async def test_an_answer_resets_the_reprompts_and_speech_cancels_the_wait() -> None:
    w = Watched()
    w.watch.worker_fell_quiet()
    await until(lambda: w.events == ["reprompt"])
    w.watch.caller_answered()
    w.watch.worker_fell_quiet()
    await until(lambda: len(w.events) == 2)
    assert w.events == ["reprompt", "reprompt"]  # a re-prompt again, not the goodbye
    w.watch.worker_fell_quiet()
    w.watch.cancel()  # the caller spoke
    await asyncio.sleep(0.1)
    assert len(w.events) == 2


async def test_no_silence_is_counted_while_the_rest_of_a_reply_is_still_being_made() -> None:
    w = Watched()
    w.pending = True  # the first sentence played; the next is still being synthesized
    w.watch.worker_fell_quiet()
    await asyncio.sleep(0.08)
    assert w.events == []
    w.pending = False
    await until(lambda: w.events)
    assert w.events == ["reprompt"]


async def test_speech_that_gave_no_words_is_asked_again_sooner_than_silence() -> None:
    # The caller said something the recogniser could not make out: no turn comes, so without
    # this the worker waited for an answer while the caller waited for the worker.
    w = Watched()
    w.watch.worker_fell_quiet()
    w.watch.cancel()  # the caller starts speaking
    w.watch.caller_fell_quiet()
    await until(lambda: w.events)
    assert w.events == ["not heard"]


async def test_words_recognised_after_the_pause_cancel_the_not_heard_line() -> None:
    w = Watched()
    w.watch.caller_fell_quiet()
    w.watch.cancel()  # the segment's words came back: a turn follows
    await asyncio.sleep(0.1)
    assert w.events == []


async def test_a_caller_never_understood_is_asked_three_times_then_told_goodbye() -> None:
    w = Watched(prompts=1)
    for _ in range(3):
        w.watch.caller_fell_quiet()
        await until(lambda n=len(w.events): len(w.events) == n + 1)
    w.watch.caller_fell_quiet()
    await until(lambda: len(w.events) == 4)
    assert w.events == ["not heard"] * 3 + ["goodbye after 3"]
    w.watch.caller_answered()  # understood at last: the count starts again
    w.watch.caller_fell_quiet()
    await until(lambda: len(w.events) == 5)
    assert w.events[-1] == "not heard"


def test_talking_over_the_worker_marks_the_line_unheard_once() -> None:
    barge = BargeIn()
    barge.worker_says("What day would you like to come?")
    assert not barge.caller_started()  # not speaking yet: no interruption
    barge.speaking = True
    assert barge.caller_started()
    assert not barge.caller_started()  # already cut off
    assert barge.take_unheard() == ["What day would you like to come?"]
    assert barge.take_unheard() == []


async def test_a_segment_whose_text_never_comes_does_not_stall_every_later_turn() -> None:
    turns: list[HeardTurn] = []

    async def on_turn(turn: HeardTurn) -> None:
        turns.append(turn)

    taking = TurnTaking(0.01, on_turn, asyncio.create_task, lost_after=0.2)
    taking.caller_paused(0.3)
    taking.recognised("table for two", 0.9)
    taking.caller_paused(0.3)  # this segment's text is lost (an interruption cleared it)
    await asyncio.sleep(0.1)
    assert turns == []  # still waiting for it
    await until(lambda: turns)
    assert [t.text for t in turns] == ["table for two"]
    taking._lost_after = 60.0  # were the lost segment still counted, the next turn would now wait a minute
    taking.caller_paused(0.3)
    taking.recognised("tomorrow", 0.8)
    await until(lambda: len(turns) == 2, timeout=5)
    assert turns[1].text == "tomorrow"
