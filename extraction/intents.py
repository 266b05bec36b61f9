"""What a turn is trying to do besides giving values: ask for a human, start over,
say yes or no, leave. Word lists and patterns, offline and predictable."""

from __future__ import annotations

import re
from typing import Literal

# The carrier compliance keywords (CTIA / Twilio Advanced Opt-Out): the one list every channel
# that honours them uses. A message is a keyword when its letters alone spell one, so
# "Stop!", " stop " and "S.T.O.P" all count, and "please stop texting me" does not.
Keyword = Literal["stop", "start", "help"]
COMPLIANCE_KEYWORDS: dict[Keyword, frozenset[str]] = {
    "stop": frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}),
    "start": frozenset({"START", "UNSTOP", "YES"}),
    "help": frozenset({"HELP", "INFO"}),
}
_NOT_LETTERS = re.compile(r"[^A-Za-z]")


def compliance_keyword(text: str) -> Keyword | None:
    """Which compliance keyword the whole message is, if any."""
    word = _NOT_LETTERS.sub("", text).upper()
    for keyword, words in COMPLIANCE_KEYWORDS.items():
        if word in words:
            return keyword
    return None


_PATTERNS: dict[str, re.Pattern[str]] = {
    "human": re.compile(
        r"\b(?:(?:speak|talk|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|the\s+|your\s+|some\s+)?"
        r"(?:human|person|agent|someone|somebody|representative|rep|operator|manager|supervisor|staff|real\s+person)"
        r"|(?:get|want|need|give|connect|transfer|put|reach|prefer)\b[^.?!]{0,25}?\b(?:a|an|the)\s+(?:person|agent|representative|operator|rep)"
        r"|(?:real|live|actual)\s+(?:human|person|agent|representative|operator)|\ba\s+human\b|\b(?:a|the)\s+person\s+please"
        r"|human\s+being|customer\s+service|representative|operator|agent\s+please"
        r"|^\s*(?:human|agent|person|operator)\s*(?:please)?\s*[.!]*\s*$)\b",
        re.IGNORECASE,
    ),
    "complaint": re.compile(r"\b(?:complain\w*|unacceptable|ridiculous|terrible service|disgusted)\b", re.I),
    "legal": re.compile(r"\b(?:lawyer|attorney|solicitor|sue|suing|legal action|court|ombudsman)\b", re.I),
    "cancel": re.compile(r"\bcancel(?:l?ing|l?ed|lation)?\b(?!\s+(?:that|it)\b\s*$)", re.I),
    "abuse": re.compile(r"\b(?:fuck\w*|shit\w*|bitch\w*|bastard|asshole|idiot|stupid bot|moron)\b", re.I),
    "start_over": re.compile(r"\b(?:start\s+(?:over|again|afresh)|restart|from\s+the\s+(?:beginning|start)|begin\s+again)\b", re.I),
    "goodbye": re.compile(
        r"^\s*(?:ok(?:ay)?[, ]+)?(?:good\s*bye|bye(?:\s*bye)?|never\s*mind|forget\s+it|no\s+thanks?(?:\s+you)?|"
        r"i'?ll\s+call\s+back(?:\s+later)?|that'?s\s+all)\b",
        re.I,
    ),
    "greeting": re.compile(r"^\s*(?:hi|hello|hey|hiya|good\s+(?:morning|afternoon|evening)|yo)\b[\s!.,]*(?:there)?[\s!.,]*$", re.I),
    "help": re.compile(r"^\s*what can you do\??\s*$", re.I),  # and the HELP keywords, below
}

YES = re.compile(
    r"^\s*(?:yes|yeah|yep|yup|yea|ya|sure|correct|right|that'?s\s+(?:right|correct|it)|exactly|absolutely|"
    r"perfect|confirm(?:ed)?|affirmative|ok(?:ay)?|sounds\s+good|great|fine|all\s+good|uh[- ]huh|definitely)\b",
    re.I,
)
NO = re.compile(r"^\s*(?:no|nope|nah|not\s+quite|incorrect|wrong|that'?s\s+(?:wrong|not\s+right)|negative)\b", re.I)


def detect_intents(text: str) -> set[str]:
    found = {name for name, pattern in _PATTERNS.items() if pattern.search(text)}
    # "stop" and "help" are the compliance keywords, read the same way on every channel.
    keyword = compliance_keyword(text)
    if keyword in ("stop", "help"):
        found.add(keyword)
    return found


def yes_no(text: str) -> bool | None:
    """True for a yes, False for a no, None when the turn is neither."""
    if YES.search(text):
        return True
    if NO.search(text):
        return False
    return None

