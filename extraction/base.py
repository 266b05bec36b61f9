"""The one interface every extractor speaks: text + field definitions + context in,
grounded values out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from extraction.fields import FieldSpec


class Extracted(BaseModel):
    """A value for one field, tied to the span of the person's text it came from."""

    field: str
    value: Any = Field(description="Normalised, JSON-ready: dates ISO, times HH:MM, counts int.")
    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    confidence: float = Field(ge=0, le=1)


class ExtractionContext(BaseModel):
    requested: list[str] = Field(default_factory=list, description="Fields the worker just asked for.")
    now: datetime = Field(description="When the message was sent; relative dates resolve against it.")
    filled: list[str] = Field(default_factory=list, description="Fields that already have a value.")


class Extractor(Protocol):
    def extract(self, text: str, fields: Sequence[FieldSpec], context: ExtractionContext) -> list[Extracted]:
        """Every value found for the given fields, each grounded in `text`."""
        ...


def grounded(text: str, items: list[Extracted]) -> list[Extracted]:
    """Keep only values whose span really is a piece of `text`; nothing else may be stored."""
    return [
        e for e in items
        if 0 <= e.start < e.end <= len(text) and text[e.start : e.end] == e.text and e.text.strip()
    ]
