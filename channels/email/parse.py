"""Turn a raw email into what the worker reads, and a reply into a proper email.

Parsing uses the standard library's `email` package with `policy.default` (decoded headers,
charsets, MIME); HTML-only mail is turned into text with `inscriptis`; quoted earlier messages
and signatures are removed from the new text with `mail-parser-reply`. Broken MIME, unknown
charsets and missing headers degrade to what can be read; they never raise.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import formatdate, getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, Field

MAX_BYTES_DEFAULT = 2_000_000
_MSGID = re.compile(r"<[^<>\s]+>")
_DAEMONS = re.compile(r"^(?:mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)(?:[+@.-]|$)", re.I)


class Attachment(BaseModel):
    filename: str | None
    content_type: str
    size: int


class InboundEmail(BaseModel):
    message_id: str
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    subject: str = ""
    sender: str = ""
    sender_name: str = ""
    to: list[str] = Field(default_factory=list)
    date: datetime | None = None
    text: str = Field("", description="The whole body as text (HTML converted).")
    new_text: str = Field("", description="Only what the person wrote now: no quotes, no signature.")
    html_only: bool = False
    attachments: list[Attachment] = Field(default_factory=list)
    auto_generated: str | None = Field(None, description="Why this is machine mail never to be answered, if it is.")
    size: int = 0
    defects: list[str] = Field(default_factory=list)

    @property
    def thread_root(self) -> str:
        """The first message of the thread: the conversation key. The subject never decides it."""
        if self.references:
            return self.references[0]
        return self.in_reply_to or self.message_id


def _ids(value: str | None) -> list[str]:
    return _MSGID.findall(value or "")


def _text_of(part: Message) -> str:
    try:
        content = part.get_content()
        return content if isinstance(content, str) else content.decode("utf-8", "replace")
    except (LookupError, UnicodeError, AssertionError, KeyError):
        # An unknown or wrong charset: read the bytes as UTF-8, then Latin-1, replacing what is left.
        payload = part.get_payload(decode=True) or b""
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return payload.decode("latin-1", "replace")


def _html_to_text(html: str) -> str:
    from inscriptis import get_text

    return get_text(html)


def strip_quotes(text: str) -> str:
    """The new part of a reply: no quoted earlier message, no signature."""
    from mailparser_reply import EmailReplyParser

    text = text.replace("\r\n", "\n")
    try:
        parsed = EmailReplyParser(languages=["en", "de", "fr", "es", "it", "nl"]).read(text=text)
        reply = parsed.replies[0].body if parsed.replies else text
    except Exception:  # the library is heuristic; a failure must not lose the message
        reply = text
    reply = reply or ""
    # RFC 3676's signature separator: everything after "-- " is the signature.
    reply = re.split(r"(?m)^-- ?$", reply, maxsplit=1)[0]
    # Lines quoted with ">" that the parser kept (inline quoting) are not the person's words.
    lines = [line for line in reply.splitlines() if not line.lstrip().startswith(">")]
    return "\n".join(lines).strip()


def auto_generated_reason(msg: Message, sender: str, own_addresses: set[str]) -> str | None:
    """RFC 3834 and common practice: mail that a machine sent, which must never get a reply."""
    auto = (msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = (msg.get("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        return f"Precedence: {precedence}"
    for header in ("X-Autoreply", "X-Autorespond", "List-Id", "List-Unsubscribe"):
        if msg.get(header) is not None:
            return f"{header} header"
    if msg.get_content_type() == "multipart/report":
        return "a delivery status report (bounce)"
    if not sender or _DAEMONS.match(sender.split("@")[0] + "@"):
        return f"sent by {sender or 'an empty address'}"
    if sender.lower() in own_addresses:
        return "sent by the worker's own address"
    return_path = (msg.get("Return-Path") or "").strip()
    if return_path == "<>":
        return "empty Return-Path (a bounce)"
    return None


def parse_email(raw: bytes, own_addresses: set[str] | None = None, max_bytes: int = MAX_BYTES_DEFAULT) -> InboundEmail:
    own = {a.lower() for a in own_addresses or set()}
    msg = message_from_bytes(raw, policy=policy.default)
    defects = [type(d).__name__ for d in msg.defects]
    name, sender = parseaddr(str(msg.get("From", "")))
    message_id = next(iter(_ids(str(msg.get("Message-ID", "")))), None)
    if message_id is None:
        # No Message-ID: derive a stable one so a redelivery is still recognised.
        message_id = f"<no-id-{hashlib.sha256(raw).hexdigest()[:32]}@channel-worker>"
    try:
        date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
        if date is not None and date.tzinfo is None:
            date = date.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError, IndexError):
        date = None
    text, html_only = "", False
    if len(raw) <= max_bytes:
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is not None:
            content = _text_of(body)
            if body.get_content_type() == "text/html":
                html_only, text = True, _html_to_text(content)
            else:
                text = content
    attachments = []
    for part in msg.iter_attachments() if msg.is_multipart() else []:
        payload = part.get_payload(decode=True) or b""
        attachments.append(Attachment(filename=part.get_filename(), content_type=part.get_content_type(), size=len(payload)))
    return InboundEmail(
        message_id=message_id,
        in_reply_to=next(iter(_ids(str(msg.get("In-Reply-To", "")))), None),
        references=_ids(str(msg.get("References", ""))),
        subject=str(msg.get("Subject", "") or ""),
        sender=sender.lower(),
        sender_name=name,
        to=[addr.lower() for _, addr in getaddresses([str(msg.get("To", ""))]) if addr],
        date=date,
        text=text.strip(),
        new_text=strip_quotes(text) if text else "",
        html_only=html_only,
        attachments=attachments,
        auto_generated=auto_generated_reason(msg, sender.lower(), own),
        size=len(raw),
        defects=defects,
    )


def reply_message_id(inbound_message_id: str, domain: str) -> str:
    """The reply's Message-ID, derived from the message it answers: a retry after a crash
    produces the very same id, so the reply can be recognised and never differs."""
    digest = hashlib.sha256(inbound_message_id.encode()).hexdigest()[:32]
    return f"<reply-{digest}@{domain}>"


def build_reply(inbound: InboundEmail, body: str, sender: str, sender_name: str = "") -> EmailMessage:
    reply = EmailMessage()
    reply["From"] = f"{sender_name} <{sender}>" if sender_name else sender
    reply["To"] = inbound.sender
    subject = inbound.subject.strip() or "your message"
    reply["Subject"] = subject if re.match(r"(?i)^re\s*:", subject) else f"Re: {subject}"
    reply["In-Reply-To"] = inbound.message_id
    reply["References"] = " ".join([*inbound.references, inbound.message_id][-20:])
    reply["Message-ID"] = reply_message_id(inbound.message_id, sender.split("@")[-1] or "channel-worker")
    reply["Date"] = formatdate(localtime=False)
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply.set_content(body)
    return reply


def summary(inbound: InboundEmail) -> dict[str, Any]:
    """What the transcript keeps about an email besides its text."""
    return {
        "message_id": inbound.message_id, "subject": inbound.subject, "from": inbound.sender,
        "date": inbound.date.isoformat() if inbound.date else None, "html_only": inbound.html_only,
        "attachments": [a.model_dump() for a in inbound.attachments], "size": inbound.size,
        "defects": inbound.defects,
    }
