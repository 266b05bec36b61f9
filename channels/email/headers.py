"""Reading the headers of untrusted mail safely, with the standard library's own header parser.

An RFC 2047 encoded-word can decode to anything: CR/LF, NUL, U+2028. With `policy.default`
an address header whose display name decodes to CR/LF raises while it is read, and a Subject
with a line break raises when it is copied into the reply; either stopped the whole channel.

`INBOUND_POLICY` is `policy.default` with one change: every header class the registry makes
is preceded by `_CleanHeader`, whose `parse` (the documented hook of `email.headerregistry`
header classes) lets the stdlib tokenise and decode as usual, then replaces control and
line-break characters in the decoded parts with a space and records a defect. Headers read
through it are single-line text, safe to store and to copy into a reply.
"""

from __future__ import annotations

import re
from email import errors, policy
from email.headerregistry import Address, AddressHeader, Group, HeaderRegistry
from typing import Any

# C0 and C1 controls (CR, LF, TAB, NUL...), DEL, the Unicode line and paragraph separators
# (str.splitlines, which the email package uses to refuse multi-line headers, breaks on
# them), the non-characters U+FFFE/U+FFFF and lone surrogates.
_HEADER_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufffe\uffff\ud800-\udfff]+")
# In body text, newlines and tabs stay; everything else above goes.
_TEXT_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")


def _unescape(value: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: read them as UTF-8 (RFC 6532), and
    what is not UTF-8 as U+FFFD, so `josé@` never silently becomes another address, `jos@`."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that is no escape: nothing to recover
        return value


def clean_header(value: str) -> str:
    """One line of header text: runs of control or line-break characters become one space."""
    if not _HEADER_UNSAFE.search(value):
        return value
    return re.sub(r" {2,}", " ", _HEADER_UNSAFE.sub(" ", _unescape(value))).strip()


def clean_text(value: str) -> str:
    """Body text fit to store: line breaks normalised to \\n, other control characters removed."""
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    return _TEXT_UNSAFE.sub("", value)


def _clean_addresses(cls: type[AddressHeader], value: str, kwds: dict[str, Any]) -> bool:
    """`AddressHeader.parse` for parsed text, with each decoded part cleaned before it becomes
    an `Address` (whose constructor refuses CR/LF and would raise for the whole message).
    True if anything had to be cleaned."""
    kwds["parse_tree"] = address_list = cls.value_parser(value)
    groups, changed = [], False
    for addr in address_list.addresses:
        mailboxes = []
        for mb in addr.all_mailboxes:
            parts = (mb.display_name or "", mb.local_part or "", mb.domain or "")
            cleaned = tuple(clean_header(p) for p in parts)
            changed = changed or cleaned != parts
            mailboxes.append(Address(*cleaned))
        name = clean_header(addr.display_name) if addr.display_name else None
        changed = changed or name != addr.display_name
        groups.append(Group(name, mailboxes))
    kwds["groups"] = groups
    kwds["defects"] = list(address_list.all_defects)
    kwds["decoded"] = ", ".join(str(group) for group in groups)
    return changed


class _CleanHeader:
    @classmethod
    def parse(cls, value: Any, kwds: dict[str, Any]) -> None:
        changed = False
        if isinstance(value, str) and issubclass(cls, AddressHeader):
            changed = _clean_addresses(cls, value, kwds)
        else:
            super().parse(value, kwds)  # type: ignore[misc]
        cleaned = clean_header(kwds["decoded"])
        if changed or cleaned != kwds["decoded"]:
            kwds["decoded"] = cleaned
            kwds.setdefault("defects", []).append(
                errors.InvalidHeaderDefect("control, line-break or undecodable characters replaced"))


class CleanHeaderRegistry(HeaderRegistry):
    """The stdlib registry, with `_CleanHeader` first in every header class it makes."""

    def __getitem__(self, name: str) -> type:
        cls = self.registry.get(name.lower(), self.default_class)
        return type("_Clean" + cls.__name__, (_CleanHeader, cls, self.base_class), {})


INBOUND_POLICY = policy.default.clone(header_factory=CleanHeaderRegistry())
