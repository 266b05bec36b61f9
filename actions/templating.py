"""Request templates: a URL, header values and a JSON body written over fields, earlier action
results and environment variables.

    url: "${BOOKING_API}/availability?date={date}&people={people}"
    headers: {Authorization: "Bearer ${BOOKING_TOKEN}"}
    body: {party: {size: "{people}", name: "{first_name} {last_name}"}, slot: "{availability.slot_id}"}

`{name}` is a field of the worker, an extra (`conversation_id`, `worker`, `channel`) or a named
result of an earlier action (`availability.slot_id`). A body string that is exactly one
placeholder keeps the value's JSON type (`"{people}"` sends 4, not "4"); any other string is text.
`${NAME}` is an environment variable, read when the request is made: the only way a secret
reaches a request, so no secret is ever written in a spec, a log line or the database.
`{{` and `}}` stand for the braces themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote, urlsplit, parse_qsl

TEMPLATE_EXTRAS = frozenset({"conversation_id", "worker", "channel"})

_TOKEN = re.compile(r"\$\{([^{}]*)\}|\{\{|\}\}|\{([^{}]*)\}|[{}]")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_REF_NAME = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*")

# Where a literal value is a secret written inline: a header, query or body name whose last word
# is one of these (`X-Api-Key`, `access_token`, `clientSecret`; not `token_type`).
_SECRET_WORDS = frozenset({
    "authorization", "auth", "token", "secret", "password", "passwd", "pwd", "passphrase", "key", "apikey",
    "cookie", "signature", "credential", "credentials", "sid",
})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# What may stand beside the ${VAR} in such a header: the scheme word only.
_SCHEMES = re.compile(r"^\s*(?:bearer|basic|token|digest|apikey|key)?\s*$", re.IGNORECASE)


class MissingEnvironment(Exception):
    """A `${VAR}` named in an action or delivery is not set in the environment."""


@dataclass(frozen=True)
class Ref:
    """A `{name}` placeholder: a field, an extra or an action result."""

    name: str


@dataclass(frozen=True)
class Env:
    """A `${NAME}` environment variable."""

    name: str


Piece = str | Ref | Env


def scan(text: str) -> tuple[list[Piece], list[str]]:
    """The pieces of a template string and what is wrong with it (in words for the author)."""
    pieces: list[Piece] = []
    problems: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        if m.start() > pos:
            pieces.append(text[pos:m.start()])
        pos = m.end()
        token = m.group(0)
        if m.group(1) is not None:
            if _ENV_NAME.fullmatch(m.group(1)):
                pieces.append(Env(m.group(1)))
            else:
                problems.append(f"{token}: an environment variable is written ${{NAME}} in capitals, digits and _")
        elif token in ("{{", "}}"):
            pieces.append(token[0])
        elif m.group(2) is not None:
            if _REF_NAME.fullmatch(m.group(2)):
                pieces.append(Ref(m.group(2)))
            else:
                problems.append(f"{token}: a placeholder names a field or a result, such as {{people}} or "
                                "{availability.slot_id}; no formats, spaces or indexes")
        else:
            problems.append(f"a single {token!r} (write {token * 2!r} for the character itself)")
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces, problems


def refs(text: str) -> list[str]:
    return [p.name for p in scan(text)[0] if isinstance(p, Ref)]


def env_names(text: str) -> list[str]:
    return [p.name for p in scan(text)[0] if isinstance(p, Env)]


def strings_in(value: Any, path: str) -> Iterator[tuple[str, str, str | None]]:
    """Every string of a JSON body template as (path, text, the key it is the value of)."""
    if isinstance(value, str):
        yield path, value, path.rpartition(".")[2] or None
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings_in(item, f"{path}.{i}")


def is_secret_name(name: str) -> bool:
    words = [w.lower() for w in _WORD.findall(name)]
    return bool(words) and (words[-1] in _SECRET_WORDS or "".join(words) in _SECRET_WORDS)


def inline_secret(text: str) -> bool:
    """A value under a secret-looking name that is not made of `${VAR}`s (and a scheme word)."""
    pieces, _ = scan(text)
    if not any(isinstance(p, Env) for p in pieces):
        return bool(text.strip())
    literal = "".join(p for p in pieces if isinstance(p, str))
    return not _SCHEMES.match(literal) or any(isinstance(p, Ref) for p in pieces)


def url_problems(url: str) -> list[str]:
    """Inline credentials in a URL: user:password@ or a secret-named query parameter with a literal."""
    found = []
    literal = "".join(p if isinstance(p, str) else "x" for p in scan(url)[0])
    try:
        parts = urlsplit(literal)
    except ValueError as exc:
        return [f"is not a URL ({exc})"]
    if "@" in parts.netloc:
        userinfo = url.partition("://")[2].partition("@")[0]
        password = userinfo.partition(":")[2]
        if password and inline_secret(password):
            found.append("has a password written inline (user:password@); write it as ${VAR}")
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if is_secret_name(key) and inline_secret(value):
            found.append(f"query parameter {key!r} is a secret written inline; write it as ${{VAR}}")
    return found


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    return str(value)


def _json_ready(value: Any) -> Any:
    if isinstance(value, (date, datetime, time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _env(name: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    if value is None:
        raise MissingEnvironment(f"environment variable {name} is not set")
    return value


def fill_text(text: str, values: Mapping[str, Any], env: Mapping[str, str] | None = None,
              encode: bool = False) -> str:
    """A template string filled in; `encode` percent-encodes the values (never the ${VAR}s:
    a base URL may come from the environment)."""
    env = os.environ if env is None else env
    out = []
    for piece in scan(text)[0]:
        if isinstance(piece, str):
            out.append(piece)
        elif isinstance(piece, Env):
            out.append(_env(piece.name, env))
        else:
            value = _text(values.get(piece.name))
            out.append(quote(value, safe="") if encode else value)
    return "".join(out)


def fill_body(body: Any, values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Any:
    """The JSON body with every string filled in; a string that is one placeholder keeps its type."""
    if isinstance(body, str):
        pieces = scan(body)[0]
        if len(pieces) == 1 and isinstance(pieces[0], Ref):
            return _json_ready(values.get(pieces[0].name))
        return fill_text(body, values, env)
    if isinstance(body, dict):
        return {k: fill_body(v, values, env) for k, v in body.items()}
    if isinstance(body, list):
        return [fill_body(v, values, env) for v in body]
    return body
