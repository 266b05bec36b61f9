"""Imports run one way and never in a circle.

The layers, top to bottom: worker/ (the composition root) -> channels/ -> the core (dialogue/,
actions/, escalation/, extraction/) -> transcripts/ -> storage/. A package imports only packages below it;
inside the core, dialogue may use actions, escalation and extraction, actions may use escalation and
extraction (an action is a step dialogue runs), escalation may use extraction.
storage/ (connection, migrations, checkpoints, outbox timing) is the bottom: it imports none of
our packages, and every other package may import it.
Channels do not import each other; what SMS and voice share about Twilio is channels/twilio/.

Every import statement counts: at the top of a module, inside a function (a deferred import is
still a dependency) and under `if TYPE_CHECKING:` (the types tie the two modules together).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "channels", "dialogue", "actions", "escalation", "extraction", "transcripts", "storage")

# Which of our packages each package may import (itself always).
MAY_IMPORT: dict[str, set[str]] = {
    "worker": {"channels", "dialogue", "actions", "escalation", "extraction", "transcripts", "storage"},
    "channels": {"dialogue", "actions", "escalation", "extraction", "transcripts", "storage"},
    "dialogue": {"actions", "escalation", "extraction", "transcripts", "storage"},
    "actions": {"escalation", "extraction", "transcripts", "storage"},
    "escalation": {"extraction", "transcripts", "storage"},
    "extraction": {"transcripts", "storage"},
    "transcripts": {"storage"},
    "storage": set(),
}
SHARED_CHANNEL_PARTS = {"twilio", "seam"}  # channels/<x>/ or channels/<x>.py used by every channel

# Known, named and not yet fixed: module -> the package it may still import against the layers
# (test_no_package_imports_upward fails once an entry is no longer used). None now.
PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (a module of ours when it resolves to one)
    line: int

    def __str__(self) -> str:
        return f"{self.source} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of a dotted name that is one of our modules (`dialogue.events.Turn`
    -> `dialogue.events`), or the name itself when none is."""
    candidate = name
    while candidate:
        if candidate in modules:
            return candidate
        candidate = candidate.rpartition(".")[0]
    return name


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    return imports_in(module, path.read_text(encoding="utf-8"), path.name == "__init__.py", modules)


def imports_in(module: str, source: str, is_package: bool, modules: dict[str, Path]) -> list[Import]:
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, _resolve(alias.name, modules), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, one level up per extra dot
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # `from a.b import c` imports module a.b.c when there is one, else a name in a.b.
            found += [Import(module, _resolve(f"{origin}.{alias.name}", modules), node.lineno) for alias in node.names]
    return found


def all_imports() -> list[Import]:
    modules = our_modules()
    ours = set(PACKAGES)
    return [
        imp for name, path in modules.items() for imp in imports_of(name, path, modules)
        if imp.target.split(".")[0] in ours
    ]


def layer_violations(imports: list[Import], pending: dict[str, str] | None = None) -> list[str]:
    problems = []
    for imp in imports:
        source, target = imp.source.split(".")[0], imp.target.split(".")[0]
        if pending and pending.get(imp.source) == target:
            continue
        if target in MAY_IMPORT and source != target and target not in MAY_IMPORT[source]:
            allowed = ", ".join(f"{p}/" for p in sorted(MAY_IMPORT[source]))
            rule = f"{source}/ may import only {allowed}" if allowed else f"{source}/ imports none of our other packages"
            problems.append(f"{imp}: {rule}")
    return list(dict.fromkeys(problems))  # `from a import b, c` is one line to fix


def channel_crossings(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        source, target = imp.source.split("."), imp.target.split(".")
        if source[0] != "channels" or target[0] != "channels" or len(target) < 2:
            continue
        # The channel a module belongs to (channels/<x>/...), None for a module directly in channels/.
        own = source[1] if len(source) > 1 and (ROOT / "channels" / source[1]).is_dir() else None
        if target[1] != own and target[1] not in SHARED_CHANNEL_PARTS:
            problems.append(f"{imp}: one channel does not import another (shared parts: "
                            f"{', '.join(f'channels/{p}' for p in sorted(SHARED_CHANNEL_PARTS))})")
    return list(dict.fromkeys(problems))


def cycles(imports: list[Import]) -> list[list[str]]:
    """The import cycles between our modules: every strongly connected component of the module
    graph with more than one module, or a module importing itself (Tarjan)."""
    graph: dict[str, set[str]] = {name: set() for name in our_modules()}
    for imp in imports:
        if imp.target in graph:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        # Recursive: the graph is a few hundred modules deep at most.
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _the_scan_sees_imports_at_every_level() -> None:
    """The scanner itself, so a scan that found nothing cannot pass: relative, deferred and
    type-only imports are all found, and one against the layers is reported."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .events import Turn\n"
        "if TYPE_CHECKING:\n"
        "    from escalation.rules import Rule\n"
        "def later():\n"
        "    import channels.sms.webhook\n"
    )
    modules = {name: ROOT for name in ("dialogue.events", "escalation.rules", "channels.sms.webhook")}
    found = imports_in("dialogue.probe", source, False, modules)
    assert {(i.target, i.line) for i in found} == {
        ("typing.TYPE_CHECKING", 1), ("dialogue.events", 2), ("escalation.rules", 4), ("channels.sms.webhook", 6),
    }
    assert layer_violations(found) == [
        "dialogue.probe (line 6) imports channels.sms.webhook: dialogue/ may import only "
        "actions/, escalation/, extraction/, storage/, transcripts/",
    ]


def test_no_package_imports_upward() -> None:
    _the_scan_sees_imports_at_every_level()
    imports = all_imports()
    problems = layer_violations(imports, PENDING)
    assert not problems, "imports against the layers:\n  " + "\n  ".join(problems)
    fixed = [f"{module} -> {package}/" for module, package in PENDING.items()
             if not any(i.source == module and i.target.split(".")[0] == package for i in imports)]
    assert not fixed, "no longer imported against the layers; delete from PENDING: " + ", ".join(fixed)


def test_no_channel_imports_another_channel() -> None:
    problems = channel_crossings(all_imports())
    assert not problems, "imports between channels:\n  " + "\n  ".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(all_imports())
    edges = {(i.source, i.target): i for i in all_imports()}
    described = []
    for component in found:
        members = set(component)
        described.append("; ".join(str(imp) for (s, t), imp in sorted(edges.items()) if s in members and t in members))
    assert not found, "import cycles:\n  " + "\n  ".join(described)


def test_storage_is_the_bottom_layer() -> None:
    """storage/ (the database, migrations, checkpoints) imports none of our packages;
    transcripts/ sits just above it and may import storage/ only; everything else may use storage/."""
    probe = [
        Import("storage.db", "transcripts.store", 1),
        Import("transcripts.store", "storage.db", 2),
        Import("transcripts.store", "dialogue.events", 3),
        Import("channels.sms.store", "storage.db", 4),
        Import("worker.app", "storage.migrations", 5),
    ]
    assert layer_violations(probe) == [
        "storage.db (line 1) imports transcripts.store: storage/ imports none of our other packages",
        "transcripts.store (line 3) imports dialogue.events: transcripts/ may import only storage/",
    ]


def test_every_package_in_the_map_exists() -> None:
    """A package named in the map but missing would be scanned as empty and pass unseen."""
    assert set(MAY_IMPORT) == set(PACKAGES)
    missing = [p for p in PACKAGES if not (ROOT / p / "__init__.py").is_file()]
    assert not missing, f"packages in the layer map with no __init__.py: {missing}"
