"""Putting a call through: the TwiML that dials, and the Calls API request against a local
server speaking Twilio's wire format."""

from __future__ import annotations

from xml.etree import ElementTree

from channels.twilio.settings import TwilioSettings
from channels.voice.transfer import NO_ANSWER, CallControl, dial_twiml
from tests.support.fake_twilio import FakeTwilio

ACCOUNT = "AC" + "d" * 32
CALL = "CA" + "e" * 32


def test_the_dial_shows_the_callers_number_and_rings_until_answered() -> None:
    twiml = ElementTree.fromstring(dial_twiml("+441632960000", "+12025550123"))
    dial = twiml.find("Dial")
    assert dial is not None and dial.get("callerId") == "+12025550123" and dial.get("answerOnBridge") == "true"
    assert dial.findtext("Number") == "+441632960000"
    assert twiml.findtext("Say") == NO_ANSWER  # nobody picks up: the caller is not left in silence


def test_a_sip_address_is_dialled_as_sip() -> None:
    dial = ElementTree.fromstring(dial_twiml("sip:desk@pbx.example.com", None)).find("Dial")
    assert dial is not None and dial.findtext("Sip") == "sip:desk@pbx.example.com" and dial.get("callerId") is None


def settings(fake: FakeTwilio) -> TwilioSettings:
    return TwilioSettings(account_sid=ACCOUNT, auth_token="t" * 32, api_base=fake.base_url)


async def test_a_busy_api_is_tried_again_and_the_call_is_updated_once() -> None:
    with FakeTwilio() as fake:
        fake.script = [503, 429]
        calls = CallControl(settings(fake), retry_seconds=0.01)
        try:
            result = await calls.transfer(CALL, "+441632960000", "+12025550123")
        finally:
            await calls.close()
    assert result.ok and result.attempts == 3 and result.status == "in-progress"
    [update] = fake.call_updates
    assert update["CallSid"] == CALL and "<Number>+441632960000</Number>" in update["Twiml"]


async def test_a_refused_update_is_reported_without_retrying() -> None:
    with FakeTwilio() as fake:
        fake.script = [400]
        calls = CallControl(settings(fake), retry_seconds=0.01)
        try:
            result = await calls.transfer(CALL, "+441632960000", None)
        finally:
            await calls.close()
    assert not result.ok and result.attempts == 1 and result.error and result.error.startswith("400 21211")
    assert fake.call_updates == []
