"""Load a worker spec from YAML and explain what is wrong in the person's own terms.

Every problem is reported as `file:line: field.path: message`. We keep the YAML node
tree beside the parsed data so a pydantic error location (`fields.2.type`) can be
turned back into the line the author wrote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dialogue.spec import WorkerSpec
from dialogue.yaml_limits import MAX_NUMBER_CHARS, MAX_SPEC_BYTES, LimitExceeded, check_limits
from extraction.fields import IDENTIFIER

M = TypeVar("M", bound=BaseModel)
_PATH_IN_MESSAGE = re.compile(r"^(?:Value error, )?((?:[a-z_]+)(?:\.[A-Za-z0-9_]+)+)\b")
# A model's own check names the place inside it ("headers.Authorization: a secret written inline").
_INNER_PATH = re.compile(r"^(?:Value error, )?((?:[a-z_]+)(?:\.[A-Za-z0-9_]+)*): ")


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


class _BadValue(Exception):
    """A node that YAML parsed but we will not build (an unhashable key, an over-long
    number, a value its explicit tag cannot read); reported at the node's line and path."""

    def __init__(self, node: yaml.Node, message: str):
        self.node = node
        self.message = message
        super().__init__(message)


class _SpecYamlLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent source of wrong specs) and reports
    any value it cannot build as a problem at that value's line instead of an exception."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's scalar constructors call int(), float(), datetime() and dict lookups on
        # the author's text (`!!int x`, `!!bool maybe`, `!!timestamp 2020-13-45`) and let
        # ValueError/TypeError/... escape with no line; give them this node's line.
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            raise _BadValue(node, f"{_cannot_read(node)}: {exc}") from None
        except (KeyError, AttributeError, IndexError):  # their text says nothing to the author
            raise _BadValue(node, _cannot_read(node)) from None


# No spec key holds a YAML timestamp (dates in a spec are days from today or template
# formats), so an unquoted `2020-13-45` or `2026-11-24` stays the text the author wrote
# instead of becoming a date, or a ValueError for an impossible one.
_SpecYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _cannot_read(node: yaml.Node) -> str:
    tag = node.tag.removeprefix("tag:yaml.org,2002:")
    if isinstance(node, yaml.ScalarNode):
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return f"cannot read {text!r} as !!{tag}"
    return f"cannot read this {_kind(node)} as !!{tag}"


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return "value"


def _construct_mapping(loader: _SpecYamlLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key_node, yaml.ScalarNode) or not isinstance(key, Hashable):
            # `? [a, b] : x` is valid YAML but no spec key is a list or a mapping.
            raise _BadValue(key_node, f"a key must be a plain name, not a {_kind(key_node)}")
        if key in seen:
            raise yaml.MarkedYAMLError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


def _construct_number(loader: _SpecYamlLoader, node: yaml.ScalarNode) -> Any:
    # int() refuses more than 4,300 digits with a ValueError, and a long YAML 1.1
    # base-60 number (1:2:3:...) costs quadratic time; no spec number is anywhere near this.
    text = loader.construct_scalar(node)
    if len(text) > MAX_NUMBER_CHARS:
        raise _BadValue(node, f"a number of {len(text)} characters is too long; a spec's numbers have at most "
                              f"{MAX_NUMBER_CHARS}")
    if node.tag == "tag:yaml.org,2002:int":
        return loader.construct_yaml_int(node)
    return loader.construct_yaml_float(node)


_SpecYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_SpecYamlLoader.add_constructor("tag:yaml.org,2002:int", _construct_number)
_SpecYamlLoader.add_constructor("tag:yaml.org,2002:float", _construct_number)


def _path_of(root: yaml.Node | None, target: yaml.Node) -> str:
    """Dotted path of `target` in the tree (its mapping's path for a key), as pydantic would say it."""
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())] if root is not None else []
    while stack:  # depth is bounded by check_limits, but a loop needs no bound at all
        node, path = stack.pop()
        if node is target:
            return ".".join(path)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node is target:
                    return ".".join(path)
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((value_node, (*path, name)))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*path, str(i))) for i, item in enumerate(node.value)]
    return ""


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
    return parse_model(text, file, WorkerSpec, "a worker spec must be a mapping of keys such as name, script, fields")


def parse_model(text: str, file: str, model: type[M], not_a_mapping: str, context: dict[str, Any] | None = None) -> M:
    """Parse YAML `text` into `model` with the spec's safe loader and limits; every problem is a
    `SpecProblem` at its file and line (other YAML formats, such as conversation tests, reuse it).
    `context` is pydantic's validation context, for checks that need more than the file."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SPEC_BYTES:
        raise SpecError([SpecProblem(file, None, "", _too_big(size))])
    try:
        check_limits(text, _SpecYamlLoader)
    except LimitExceeded as exc:
        raise SpecError([SpecProblem(file, exc.line, exc.path, exc.message)]) from None
    root: yaml.Node | None = None
    loader: _SpecYamlLoader | None = None
    try:
        loader = _SpecYamlLoader(text)  # its reader refuses control characters such as NUL here
        # One parse: the tree we build from is the tree a problem's line and path are read from.
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except _BadValue as exc:
        line = exc.node.start_mark.line + 1
        raise SpecError([SpecProblem(file, line, _path_of(root, exc.node), exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError([SpecProblem(file, line, "", f"not valid YAML: {exc.problem or exc}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        message = f"not valid YAML: {exc.reason}, character #x{exc.character:04x}"
        raise SpecError([SpecProblem(file, line, "", message)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecProblem(file, None, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:  # check_limits bounds the depth; this is only a second guard
        raise SpecError([SpecProblem(file, None, "", "nested too deeply")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(file, 1, "", not_a_mapping)])
    try:
        return model.model_validate(data, context=context)
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
        else:
            inner = _INNER_PATH.match(message)
            if inner and _line_of(root, loc + (inner.group(1).split(".")[0],)) != _line_of(root, loc):
                loc += tuple(int(p) if p.isdigit() else p for p in inner.group(1).split("."))
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
        if len(lines) == 1:
            out.append(err)
            continue
        out += [{**err, "msg": line} for line in lines]
    return out


def load_spec(path: str | Path) -> WorkerSpec:
    return parse_spec(read_limited(path), str(path))


def read_limited(path: str | Path) -> str:
    """The UTF-8 text of a YAML file of at most MAX_SPEC_BYTES, or a SpecError saying why not."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            # Read one byte past the limit, never the whole of a 50 MB file (or /dev/zero).
            raw = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([SpecProblem(str(p), None, "", "file not found")]) from None
    except OSError as exc:
        raise SpecError([SpecProblem(str(p), None, "", f"cannot read: {exc}")]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError([SpecProblem(str(p), None, "", _too_big(_size_of(p, len(raw))))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([SpecProblem(str(p), None, "", f"cannot read: {exc}")]) from None
    return text


def _size_of(p: Path, at_least: int) -> int:
    try:
        return max(p.stat().st_size, at_least)
    except OSError:
        return at_least


def _too_big(size: int) -> str:
    return (f"the file is {size:,} bytes; a worker spec may be at most {MAX_SPEC_BYTES:,} bytes "
            f"({MAX_SPEC_BYTES // 1024 // 1024} MiB), far more than any real spec needs")


def spec_json_schema() -> str:
    schema = WorkerSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "channel-worker worker spec"
    return json.dumps(schema, indent=2)
