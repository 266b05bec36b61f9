"""What a spec says about an action (an HTTP request to the business's system) and about an
outcome delivery (the finished record POSTed to the business).

    actions:
      - name: availability
        method: GET
        url: "${BOOKING_API}/availability?date={date}&time={time}&people={people}"
        headers: {Authorization: "Bearer ${BOOKING_TOKEN}"}
        timeout: 3
        retries: 2
        backoff: 0.5
        result:
          type: object
          required: [available]
          properties:
            available: {type: boolean}
            times: {type: array, items: {type: string, format: time}}
        on_error: {say: "I can't reach the booking book right now.", then: handoff}

Two kinds of check. The models refuse what is wrong in the action itself (an inline secret, a bad
schema, a malformed template) with pydantic's path to the place. `problems(fields, results)`
refuses what only the whole worker can know (a template naming a field the worker does not
have, or a result no earlier action declares), each problem starting with its path, as
`WorkerSpec` reports template problems.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actions import templating
from actions.schema import ResultSchema
from extraction.fields import IDENTIFIER

_ENV_ONLY = r"^\$\{[A-Z_][A-Z0-9_]*\}$"
# A person waits while a call runs; a failing one must give up within this.
MAX_CALL_SECONDS = 120.0


class ActionSpecError(ValueError):
    """A mistake in an action or delivery spec; every line starts with the field path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _header_problems(headers: dict[str, str]) -> list[str]:
    found = []
    for name, value in headers.items():
        found += [f"headers.{name}: {p}" for p in templating.scan(value)[1]]
        if templating.is_secret_name(name) and templating.inline_secret(value):
            found.append(f"headers.{name}: a secret written inline; write it as ${{VAR}} "
                         f"(e.g. \"Bearer ${{API_TOKEN}}\") and set the variable where the worker runs")
    return found


class OnError(_Strict):
    """What the step does when the action fails (timeout, 5xx after retries, a response outside
    its schema, malformed JSON, a refusal): the engine says `say`, then does `then`."""

    say: str | None = Field(None, description="A line said to the person; may quote fields, not results.")
    then: Literal["handoff", "retry_later", "continue", "end"] = Field(
        "handoff", description="handoff: to a person; retry_later: ask again on the next turn; "
                               "continue: go on to the next step; end: end the conversation.")
    reason: str = Field("The system could not be reached.", description="For a handoff: why, for the team.")


