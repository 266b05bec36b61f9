"""The email channel for real: each of the person's lines becomes a MIME message as a mail client
writes it (From, To, Subject, Date, Message-ID; a reply carries In-Reply-To and References to
the worker's previous reply, "Re:" and that reply quoted below the new text), handed to the
email channel's own `EmailChannel.handle_raw` (channels/email/channel.py): the project's parser
reads it (quotes and signatures stripped), the loop guards and limits apply, the dialogue turn
runs, and the reply builder puts the answer in the outbox. The reply checked is the body of that
outbox message, decoded from its MIME.

No IMAP or SMTP server is involved: `handle_raw` is what the inbox watcher calls per message,
and the outbox is read instead of sent. The turn's time is the message's Date header, set from
the case's clock. The per-sender hourly reply limit is lifted (it counts wall-clock time)."""

from __future__ import annotations

import uuid
from email import message_from_string, policy
from email.message import EmailMessage
from email.utils import format_datetime

from channels.email.channel import EmailChannel, EmailSettings
from channels.email.imap import ImapSettings
from channels.email.report import message_state, reply_to
from dialogue.engine import DialogueEngine
from escalation.notify import SmtpSettings
from worker.conversation_tests.channel import Clock, Reply

WORKER_ADDRESS = "worker@conversation-test.example"
PERSON_ADDRESS = "Alex Doe <alex@example.org>"
PERSON_DOMAIN = "example.org"
UIDVALIDITY = "1"
REPLIES_PER_HOUR = 1_000_000


def quoted(text: str, date: str, sender: str) -> str:
    """An earlier message quoted below a reply, as common mail clients write it."""
    lines = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
    return f"On {date}, {sender} wrote:\n{lines}\n"


class EmailCaseChannel:
    def __init__(self, engine: DialogueEngine, clock: Clock):
        self._clock = clock
        settings = EmailSettings(
            imap=ImapSettings(host="127.0.0.1", port=9, user=WORKER_ADDRESS, password="unused", tls="none"),
            smtp=SmtpSettings(host="127.0.0.1", port=9, tls="none", sender=WORKER_ADDRESS),
            # The per-sender hourly limit counts wall-clock time: a long case would hit it.
            replies_per_sender_per_hour=REPLIES_PER_HOUR)
        self._channel = EmailChannel(engine, engine.store.db, settings)
        self._db = engine.store.db
        self._store = engine.store
        self._uid = 0
        self._first_id = f"<{uuid.uuid4().hex}@{PERSON_DOMAIN}>"
        self.conversation_id = f"email:{self._first_id}"
        self._subject = ""
        self._previous: EmailMessage | None = None  # the worker's last reply
        self.sent: list[EmailMessage] = []  # the person's messages, as handed to the channel

    async def start(self) -> Reply:
        return Reply(text=None)  # the person writes first; the first reply holds the greeting

    def message(self, line: str) -> EmailMessage:
        """The person's next message: `line`, and below it the worker's last reply quoted."""
        msg = EmailMessage()
        msg["From"] = PERSON_ADDRESS
        msg["To"] = WORKER_ADDRESS
        msg["Date"] = format_datetime(self._clock())
        msg["Message-ID"] = self._first_id if not self.sent else f"<{uuid.uuid4().hex}@{PERSON_DOMAIN}>"
        body = line
        if self._previous is None:
            self._subject = " ".join(line.split()[:8])[:60] or "Hello"
            msg["Subject"] = self._subject
        else:
            previous = self._previous
            msg["Subject"] = str(previous["Subject"])
            msg["In-Reply-To"] = str(previous["Message-ID"])
            msg["References"] = f"{previous['References']} {previous['Message-ID']}".strip()
            body = f"{line}\n\n" + quoted(previous.get_content().rstrip("\n"), str(previous["Date"]),
                                          f"Sam <{WORKER_ADDRESS}>")
        msg.set_content(body)
        return msg

    async def send(self, line: str) -> Reply:
        msg = self.message(line)
        self.sent.append(msg)
        self._uid += 1
        message_id = str(msg["Message-ID"])
        before = await self._turns_in()
        await self._channel.handle_raw(UIDVALIDITY, self._uid, msg.as_bytes())
        state = await message_state(self._db, message_id)
        if state is None or state[0] not in ("answered", "no_reply"):
            detail = f"{state[0]}: {state[1]}" if state else "not recorded"
            raise RuntimeError(f"the email channel did not answer the message ({detail})")
        turns = await self._turns_in()
        heard = turns[-1] if len(turns) > len(before) else ""  # "": the message made no turn (no new text)
        raw = await reply_to(self._db, message_id)
        if raw is None:
            return Reply(text=None, heard=heard)
        reply = message_from_string(raw, policy=policy.default)
        assert isinstance(reply, EmailMessage)
        self._previous = reply
        return Reply(text=reply.get_content().strip() or None, heard=heard)

    async def _turns_in(self) -> list[str]:
        """The person's words as the worker stored them, turn by turn."""
        return [e.text or "" for e in await self._store.events(self.conversation_id) if e.direction == "in"]

    async def close(self) -> None:
        return None
