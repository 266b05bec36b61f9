"""Turn a raw email into what the worker reads, and a reply into a proper email.

Parsing uses the standard library's `email` package with `INBOUND_POLICY` (`policy.default`
whose headers come out as clean single lines, see headers.py); HTML-only mail is turned into
text with `inscriptis`; quoted earlier messages and signatures are removed from the new text
with `mail-parser-reply`. Broken MIME, unknown charsets and missing headers degrade to what can
be read; they never raise. What cannot be read at all (MIME nested too deeply for the parser)
comes back with `problem` set, so the channel records it as failed and carries on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from channels.email.headers import INBOUND_POLICY, clean_header, clean_text

MAX_BYTES_DEFAULT = 2_000_000
# A msg-id: no whitespace or control characters inside the angle brackets.
_MSGID = re.compile(r"<[^<>\s\x00-\x1f\x7f]+>")
_DAEMONS = re.compile(r"^(?:mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)(?:[+@.-]|$)", re.I)
# Headers that only mailing lists and list managers add (RFC 2369, RFC 2919, older ezmlm/qmail).
_LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post", "List-Help", "List-Subscribe", "List-Owner",
                 "List-Archive", "Mailing-List")
# Microsoft's X-Auto-Response-Suppress values that ask automatic responders not to answer.
_SUPPRESS = {"all", "autoreply", "oof"}


class Attachment(BaseModel):
    filename: str | None
    content_type: str
    size: int

    @field_validator("filename")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return clean_header(value) if value else value


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
    problem: str | None = Field(None, description="Why this message cannot be processed at all, if it cannot.")

    # Nothing with control characters is stored or copied into a reply (PostgreSQL refuses NUL;
    # a line break in a header of the reply would be a header injection).
    @field_validator("message_id", "in_reply_to", "subject", "sender", "sender_name", "auto_generated", "problem")
    @classmethod
    def _header_text(cls, value: str | None) -> str | None:
        return clean_header(value) if value else value

    @field_validator("to", "references", "defects")
    @classmethod
    def _header_list(cls, value: list[str]) -> list[str]:
        return [clean_header(v) for v in value]

    @field_validator("text", "new_text")
    @classmethod
    def _body_text(cls, value: str) -> str:
        return clean_text(value)

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
    except Exception:  # noqa: BLE001 - any unreadable part falls back to its bytes
        # An unknown or wrong charset, a broken transfer encoding: read the bytes as UTF-8,
        # then Latin-1, replacing what is left.
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


def is_own_address(address: str, own_addresses: Iterable[str]) -> bool:
    """The worker's own address or one of its aliases, also with a +tag (support+x@example.com)."""
    local, _, domain = address.lower().rpartition("@")
    base = local.split("+", 1)[0]
    for own in own_addresses:
        own_local, _, own_domain = own.lower().rpartition("@")
        if domain == own_domain and base == own_local.split("+", 1)[0]:
            return True
    return False


