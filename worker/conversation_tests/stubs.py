"""The business's systems, stubbed for one case: a local aiohttp server that answers each action
the case declares (status, JSON body, delay) and records every request (method, path, query,
JSON body).

Each action's URL starts with a `${VAR}` (the spec loader requires it, or an http(s) URL); the
runner points every such variable at `http://127.0.0.1:PORT/VAR`, so a request's path names the
action: the rest of the action's URL template, with `{placeholders}` matching any value."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from actions import templating
from actions.spec import ActionSpec
from worker.conversation_tests.model import Stub

PLACEHOLDER_VALUE = "conversation-test"  # what a ${VAR} the URL does not start with holds (a header's token)


class RecordedCall(dict[str, Any]):
    """One request: name (None: it matched no action), method, path, query, body, answered (status)."""

    @property
    def name(self) -> str | None:
        return self["name"]


@dataclass
class _Route:
    action: ActionSpec
    method: str
    path: re.Pattern[str]


@dataclass
class StubServer:
    """Start with `await server.start()`; `env` is what the actions' ${VAR}s read."""

    actions: list[ActionSpec]
    stubs: dict[str, Stub]
    calls: list[RecordedCall] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unroutable: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    _routes: list[_Route] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._routes, self.env = self._plan(f"http://127.0.0.1:{port}")

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _plan(self, base: str) -> tuple[list[_Route], dict[str, str]]:
        routes: list[_Route] = []
        env: dict[str, str] = {}
        for action in self.actions:
            pieces = templating.scan(action.url)[0]
            for name in action.env_names():
                env.setdefault(name, PLACEHOLDER_VALUE)
            if not pieces or not isinstance(pieces[0], templating.Env):
                self.unroutable.append(f"action {action.name}: its url does not start with a ${{VAR}}, so the test "
                                       f"cannot point it at a stub ({action.url})")
                continue
            var = pieces[0].name
            env[var] = f"{base}/{var}"
            pattern = "/" + re.escape(var)
            for piece in pieces[1:]:
                if isinstance(piece, str):
                    literal = piece.split("?", 1)[0]
                    pattern += re.escape(literal)
                    if "?" in piece:
                        break
                elif isinstance(piece, templating.Env):
                    pattern += "[^?]*"
                else:
                    pattern += "[^/?]*"
            routes.append(_Route(action=action, method=action.method, path=re.compile(pattern)))
        return routes, env

    def _route(self, method: str, path: str) -> ActionSpec | None:
        for route in self._routes:
            if route.method == method and route.path.fullmatch(path):
                return route.action
        return None

    async def _answer(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        action = self._route(request.method, request.path)
        call = RecordedCall(name=action.name if action else None, method=request.method, path=request.path,
                            query=dict(parse_qsl(request.query_string, keep_blank_values=True)), body=body,
                            status=None, key=request.headers.get("Idempotency-Key"))
        self.calls.append(call)
        if action is None:
            self.problems.append(f"a request {request.method} {request.path} matched no action of the worker")
            call["status"] = 404
            return web.json_response({"error": "no action of the worker has this URL"}, status=404)
        stub = self.stubs.get(action.name)
        if stub is None:
            problem = f"action {action.name} was called but the case declares no stub for it (add `stubs: {{{action.name}: {{status: 200, body: {{...}}}}}}`)"
            if problem not in self.problems:
                self.problems.append(problem)
            call["status"] = 501
            return web.json_response({"error": "no stub declared for this action"}, status=501)
        earlier = sum(1 for c in self.calls[:-1] if c["name"] == action.name)
        answer = stub.answer(earlier)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        call["status"] = answer.status
        return web.json_response(answer.body, status=answer.status)
