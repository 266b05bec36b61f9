"""SMS length: GSM-7 or UCS-2 encoding, segment counts, and shaping a reply to fit.

A message in the GSM 03.38 alphabet fits 160 characters in one segment and 153 per segment
when split (the rest carries the concatenation header); any other character makes the whole
message UCS-2: 70, then 67 per segment. Characters of the extension table (€ [ ] { } ...)
count twice in GSM-7. We first swap typographic characters for GSM ones (curly quotes,
dashes, ellipsis), then drop whole sentences from the front (the last one usually asks the
question), then whole words from the end, so that a reply never
exceeds the allowed segments and never ends in half a word.
"""

from __future__ import annotations

import re

GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = set("^{}\\[~]|€\f")
_TO_GSM = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u200b": "",
    "\u2022": "-", "\u00b7": "-", "\t": " ",
}


def prefer_gsm(text: str) -> str:
    """Swap characters that force UCS-2 for their GSM look-alikes when one exists."""
    return "".join(_TO_GSM.get(ch, ch) for ch in text)


def is_gsm(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in text)


def units(text: str) -> tuple[int, bool]:
    """Encoded length and whether the text is GSM-7 (else UCS-2, counted in UTF-16 code units)."""
    if is_gsm(text):
        return sum(2 if ch in GSM_EXTENDED else 1 for ch in text), True
    return len(text.encode("utf-16-le")) // 2, False


def segment_count(text: str) -> int:
    length, gsm = units(text)
    single, multi = (160, 153) if gsm else (70, 67)
    if length <= single:
        return 1
    return -(-length // multi)


def shape(text: str, max_segments: int) -> str:
    """The reply, GSM-7 where possible, cut at sentence and then word boundaries to fit."""
    text = " ".join(prefer_gsm(text).split())
    if segment_count(text) <= max_segments:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text)
    # The last sentence is usually the question the person must answer: drop from the front.
    while len(sentences) > 1 and segment_count(" ".join(sentences)) > max_segments:
        sentences.pop(0)
    text = " ".join(sentences)
    if segment_count(text) <= max_segments:
        return text
    words = text.split(" ")
    while len(words) > 1 and segment_count(" ".join(words) + "...") > max_segments:
        words.pop()
    return " ".join(words).rstrip(",;:") + "..."