def auto_generated_reason(msg: Message, sender: str, own_addresses: Iterable[str]) -> str | None:
    """RFC 3834 and common practice: mail that a machine sent, which must never get a reply."""
    auto = str(msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = str(msg.get("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        return f"Precedence: {precedence}"
    # X-Loop: an automatic responder (ours included, see build_reply) has handled it already.
    for header in ("X-Loop", "X-Autoreply", "X-Autorespond", *_LIST_HEADERS):
        if msg.get(header) is not None:
            return f"{header} header"
    suppress = {v.strip().lower() for v in str(msg.get("X-Auto-Response-Suppress") or "").split(",")}
    if suppress & _SUPPRESS:
        return "X-Auto-Response-Suppress: " + ", ".join(sorted(suppress & _SUPPRESS))
    if msg.get_content_type() == "multipart/report":
        return "a delivery status report (bounce)"
    if not sender or _DAEMONS.match(sender.split("@")[0] + "@"):
        return f"sent by {sender or 'an empty address'}"
    if is_own_address(sender, own_addresses):
        return "sent by the worker's own address"
    return_path = str(msg.get("Return-Path") or "").strip()
    if return_path == "<>":
        return "empty Return-Path (a bounce)"
    return None


def _first_address(msg: Message, header: str) -> tuple[str, str]:
    """(display name, address) of the first mailbox in an address header, or ("", "")."""
    value = msg.get(header)
    for address in getattr(value, "addresses", ()):
        return address.display_name, address.addr_spec.lower()
    return "", ""


def _date(msg: Message) -> datetime | None:
    value = msg.get("Date")
    date = getattr(value, "datetime", None)
    if date is None and value:
        try:
            date = parsedate_to_datetime(str(value))
        except (TypeError, ValueError, IndexError):
            return None
    if date is not None and date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    return date


def _header_defects(msg: Message) -> list[str]:
    found = []
    for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Date"):
        value = msg.get(name)
        for defect in getattr(value, "defects", ()):
            found.append(f"{name}: {type(defect).__name__}")
    return found


def parse_email(raw: bytes, own_addresses: Iterable[str] | None = None, max_bytes: int = MAX_BYTES_DEFAULT,
                size: int | None = None) -> InboundEmail:
    """`raw` may be only the first `max_bytes` + 1 bytes of a larger message whose whole `size`
    the server reported: then only its headers are read."""
    own = {a.lower() for a in own_addresses or set()}
    size = len(raw) if size is None else size
    problem = None
    try:
        msg = BytesParser(policy=INBOUND_POLICY).parsebytes(raw)
    except RecursionError:
        # The stdlib parser recurses once per MIME level: a few thousand nested parts exhaust
        # the stack. The headers are still readable, for the record and the loop guards.
        msg = BytesParser(policy=INBOUND_POLICY).parsebytes(raw, headersonly=True)
        problem = "the MIME structure is nested too deeply to read"
    defects = [type(d).__name__ for d in msg.defects] + _header_defects(msg)
    name, sender = _first_address(msg, "From")
    message_id = next(iter(_ids(str(msg.get("Message-ID", "")))), None)
    if message_id is None:
        # No Message-ID: derive a stable one so a redelivery is still recognised.
        message_id = f"<no-id-{hashlib.sha256(raw).hexdigest()[:32]}@channel-worker>"
    text, html_only, attachments = "", False, []
    if size <= max_bytes and problem is None:
        try:
            body = msg.get_body(preferencelist=("plain", "html"))
            if body is not None:
                content = _text_of(body)
                if body.get_content_type() == "text/html":
                    html_only, text = True, _html_to_text(content)
                else:
                    text = content
            for part in msg.iter_attachments() if msg.is_multipart() else []:
                payload = part.get_payload(decode=True) or b""
                attachments.append(Attachment(filename=part.get_filename(), content_type=part.get_content_type(),
                                              size=len(payload)))
        except RecursionError:
            problem = "the MIME structure is nested too deeply to read"
    to = msg.get("To")
    return InboundEmail(
        message_id=message_id,
        in_reply_to=next(iter(_ids(str(msg.get("In-Reply-To", "")))), None),
        references=_ids(str(msg.get("References", ""))),
        subject=str(msg.get("Subject", "") or ""),
        sender=sender,
        sender_name=name,
        to=[a.addr_spec.lower() for a in getattr(to, "addresses", ()) if a.username],
        date=_date(msg),
        text=text.strip(),
        new_text=strip_quotes(text) if text else "",
        html_only=html_only,
        attachments=attachments,
        auto_generated=auto_generated_reason(msg, sender, own),
        size=size,
        defects=defects,
        problem=problem,
    )


def reply_message_id(inbound_message_id: str, domain: str) -> str:
    """The reply's Message-ID, derived from the message it answers: a retry after a crash
    produces the very same id, so the reply can be recognised and never differs."""
    digest = hashlib.sha256(inbound_message_id.encode()).hexdigest()[:32]
    return f"<reply-{digest}@{domain}>"


def build_reply(inbound: InboundEmail, body: str, sender: str, sender_name: str = "") -> EmailMessage:
    """The reply. Every header taken from the inbound mail was cleaned to one line when it was
    read (InboundEmail's validators); the subject is cleaned again here and kept short."""
    reply = EmailMessage()
    reply["From"] = f"{sender_name} <{sender}>" if sender_name else sender
    reply["To"] = inbound.sender
    subject = clean_header(inbound.subject)[:200].strip() or "your message"
    reply["Subject"] = subject if re.match(r"(?i)^re\s*:", subject) else f"Re: {subject}"
    reply["In-Reply-To"] = inbound.message_id
    reply["References"] = " ".join([*inbound.references, inbound.message_id][-20:])
    reply["Message-ID"] = reply_message_id(inbound.message_id, sender.split("@")[-1] or "channel-worker")
    reply["Date"] = formatdate(localtime=False)
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply["X-Loop"] = sender  # other responders that honour X-Loop leave our reply alone
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
