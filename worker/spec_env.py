"""The environment a spec's actions and deliveries need (`${VAR}` in their URLs, headers and
secrets), checked when the worker starts: a missing variable is named at once, with what it
breaks, instead of surfacing as a failed call in the middle of someone's conversation."""

from __future__ import annotations

from collections.abc import Mapping

from dialogue.spec import WorkerSpec


def missing_variables(spec: WorkerSpec, environ: Mapping[str, str]) -> list[str]:
    """One readable line per variable not set, naming the actions and deliveries that use it."""
    users: dict[str, list[str]] = {}
    for action in spec.actions:
        for name in action.env_names():
            users.setdefault(name, []).append(f"action {action.name}")
    for delivery in spec.on_outcome:
        for name in delivery.env_names():
            users.setdefault(name, []).append(f"outcome delivery {delivery.name}")
    return [f"{name} is not set: {', '.join(used)} will fail (their on_error runs; deliveries wait in the outbox)"
            for name, used in users.items() if not environ.get(name)]
