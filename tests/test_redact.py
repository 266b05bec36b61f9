"""`export --redact`: a reviewer gets the conversations without the people's phone numbers,
email addresses, card and account numbers or names, in texts, fields, metadata and the audit."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from dialogue.events import Turn
from dialogue.spec import WorkerSpec
from tests.support.talk import MONDAY_MORNING, engine_for
from tests.test_export import run_export
from extraction.redact import Redactor

SMS_ID = "sms:+12025550143:+14155550100"
EMAIL_ID = "email:<CA+thread.7f3a@mail.example.com>"
# What the people below said or sent, in every form it is stored in; none may leave with --redact.
PERSONAL = ["+12025550143", "2025550143", "202 555 0143", "12345678", "ana.silva@example.com", "Ana", "Silva",
            "4111 1111 1111 1111", "4111111111111111", "maria@example.org", "Maria", "Lopez", "CA+thread.7f3a"]


@pytest.mark.parametrize(("text", "expected"), [
    ("call me on 202 555 0143", "call me on [phone]"),
    ("my mobile is +44 7700 900123", "my mobile is [phone]"),
    ("it's john.smith@gmail.com", "it's [email]"),
    ("john dot smith at gmail dot com", "[email]"),
    ("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27"),
    ("four one one one one one one one one one one one one one one one", "[card]"),
    ("account 45721198 please", "account [number] please"),
    ("4111 1111 1111 1112", "[number]"),  # fails the Luhn check: a long number, not a card
    ("my name is maria lopez", "my name is [name]"),
    ("Hi, this is Ana Silva", "Hi, this is [name]"),
])
def test_each_kind_of_personal_data_is_masked(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize("text", [
    "table for 2 tomorrow at 8pm", "on 2026-11-24T19:00:00+00:00", "about $1,250.75", "party of 12 at 19:30",
    "Is this about billing, a card, online access, or fraud?",
])
def test_dates_times_amounts_and_small_counts_are_kept(text: str) -> None:
    assert Redactor().text(text) == text


def test_a_name_the_person_gave_is_masked_wherever_it_comes_back() -> None:
    conversation = Redactor().conversation(["I'm Ana"], {"first_name": {"value": "Ana", "text": "Ana"},
                                                        "last_name": {"value": "Silva", "text": "silva"}})
    assert conversation.worker_said("You're booked, Ana. See you at 19:00!") == "You're booked, [name]. See you at 19:00!"
    assert conversation.fields({"last_name": {"value": "Silva", "text": "silva", "turn": 2}}) == {
        "last_name": {"value": "[name]", "text": "[name]", "turn": 2}}
    # The worker's own lines are not searched for names: the persona and the venue stay.
    assert conversation.worker_said("Hi, this is Sam at Trattoria Luigi.") == "Hi, this is Sam at Trattoria Luigi."


def test_ids_that_carry_personal_data_become_pseudonyms_stable_within_an_export() -> None:
    redactor = Redactor()
    pseudonym = redactor.conversation_id(SMS_ID)
    assert pseudonym.startswith("sms:") and "555" not in pseudonym and redactor.conversation_id(SMS_ID) == pseudonym
    assert Redactor().conversation_id(SMS_ID) != pseudonym  # another export, another key: not linkable
    assert redactor.conversation_id("voice:CA0123abcd") == "voice:CA0123abcd"


async def _conversations(account_support: WorkerSpec, restaurant: WorkerSpec, url: str) -> None:
    async def talk(spec: WorkerSpec, conversation_id: str, channel: str, metadata: dict, lines: list[str | None]) -> None:
        async with engine_for(spec, url) as engine:
            clock = MONDAY_MORNING
            for text in lines:
                clock += timedelta(seconds=5)
                await engine.handle(Turn(conversation_id=conversation_id, channel=channel, text=text, time=clock,
                                         metadata=metadata))

    await talk(account_support, SMS_ID, "sms", {"from": "+12025550143", "to": "+14155550100", "message_sid": "SM1"}, [
        None, "Hi, this is Ana Silva, my account is 12345678", "billing", "call me on 202 555 0143",
        "ana.silva@example.com", "my card 4111 1111 1111 1111 was charged twice", "yes"])
    await talk(restaurant, EMAIL_ID, "email", {"from": "Maria Lopez <maria@example.org>", "subject": "Booking for Maria",
                                               "message_id": "<CA+thread.7f3a@mail.example.com>"}, [
        "table for 2 tomorrow at 8pm", "Maria", "Lopez", "yes"])


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_redacted_jsonl_export_has_no_personal_data_left(account_support: WorkerSpec, restaurant: WorkerSpec,
                                                                 database_url: str) -> None:
    await _conversations(account_support, restaurant, database_url)
    plain = run_export(database_url, "--format", "jsonl")
    assert all(value in plain.stdout for value in ("+12025550143", "ana.silva@example.com", "Lopez"))

    result = run_export(database_url, "--format", "jsonl", "--redact")
    assert result.returncode == 0, result.stderr
    assert [value for value in PERSONAL if value in result.stdout] == []
    records = {json.loads(line)["id"].split(":")[0]: json.loads(line) for line in result.stdout.splitlines()}
    sms, email = records["sms"], records["email"]
    assert sms["id"].startswith("sms:") and email["id"].startswith("email:")
    # What a reviewer needs is still there.
    plain_sms = next(json.loads(line) for line in plain.stdout.splitlines() if line.startswith('{"id": "sms:'))
    assert sms["outcome"] == plain_sms["outcome"] == "completed" and email["fields"]["date"]["value"] == "2026-11-24"
    assert sms["fields"]["reason"] == plain_sms["fields"]["reason"]  # a choice is not personal
    assert (sms["fields"]["callback_phone"]["value"], sms["fields"]["email"]["value"]) == ("[phone]", "[email]")
    assert sms["fields"]["account_number"]["value"] == "[number]"
    assert email["fields"]["first_name"]["value"] == email["fields"]["last_name"]["value"] == "[name]"
    said = [t["text"] for t in sms["turns"] if t["role"] == "user"]
    assert said[0] == "Hi, this is [name], my account is [number]" and "my card [card] was charged twice" in said
    assert sms["turns"][1]["metadata"] == {"from": "[phone]", "to": "[phone]", "message_sid": "SM1"}
    assert email["turns"][0]["metadata"]["from"] == "[name] <[email]>"
    assert email["turns"][-1]["text"].startswith("You're booked, [name]")
    assert any("[phone]" in json.dumps(a["inputs"]) for a in sms["audit"])


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_redacted_csv_export_has_no_personal_data_left(account_support: WorkerSpec, restaurant: WorkerSpec,
                                                               database_url: str) -> None:
    await _conversations(account_support, restaurant, database_url)
    result = run_export(database_url, "--format", "csv", "--redact")
    assert result.returncode == 0, result.stderr
    assert [value for value in PERSONAL if value in result.stdout] == []
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    ids = {r["conversation_id"] for r in rows}
    assert len(ids) == 2 and not ids & {SMS_ID, EMAIL_ID}  # each conversation's rows still go together
    sms = [r for r in rows if r["conversation_id"].startswith("sms:")]
    assert json.loads(sms[-1]["fields"])["callback_phone"] == "[phone]"
    assert json.loads([r for r in sms if r["direction"] == "in"][0]["metadata"])["from"] == "[phone]"


@pytest.mark.parametrize(("text", "expected"), [
    ("write to zoé@example.com please", "write to [email] please"),
    ("zoe@例え.jp", "[email]"),
    ("mail me at zoe.obrien+x@exämple.co.uk today", "mail me at [email] today"),
    ("ｚｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "[email]"),  # full width: the mask covers the original characters
    ("ｍａｉｌ ｚｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ ｔｈａｎｋｓ", "ｍａｉｌ [email] ｔｈａｎｋｓ"),
    ("zoe\u0301@exa\u0308mple.com", "[email]"),  # decomposed accents
    ("zoe\u200b@example.com", "[email]"),  # a zero-width space does not hide it
])
def test_email_addresses_with_non_ascii_characters_are_masked(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


def test_a_spoken_email_address_is_masked_even_next_to_a_typed_one() -> None:
    assert (Redactor().text("mail me at ZOE@EXAMPLE.COM or zoe at example dot com")
            == "mail me at [email] or [email]")
    assert Redactor().text("or zoe [at] example [dot] com") == "or [email]"
    # Words around "at" and "dot" are an address only when they end in a top-level domain.
    for text in ("see you at eight dot thirty", "find us at www.example.com", "meet @ 5.30pm"):
        assert Redactor().text(text) == text


@pytest.mark.parametrize("identifier", [
    "SMd913ce44ee1234567890abcdef123456", "CA0123abcd4567890aa9912e4f5a6b7c8d", "MM20255501434111111111111111ab",
    "550e8400-e29b-41d4-a716-446655440000",
])
def test_ids_that_hold_digits_are_kept_whole(identifier: str) -> None:
    conversation = Redactor().conversation([], None)
    assert conversation.value({"message_sid": identifier, "call_sid": identifier}) == {
        "message_sid": identifier, "call_sid": identifier}
    assert Redactor().text(f"sid {identifier} ok") == f"sid {identifier} ok"


def test_account_and_phone_numbers_written_with_letters_are_still_masked_whole() -> None:
    assert Redactor().text("my iban GB82WEST12345698765432 acct 12345678") == "my iban [number] acct [number]"
    assert Redactor().text("iban GB82 WEST 1234 5698 7654 32 thanks") == "iban [number] thanks"
    assert Redactor().text("call 2025550143x12") == "call [phone]"  # an extension, not an id


def test_numbers_in_a_list_are_masked_one_by_one() -> None:
    assert (Redactor().text("card 4111 1111 1111 1111 and 4111-1111-1111-1111 and 4111111111111111")
            == "card [card] and [card] and [card]")
    assert Redactor().text("accounts 45721198, 45721199") == "accounts [number], [number]"
    # Short groups joined by "and" or a comma are still one number and masked together.
    assert Redactor().text("four five seven two, one one nine eight") == "[number]"
