"""Bounds a worker spec's YAML must respect before it is built into objects.

PyYAML builds nested collections recursively (5,000 nested lists end in a RecursionError
and a 3,000-line traceback) and an alias is one more reference to its anchor's value, so a
few lines of anchors ("billion laughs") become millions of values once pydantic walks them.
We read the event stream, which PyYAML produces without recursion, and stop at the first
event past a bound, with its line and path: nothing has been built yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

# A real spec is at most ~15 levels deep (escalation conditions nest all/any/not); 32 leaves room.
MAX_DEPTH = 32
# Values after expanding aliases; the bundled examples have a few hundred.
MAX_VALUES = 50_000
# The whole file, refused before it is parsed: the bundled examples are a few KB, and a
# 50 MB file took nearly a minute to parse and check.
MAX_SPEC_BYTES = 1024 * 1024
# Characters in one number: int() refuses more than 4,300 digits, and a spec's numbers are small.
MAX_NUMBER_CHARS = 100


@dataclass
class LimitExceeded(Exception):
    line: int
    path: str
    message: str


@dataclass
class _Open:
    """A mapping or sequence being read: where we are in it, for the path of an error."""

    is_mapping: bool
    anchor: str | None
    start_total: int
    index: int = -1
    key: Any = None
    deepest: int = 0  # the deepest level (stack length) reached inside it, aliases counted
    at_key: bool = True
    item_is_key: bool = False


def _path(stack: list[_Open]) -> str:
    parts: list[str] = []
    for frame in stack:
        if frame.is_mapping:
            if not frame.item_is_key and frame.key is not None:
                parts.append(str(frame.key))
        elif frame.index >= 0:
            parts.append(str(frame.index))
    if len(parts) > 8:  # a path as deep as the limit would fill the screen
        return ".".join(parts[:4]) + "..." + ".".join(parts[-3:])
    return ".".join(parts)


def check_limits(text: str, loader: type[yaml.SafeLoader]) -> None:
    """Raise LimitExceeded at the first event nested deeper than MAX_DEPTH (an alias counted
    as deep as its anchor's value), at an alias to a value that contains it, or once the spec expands past MAX_VALUES values.
    YAML syntax errors are left to the real load, which reports them."""
    stack: list[_Open] = []
    sizes: dict[str, int] = {}  # anchor -> values it stands for, once its node is complete
    spans: dict[str, int] = {}  # anchor -> levels its node spans (0 for a scalar)
    total = 0

    def begin_item() -> None:
        if not stack:
            return
        parent = stack[-1]
        if parent.is_mapping:
            parent.item_is_key = parent.at_key
        else:
            parent.index += 1

    def end_item(scalar: str | None) -> None:
        if not stack:
            return
        parent = stack[-1]
        if parent.is_mapping:
            if parent.item_is_key:
                parent.key = scalar if scalar is not None else "?"
            parent.at_key = not parent.item_is_key
            parent.item_is_key = False

    def count(n: int, mark: yaml.Mark) -> None:
        nonlocal total
        total += n
        if total > MAX_VALUES:
            raise LimitExceeded(
                mark.line + 1,
                _path(stack),
                f"the spec expands to more than {MAX_VALUES} values (an alias counts its anchor's values "
                f"again each time it is used); a worker spec needs far fewer",
            )

    try:
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                begin_item()
                if len(stack) >= MAX_DEPTH:
                    raise LimitExceeded(
                        event.start_mark.line + 1,
                        _path(stack),
                        f"nested more than {MAX_DEPTH} levels deep; a worker spec needs far fewer",
                    )
                count(1, event.start_mark)
                stack.append(_Open(isinstance(event, yaml.MappingStartEvent), event.anchor, total - 1,
                                   deepest=len(stack) + 1))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = stack.pop()
                if frame.anchor is not None:
                    sizes[frame.anchor] = total - frame.start_total
                    spans[frame.anchor] = frame.deepest - len(stack)
                if stack:
                    stack[-1].deepest = max(stack[-1].deepest, frame.deepest)
                end_item(None)
            elif isinstance(event, yaml.ScalarEvent):
                begin_item()
                count(1, event.start_mark)
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                end_item(event.value)
            elif isinstance(event, yaml.AliasEvent):
                begin_item()
                if any(frame.anchor == event.anchor for frame in stack):
                    raise LimitExceeded(
                        event.start_mark.line + 1,
                        _path(stack),
                        f"alias *{event.anchor} refers to a value that contains it; a spec cannot be recursive",
                    )
                count(sizes.get(event.anchor, 1), event.start_mark)
                # An alias nests its anchor's levels where it is used: forty anchors of 25
                # levels, each holding the next alias, are 1,000 levels deep once built.
                reached = len(stack) + spans.get(event.anchor, 0)
                if reached > MAX_DEPTH:
                    raise LimitExceeded(
                        event.start_mark.line + 1,
                        _path(stack),
                        f"alias *{event.anchor} nests its value more than {MAX_DEPTH} levels deep; "
                        "a worker spec needs far fewer",
                    )
                if stack:
                    stack[-1].deepest = max(stack[-1].deepest, reached)
                end_item(None)
    except yaml.YAMLError:
        return
