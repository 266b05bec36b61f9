"""Load a worker spec from YAML and explain what is wrong in the person's own terms.

Every problem is reported as `file:line: field.path: message`. We keep the YAML node
tree beside the parsed data so a pydantic error location (`fields.2.type`) can be
turned back into the line the author wrote.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dialogue.spec import WorkerSpec
from dialogue.yaml_limits import LimitExceeded, check_limits
from extraction.fields import IDENTIFIER

_PATH_IN_MESSAGE = re.compile(r"^(?:Value error, )?((?:[a-z_]+)(?:\.[A-Za-z0-9_]+)+)\b")


@dataclass(frozen=True)
class SpecProblem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be used; `problems` lists every reason with its location."""

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, a silent source of wrong specs."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.MarkedYAMLError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node of `loc` that exists in the YAML tree."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds union member names (e.g. 'IntentCondition') into locations; drop them.
    return tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))


def parse_spec(text: str, file: str = "<spec>") -> WorkerSpec:
    try:
        check_limits(text, _UniqueKeyLoader)
    except LimitExceeded as exc:
        raise SpecError([SpecProblem(file, exc.line, exc.path, exc.message)]) from None
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError([SpecProblem(file, line, "", f"not valid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem(file, None, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:  # check_limits bounds the depth; this is only a second guard
        raise SpecError([SpecProblem(file, None, "", "nested too deeply")]) from None
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(file, 1, "", "a worker spec must be a mapping of keys such as name, script, fields")])
    try:
        return WorkerSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems(exc, root, file)) from None
    except RecursionError:
        raise SpecError([SpecProblem(file, None, "", "nested too deeply")]) from None


def _problems(exc: ValidationError, root: yaml.Node | None, file: str) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    seen: set[tuple[str, str]] = set()
    for err in _one_per_line(exc.errors()):
        loc = _clean_loc(tuple(err["loc"]))
        message = err["msg"]
        if not loc:
            match = _PATH_IN_MESSAGE.match(message)
            if match:
                loc = tuple(int(p) if p.isdigit() else p for p in match.group(1).split("."))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == IDENTIFIER:
            message = "must start with a lowercase letter and use only lowercase letters, digits and _"
        if err["type"] == "missing" and loc:
            message = f"missing required key {loc[-1]!r}"
        if err["type"] == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}" if loc else message
        path = ".".join(str(p) for p in loc)
        message = message.removeprefix(f"{path}: ") if path else message  # said once, before the message
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(SpecProblem(file, _line_of(root, loc), path, message))
    return problems


def _one_per_line(errors: list[Any]) -> list[Any]:
    """A spec-wide check reports several problems as one error, a line each with its own
    path (see WorkerSpec._check_templates); split them so each gets its own line number."""
    out: list[Any] = []
    for err in errors:
        lines = err["msg"].split("\n")
        if len(lines) == 1 or err["loc"]:
            out.append(err)
            continue
        out += [{**err, "msg": line} for line in lines]
    return out


def load_spec(path: str | Path) -> WorkerSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecProblem(str(p), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecProblem(str(p), None, "", f"cannot read: {exc}")]) from None
    return parse_spec(text, str(p))


def spec_json_schema() -> str:
    schema = WorkerSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "channel-worker worker spec"
    return json.dumps(schema, indent=2)
