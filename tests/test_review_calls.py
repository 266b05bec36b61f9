"""The conversation page of a phone call, without a browser: the recording served to reviewers
and admins only (with Range, from the stored path only), each turn placed in the recording, the
per-turn timings, and the plain transcription beside the digit re-read."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.review_call_seed import CALL, ELSEWHERE, EXPECTED, HEARD, SID, UNRECORDED, seed_calls
from tests.support.review_seed import SMS_LOST, seed, store_url
from tests.test_review import client_for, log_in
from worker.review.calls import recording_file


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    base = tmp_path_factory.mktemp("review-calls")
    url = str(base / "worker.sqlite")
    recordings = base / "recordings"

    async def both() -> None:
        await seed(url)
        await seed_calls(url, recordings, base / "elsewhere")

    asyncio.run(both())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VOICE_RECORDINGS_DIR", str(recordings))
        yield store_url(url), recordings


@pytest.fixture
def reviewer(calls: tuple[str, Path]) -> Iterator[TestClient]:
    with client_for(calls[0]) as client:
        log_in(client, "rita")
        yield client


def test_a_call_shows_its_player_each_turn_at_its_time_the_timings_and_the_plain_transcription(reviewer: TestClient) -> None:
    page = reviewer.get(f"/review/conversations/{CALL}")
    assert page.status_code == 200
    html = page.text
    src = f"/review/recordings/{CALL}"
    assert re.search(rf'<audio id="recording" controls preload="metadata" src="{re.escape(src)}"', html)
    seeks = re.findall(r'<a class="seek" href="([^"]+)" data-at="([^"]+)" aria-label="Play ([^"]+) from', html)
    assert [(href, float(at), what) for href, at, what in seeks] == [
        (f"{src}#t={EXPECTED['greeting']}", EXPECTED["greeting"], "the worker&#39;s line"),
        (f"{src}#t={EXPECTED['turn 1']}", EXPECTED["turn 1"], "turn 1"),
        (f"{src}#t={EXPECTED['reply 1']}", EXPECTED["reply 1"], "the worker&#39;s line"),
        (f"{src}#t={EXPECTED['turn 2']}", EXPECTED["turn 2"], "turn 2"),
        (f"{src}#t={EXPECTED['reply 2']}", EXPECTED["reply 2"], "the worker&#39;s line"),
    ]
    assert "0:12.9</a>" in html
    # Turn 2's stages, and from the caller's last word to the reply: 300 + 520 + 180 + 60 + 330.
    timings = re.findall(r'<dl class="timings" aria-label="Timings of this turn">(.*?)</dl>', html)
    assert len(timings) == 3  # the greeting and both caller's turns
    stages = re.findall(r"<dt>([^<]+)</dt><dd>(\d+) ms</dd>", timings[2])
    assert stages == [("VAD wait", "300"), ("speech to text", "450"), ("hold", "520"), ("digit re-read", "180"),
                      ("dialogue", "60"), ("TTS first audio", "330"), ("last word to reply", "1390")]
    assert re.search(r'<span class="label">Plain transcription</span><p class="plain">' + re.escape(HEARD) + "</p>", html)
    assert re.search(r'Re-read as digits \(stored\)</span><p class="text" id="said-2" data-turn="2">my account number is '
                     r'<mark class="value', html)
    assert html.count('class="plain"') == 1  # turn 1 was not re-read: no second column
    assert "ended by the caller" in html
    # A missed value can be labelled in each caller's turn, for the worker's fields.
    assert 'id="missed-form-1"' in html and 'id="missed-form-2"' in html
    assert re.search(r'<datalist id="field-names">.*<option value="account_number">.*<option value="card_situation">', html)


def test_the_recording_is_served_with_range_requests(reviewer: TestClient, calls: tuple[str, Path]) -> None:
    whole = (calls[1] / f"{SID}.wav").read_bytes()
    answer = reviewer.get(f"/review/recordings/{CALL}")
    assert answer.status_code == 200 and answer.content == whole
    assert answer.headers["content-type"] == "audio/wav" and answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["cache-control"] == "no-store"  # a voice: not kept by the browser or a proxy
    part = reviewer.get(f"/review/recordings/{CALL}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == whole[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    tail = reviewer.get(f"/review/recordings/{CALL}", headers={"Range": "bytes=-44"})
    assert tail.status_code == 206 and tail.content == whole[-44:]
    start = reviewer.get(f"/review/recordings/{CALL}", headers={"Range": "bytes=0-"})  # what chromium asks first
    assert start.status_code == 206 and start.content == whole
    beyond = reviewer.get(f"/review/recordings/{CALL}", headers={"Range": f"bytes={len(whole) + 10}-"})
    assert beyond.status_code == 416


def test_viewers_may_not_hear_the_recording_and_see_no_player(calls: tuple[str, Path]) -> None:
    with client_for(calls[0]) as client:
        log_in(client, "vic")
        assert client.get(f"/review/recordings/{CALL}").status_code == 403
        assert client.get(f"/review/recordings/{CALL}", headers={"Range": "bytes=0-"}).status_code == 403
        listing = client.get("/review/conversations?channel=voice").text
        pages = [client.get(ref).text for ref in re.findall(r'href="(/review/conversations/r\.[^"]+)"', listing)]
        page = next(p for p in pages if "Plain transcription" in p)
        assert "<audio" not in page and "/review/recordings/" not in page and "for reviewers and admins" in page
        assert "45721198" not in page and "seven two" not in page  # masked, both readings
        assert "for [number]" in page
        assert 'class="at">at 0:12.9' in page  # where the turn is, without a link
    with client_for(calls[0]) as client:  # nobody logged in: to the login form
        answer = client.get(f"/review/recordings/{CALL}", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/review/login?next=")
    with client_for(calls[0]) as client:
        log_in(client, "ada")  # admins as reviewers
        assert client.get(f"/review/recordings/{CALL}", headers={"Range": "bytes=0-99"}).status_code == 206


def test_only_the_stored_recording_of_that_call_is_served(reviewer: TestClient, calls: tuple[str, Path]) -> None:
    for path in ("/review/recordings/..%2F..%2F..%2Fetc%2Fpasswd", f"/review/recordings/{CALL}%2F..%2F..%2Fworker.sqlite",
                 f"/review/recordings/voice:..%2F{SID}", "/review/recordings/%2Fetc%2Fpasswd",
                 f"/review/recordings/{SMS_LOST}", f"/review/recordings/{CALL}?path=/etc/passwd&file=..%2F..%2Fx"):
        answer = reviewer.get(path)
        if "?" in path:  # the query is ignored: the stored recording, never a named file
            assert answer.status_code == 200 and answer.content[:4] == b"RIFF", path
        else:
            assert answer.status_code == 404, path
    # A call with no recording, and one whose stored path lies outside VOICE_RECORDINGS_DIR.
    assert reviewer.get(f"/review/recordings/{UNRECORDED}").status_code == 404
    assert reviewer.get(f"/review/recordings/{ELSEWHERE}").status_code == 404
    assert "This call was not recorded." in reviewer.get(f"/review/conversations/{UNRECORDED}").text
    elsewhere = reviewer.get(f"/review/conversations/{ELSEWHERE}").text
    assert "not available here" in elsewhere and "<audio" not in elsewhere


def test_the_recording_file_is_that_calls_own_wav_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    own = folder / f"{SID}.wav"
    own.parent.mkdir()
    own.write_bytes(b"RIFF")
    other = folder / ("CA" + "1" * 32 + ".wav")
    other.write_bytes(b"RIFF")
    outside = tmp_path / f"{SID}.wav"
    outside.write_bytes(b"RIFF")
    (folder / "sub").mkdir()
    link = folder / "sub" / f"{SID}.wav"
    link.symlink_to(outside)
    assert recording_file(CALL, str(own), folder) == own.resolve()
    assert recording_file(CALL, str(folder / "sub" / ".." / f"{SID}.wav"), folder) == own.resolve()
    assert recording_file(CALL, str(other), folder) is None  # another call's recording
    assert recording_file(CALL, str(outside), folder) is None  # outside the folder
    assert recording_file(CALL, str(link), folder) is None  # a link out of it
    assert recording_file(CALL, "/etc/passwd", folder) is None
    assert recording_file(CALL, str(own), None) is None  # VOICE_RECORDINGS_DIR unset: nothing is served
    assert recording_file("sms:+1555:+1556", str(own), folder) is None
    assert recording_file(f"voice:../{SID}", str(own), folder) is None


def test_keyed_numbers_and_lines_said_outside_a_turn_are_placed_too() -> None:
    from datetime import datetime, timedelta, timezone

    from transcripts.store import Event
    from worker.review.calls import call_of, clock, offsets

    t0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)

    def event(direction: str, seconds: float, text: str | None, **metadata: object) -> Event:
        return Event(conversation_id=CALL, channel="voice", direction=direction, text=text,
                     time=(t0 + timedelta(seconds=seconds)).isoformat(), metadata=metadata)

    events = [
        event("system", 0, None, event="started"),
        event("out", 0.05, "What is your account number?"),
        event("in", 12.0, "45721198", input="dtmf"),
        event("out", 12.1, "Thanks. What happened?"),
        event("out", 30.0, "Are you still there?", event="reprompt"),
        event("system", 40.0, None, event="call ended", turns=[
            {"turn": 0, "input": "start", "dialogue_ms": 50, "tts_first_audio_ms": 400},
            {"turn": 1, "input": "dtmf", "dialogue_ms": 100, "tts_first_audio_ms": 200}],
            duration_seconds=40.0, ended_by="caller", recording=None),
    ]
    placed = offsets(events, call_of(events))
    # The question at 0.45 s; the keys from 12 - 3 (the keypad's pause) - 8 x 0.5; the reply at
    # 12 + 0.1 + 0.2; the re-prompt at its time plus the call's median time to first audio (0.3 s).
    assert {i: round(s, 2) for i, s in placed.items()} == {1: 0.45, 2: 5.0, 3: 12.3, 4: 30.3}
    assert clock(placed[4]) == "0:30.3" and clock(75.25) == "1:15.2"