class ActionSpec(_Strict):
    """One HTTP request to the business's system and the shape of its answer."""

    name: str = Field(pattern=IDENTIFIER, description="Results are named after it: availability.available.")
    description: str = ""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(description="Template: {field} values are URL-encoded; ${VAR} from the environment.")
    headers: dict[str, str] = Field(default_factory=dict, description="Secrets only as ${VAR}.")
    body: dict[str, Any] | list[Any] | None = Field(
        None, description="JSON body template; a string that is one placeholder keeps the value's type.")
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds for one attempt.")
    retries: int = Field(2, ge=0, le=10, description="Attempts after the first, on a timeout, 429 or 5xx.")
    backoff: float = Field(0.5, ge=0, le=30, description="Seconds before the first retry, doubling after each.")
    result: ResultSchema | None = Field(None, description="The response's declared shape (an object); "
                                                          "none: the body is not read.")
    on_error: OnError = Field(default_factory=OnError)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _safe(self) -> ActionSpec:
        found = [f"url: {p}" for p in templating.scan(self.url)[1]]
        found += [f"url: {p}" for p in templating.url_problems(self.url)]
        pieces = templating.scan(self.url)[0]
        from_env = bool(pieces) and isinstance(pieces[0], templating.Env)
        if not from_env and not self.url.startswith(("http://", "https://")):
            found.append("url: must start with http:// or https:// (or a ${VAR} that holds the base URL)")
        found += _header_problems(self.headers)
        for path, text, key in templating.strings_in(self.body, "body"):
            found += [f"{path}: {p}" for p in templating.scan(text)[1]]
            if key and templating.is_secret_name(key) and templating.inline_secret(text) and not templating.refs(text):
                found.append(f"{path}: a secret written inline; write it as ${{VAR}}")
        if self.method == "GET" and self.body is not None:
            found.append("body: a GET request has no body; put the values in the url")
        if self.result is not None and self.result.type != "object":
            found.append("result: must be an object, so its properties become named results")
        if self.worst_case_seconds() > MAX_CALL_SECONDS:
            found.append(f"timeout, retries, backoff: a failing call would hold the turn for up to "
                         f"{self.worst_case_seconds():.0f} s; at most {MAX_CALL_SECONDS:.0f} s")
        if found:
            raise ValueError("\n".join(found))
        return self

    def worst_case_seconds(self) -> float:
        """How long a call may take when every attempt times out (for a voice holding line)."""
        return self.timeout * (self.retries + 1) + sum(self.backoff * 2 ** i for i in range(self.retries))

    def templates(self) -> list[tuple[str, str]]:
        """Every template string of the request, with its path inside the action."""
        out = [("url", self.url)] + [(f"headers.{k}", v) for k, v in self.headers.items()]
        return out + [(path, text) for path, text, _ in templating.strings_in(self.body, "body")]

    def env_names(self) -> list[str]:
        """The environment variables the request needs (check them at start-up)."""
        return list(dict.fromkeys(n for _, text in self.templates() for n in templating.env_names(text)))

    def result_names(self) -> dict[str, ResultSchema]:
        """`availability.available` -> its schema, for conditions and lines to test and quote."""
        return self.result.names(self.name) if self.result is not None else {}

    def problems(self, fields: Iterable[str], results: Iterable[str] = (), where: str = "") -> list[str]:
        """Placeholders naming something the worker does not have: not a field, not an extra,
        not a result of an action that runs earlier. `where` prefixes each path."""
        known = set(fields) | templating.TEMPLATE_EXTRAS | set(results)
        prefix = f"{where}." if where else ""
        found = []
        for path, text in self.templates():
            for name in templating.refs(text):
                if name not in known:
                    kind = "result" if "." in name else "field"
                    found.append(f"{prefix}{path}: {{{name}}} is not a {kind} this action can use")
        return found

    def check(self, fields: Iterable[str], results: Iterable[str] = (), where: str = "") -> None:
        found = self.problems(fields, results, where)
        if found:
            raise ActionSpecError("\n".join(found))


class OutcomeDeliverySpec(_Strict):
    """Where the finished record of a conversation goes: a signed POST, through an outbox."""

    name: str = Field("outcome", pattern=IDENTIFIER, description="Tells two deliveries of one worker apart.")
    url: str = Field(description="Where to POST; ${VAR} allowed (no field placeholders).")
    secret: str = Field(pattern=_ENV_ONLY, description="${VAR} holding the HMAC-SHA256 key; never inline.")
    outcomes: list[str] | None = Field(None, description="Only these outcomes (default: every one).")
    headers: dict[str, str] = Field(default_factory=dict, description="Secrets only as ${VAR}.")
    timeout: float = Field(10.0, gt=0, le=60)

    @field_validator("secret", mode="before")
    @classmethod
    def _no_inline_secret(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(_ENV_ONLY, value):
            raise ValueError("the signing secret is written ${VAR} (the variable holds it), never inline")
        return value

    @model_validator(mode="after")
    def _safe(self) -> OutcomeDeliverySpec:
        found = [f"url: {p}" for p in templating.scan(self.url)[1]]
        found += [f"url: {p}" for p in templating.url_problems(self.url)]
        found += [f"url: {{{name}}}: a delivery URL takes no field placeholders" for name in templating.refs(self.url)]
        found += _header_problems(self.headers)
        found += [f"headers.{k}: {{{name}}}: delivery headers take no field placeholders"
                  for k, v in self.headers.items() for name in templating.refs(v)]
        if found:
            raise ValueError("\n".join(found))
        return self

    def wants(self, outcome: str) -> bool:
        return self.outcomes is None or outcome in self.outcomes

    def env_names(self) -> list[str]:
        texts = [self.url, self.secret, *self.headers.values()]
        return list(dict.fromkeys(n for text in texts for n in templating.env_names(text)))
