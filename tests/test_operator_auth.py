"""Only operators reach the queue, conversations, figures and API docs: every such route refuses
anonymous callers, roles limit what each operator may do, queue actions are recorded under the
authenticated name, failures are limited, and operators and tokens are stored as hashes only."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import WebSocketRoute

from dialogue.spec import WorkerSpec
from escalation.operators import OperatorStore
from storage.db import is_postgres_url
from tests.conftest import ROOT
from tests.support.server import WorkerServer
from transcripts.store import TranscriptStore
from worker.app import create_app
from worker.config import Settings
from worker.operator_auth import FailureLimiter, LimitReached, hash_password, new_token, verify_password

WORKER = "tests/data/specs/account_support.yaml"
PASSWORD = "correct horse battery staple"
# (method, path) pairs anyone may call: health (no data in it) and Twilio's webhooks, which
# check Twilio's signature instead. Any other route must refuse a caller without credentials.
PUBLIC = {("GET", "/healthz"), ("POST", "/twilio/sms"), ("POST", "/twilio/sms/status"),
          ("POST", "/twilio/voice"), ("WEBSOCKET", "/twilio/media"),
          # The review console's login form (CSRF-checked, rate-limited) and its static files.
          ("GET", "/review/login"), ("POST", "/review/login"), ("POST", "/review/logout"), ("GET", "/review/static/{name}")}


async def add_operator(database_url: str, name: str, role: str, password: str = PASSWORD) -> None:
    store = await TranscriptStore.open(database_url)
    try:
        await OperatorStore(store.db).add_user(name, role, hash_password(password))  # type: ignore[arg-type]
    finally:
        await store.close()


def cli(*args: str, var: Path, database_url: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CHANNEL_WORKER_VAR"] = str(var)
    if database_url and is_postgres_url(database_url):
        env["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, input=stdin, timeout=120)


def db_env(database_url: str) -> dict[str, str]:
    """For a served worker: PostgreSQL through DATABASE_URL, SQLite as the default file under var/."""
    return {"DATABASE_URL": database_url} if is_postgres_url(database_url) else {}


# --- hashes and the limiter ---------------------------------------------------------------------

def test_a_password_hash_is_salted_and_carries_its_parameters() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second and PASSWORD not in first
    assert first.startswith("scrypt$n=32768,r=8,p=1$")
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + "x", first)
    # Checked with the parameters stored beside it, not the current defaults.
    cheap = hash_password(PASSWORD, n=2**10, r=4, p=1)
    assert verify_password(PASSWORD, cheap) and not verify_password("wrong", cheap)


def test_a_stored_hash_that_is_malformed_or_asks_for_absurd_work_never_matches() -> None:
    good = hash_password(PASSWORD)
    greedy = good.replace("n=32768", f"n={2**30}")
    assert not verify_password(PASSWORD, greedy)
    assert not verify_password(PASSWORD, "plain-text-password")
    assert not verify_password(PASSWORD, good.replace("scrypt$", "md5$"))
    assert not verify_password(PASSWORD, "")


def test_failures_are_limited_per_key_within_the_window() -> None:
    now = [1000.0]
    limiter = FailureLimiter(max_failures=10, window=60, clock=lambda: now[0])
    for _ in range(9):
        limiter.failed("addr:10.0.0.1")
    assert limiter.retry_after("addr:10.0.0.1") is None
    limiter.failed("addr:10.0.0.1")
    assert limiter.retry_after("addr:10.0.0.1") == pytest.approx(60)
    assert limiter.retry_after("addr:10.0.0.2") is None  # other keys are not affected
    now[0] += 30
    assert limiter.retry_after("addr:10.0.0.1") == pytest.approx(30)
    now[0] += 30
    assert limiter.retry_after("addr:10.0.0.1") is None  # the window has passed


async def test_checks_count_from_when_they_start_and_successes_are_forgiven() -> None:
    limiter = FailureLimiter(max_failures=3, window=60, clock=lambda: 1000.0)
    keys = ["addr:10.0.0.1", "user:rita"]
    running = [await limiter.acquire(keys) for _ in range(3)]  # three checks not finished yet
    # A fourth waits: the running checks might all succeed.
    fourth = asyncio.ensure_future(limiter.acquire(keys))
    await asyncio.sleep(0)
    assert not fourth.done()
    running[0].done(True)  # the right password: not counted
    running.append(await asyncio.wait_for(fourth, 10))
    for attempt in running[1:]:
        attempt.done(False)
    with pytest.raises(LimitReached) as refused:  # three real failures: refused at once
        await limiter.acquire(keys)
    assert refused.value.retry_after == pytest.approx(60)
    with pytest.raises(LimitReached):
        await limiter.acquire(["user:rita"])


def test_the_limiter_bounds_its_keys_but_never_drops_a_locked_one() -> None:
    now = [1000.0]
    limiter = FailureLimiter(max_failures=2, window=60, clock=lambda: now[0], max_keys=3)
    limiter.failed("user:rita")
    limiter.failed("user:rita")
    # A flood of one-off failures, each from a new address: they make room for each other only.
    for i in range(100):
        limiter.failed(f"addr:10.0.{i // 256}.{i % 256}")
    assert limiter.retry_after("user:rita") == pytest.approx(60)
    # Every key locked: an attempt needing a new key is refused until the first lock ends.
    for _ in range(2):
        limiter.failed("user:ana")
        limiter.failed("user:bob")
    with pytest.raises(LimitReached) as refused:
        limiter.reserve(["addr:10.1.0.1"])
    assert refused.value.retry_after == pytest.approx(60)
    assert limiter.retry_after("user:rita") == pytest.approx(60)
    now[0] += 61
    limiter.reserve(["addr:10.1.0.1"])  # the locks have ended: room again


# --- every operator route needs credentials ----------------------------------------------------

def _route_calls(app) -> list[tuple[str, str]]:  # noqa: ANN001
    """(method, path) of every route the app answers, included routers flattened."""
    calls = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, (APIWebSocketRoute, WebSocketRoute)):
            calls.append(("WEBSOCKET", context.path))
        elif context.methods:
            calls.extend((method, context.path) for method in sorted(context.methods) if method != "HEAD")
        else:
            raise AssertionError(f"a route of unknown kind (a mount?) at {context.path}: {route!r}")
    return calls


def test_every_route_but_health_and_twilio_webhooks_refuses_anonymous_callers(
        database_url: str, tmp_path: Path, account_support: WorkerSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    # SMS on (its routes must stay public and signed) and the API docs on (they must not be).
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", uuid.uuid4().hex)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://worker.example")
    monkeypatch.setenv("TWILIO_API_BASE", "http://127.0.0.1:9")
    monkeypatch.setenv("TWILIO_VOICE", "off")
    monkeypatch.setenv("OPERATOR_API_DOCS", "on")
    asyncio.run(add_operator(database_url, "rita", "reviewer"))
    # A SQLite database_url is a file path: Settings takes it as it is.
    app = create_app(account_support, Settings(database_url=database_url, var_dir=tmp_path / "var"))
    with TestClient(app) as client:
        calls = _route_calls(app)  # after start-up: channels add their routes then
        guarded = [c for c in calls if c not in PUBLIC]
        assert {("GET", "/queue"), ("POST", "/twilio/sms"), ("GET", "/docs"), ("GET", "/openapi.json")} <= set(calls)
        assert len(guarded) >= 11
        for method, path in guarded:
            assert method != "WEBSOCKET", f"websocket {path} is not in the public list and has no operator check"
            url = re.sub(r"\{[^}]+\}", "1", path)
            anonymous = client.request(method, url, json={"by": "mallory"}, follow_redirects=False)
            if path.startswith("/review"):  # the console's pages send a browser to its login form
                assert anonymous.status_code == 303, f"{method} {path} answered {anonymous.status_code} without a session"
                assert anonymous.headers["location"].startswith("/review/login?next=") or (
                    path == "/review" and anonymous.headers["location"] == "/review/conversations")
                continue
            assert anonymous.status_code == 401, f"{method} {path} answered {anonymous.status_code} without credentials"
            assert anonymous.headers["www-authenticate"].startswith('Basic realm="channel-worker"')
        wrong = client.get("/queue", auth=("rita", "not the password"))
        assert wrong.status_code == 401 and "www-authenticate" in wrong.headers
        unknown = client.get("/queue", auth=("nobody", PASSWORD))
        assert unknown.status_code == 401
        assert client.get("/queue", auth=("rita", PASSWORD)).status_code == 200
        assert client.get("/queue", headers={"Authorization": "Bearer cwk_0123456789abcdef_guess"}).status_code == 401
        # The public routes answer as before: health openly, the webhook by Twilio's signature.
        assert client.get("/healthz").status_code == 200
        assert client.post("/twilio/sms", data={"From": "+15550001", "Body": "hi"}).status_code == 403


def test_api_docs_exist_only_when_asked_for_and_then_for_operators(tmp_path: Path, account_support: WorkerSpec,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "var" / "transcripts.sqlite")
    asyncio.run(add_operator(url, "vic", "viewer"))
    monkeypatch.delenv("OPERATOR_API_DOCS", raising=False)
    with TestClient(create_app(account_support, Settings(var_dir=tmp_path / "var"))) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path, auth=("vic", PASSWORD)).status_code == 404
    monkeypatch.setenv("OPERATOR_API_DOCS", "on")
    with TestClient(create_app(account_support, Settings(var_dir=tmp_path / "var"))) as client:
        assert client.get("/docs").status_code == 401
        assert client.get("/docs", auth=("vic", PASSWORD)).status_code == 200
        schema = client.get("/openapi.json", auth=("vic", PASSWORD)).json()
        assert "/queue" in schema["paths"] and "/docs" not in schema["paths"]
        assert {"HTTPBasic", "HTTPBearer"} <= set(schema["components"]["securitySchemes"])


# --- roles, the queue and the audit trail, over a served worker ---------------------------------

def test_operators_work_the_queue_within_their_roles_and_are_recorded_by_name(database_url: str, tmp_path: Path) -> None:
    var = tmp_path / "var"
    # Passwords come on standard input, one line (the newline is not part of it).
    added = cli("users", "add", "rita", "--role", "reviewer", var=var, database_url=database_url, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert cli("users", "add", "vic", "--role", "viewer", var=var, database_url=database_url, stdin=PASSWORD + "\n").returncode == 0
    short = cli("users", "add", "sam", "--role", "admin", var=var, database_url=database_url, stdin="hunter2\n")
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    markup = cli("users", "add", "<b>x</b>", "--role", "admin", var=var, database_url=database_url, stdin=PASSWORD + "\n")
    assert markup.returncode == 2
    created = cli("tokens", "create", "dashboard", "--role", "reviewer", var=var, database_url=database_url)
    token = created.stdout.strip()
    assert created.returncode == 0 and token.startswith("cwk_")
    users = json.loads(cli("users", "list", "--json", var=var, database_url=database_url).stdout)
    assert [(u["name"], u["role"]) for u in users] == [("rita", "reviewer"), ("vic", "viewer")]
    assert PASSWORD not in json.dumps(users)
    tokens = json.loads(cli("tokens", "list", "--json", var=var, database_url=database_url).stdout)
    assert [(t["name"], t["role"]) for t in tokens] == [("dashboard", "reviewer")]
    assert token.split("_", 2)[2] not in json.dumps(tokens)

    conversation = f"op-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "s.txt"
    script.write_text("my account is 12345678\nI want to talk to a human\n")
    cli("chat", "--worker", WORKER, "--script", str(script), "--conversation-id", conversation, var=var, database_url=database_url)

    server = WorkerServer(WORKER, db_env(database_url), var)
    base = server.base_url
    rita, vic, bearer = ("rita", PASSWORD), ("vic", PASSWORD), {"Authorization": f"Bearer {token}"}
    try:
        server.wait_ready()
        # A viewer sees that handoffs wait, not who or what: no packet, no conversation id.
        [seen] = httpx.get(f"{base}/queue", auth=vic).json()
        assert seen["packet"] == {} and seen["conversation_id"] == "" and seen["status"] == "open"
        hid = seen["id"]
        assert httpx.get(f"{base}/metrics", auth=vic).status_code == 200
        assert httpx.get(f"{base}/status", auth=vic).status_code == 200
        for method, path in (("GET", f"/queue/{hid}"), ("GET", f"/queue/conversations/{conversation}"),
                             ("POST", f"/queue/{hid}/claim"), ("POST", f"/queue/{hid}/resolve"),
                             ("POST", f"/queue/{hid}/release")):
            assert httpx.request(method, base + path, auth=vic).status_code == 403, path

        # A reviewer reads the packet; a claim is under the authenticated name, whatever the body says.
        [full] = httpx.get(f"{base}/queue", auth=rita).json()
        assert full["conversation_id"] == conversation
        assert full["packet"]["fields"]["account_number"]["value"] == "12345678"
        claimed = httpx.post(f"{base}/queue/{hid}/claim", json={"by": "<script>mallory</script>"}, auth=rita).json()
        assert claimed["status"] == "claimed" and claimed["claimed_by"] == "rita"
        assert httpx.post(f"{base}/queue/{hid}/claim", headers=bearer).status_code == 409
        resolved = httpx.post(f"{base}/queue/{hid}/resolve", json={"note": "called back"}, headers=bearer)
        assert resolved.json()["status"] == "resolved" and resolved.json()["note"] == "called back"
        audit = httpx.get(f"{base}/queue/conversations/{conversation}", auth=rita).json()["audit"]
        assert [(a["action"], a["inputs"]["by"]) for a in audit if a["kind"] == "queue"] == [
            ("claim", "rita"), ("resolve", "token:dashboard")]

        # Revoked and removed credentials stop working at once.
        assert cli("tokens", "revoke", "dashboard", var=var, database_url=database_url).returncode == 0
        assert httpx.get(f"{base}/queue", headers=bearer).status_code == 401
        assert cli("users", "remove", "vic", var=var, database_url=database_url).returncode == 0
        assert httpx.get(f"{base}/queue", auth=vic).status_code == 401
    finally:
        server.stop()


def test_repeated_failures_are_refused_per_address_and_per_user_name(tmp_path: Path) -> None:
    var = tmp_path / "var"
    for name in ("rita", "vic"):
        assert cli("users", "add", name, "--role", "viewer", var=var, stdin=PASSWORD + "\n").returncode == 0
    server = WorkerServer(WORKER, {}, var)

    def from_address(address: str) -> httpx.Client:
        # Loopback is a whole /8 on Linux: each address is another client to the server.
        return httpx.Client(base_url=server.base_url, transport=httpx.HTTPTransport(local_address=address))

    try:
        server.wait_ready()
        # Ten wrong passwords for rita, each from another address: rita is locked out everywhere.
        for i in range(10):
            with from_address(f"127.0.0.{10 + i}") as client:
                assert client.get("/queue", auth=("rita", f"guess {i}")).status_code == 401
        with from_address("127.0.0.30") as client:
            refused = client.get("/queue", auth=("rita", PASSWORD))
            assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60
            assert client.get("/queue", auth=("vic", PASSWORD)).status_code == 200  # that address is fine
        # Ten failures from one address, each for another name: that address is locked out.
        with from_address("127.0.0.40") as client:
            for i in range(10):
                assert client.get("/queue", auth=(f"user{i}", PASSWORD)).status_code == 401
            refused = client.get("/queue", auth=("vic", PASSWORD))
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        with from_address("127.0.0.41") as client:
            assert client.get("/queue", auth=("vic", PASSWORD)).status_code == 200
    finally:
        server.stop()



def test_guesses_sent_at_once_get_no_more_checks_than_the_limit(tmp_path: Path) -> None:
    var = tmp_path / "var"
    assert cli("users", "add", "rita", "--role", "viewer", var=var, stdin=PASSWORD + "\n").returncode == 0
    server = WorkerServer(WORKER, {}, var)

    async def at_once(passwords: list[str]) -> Counter[int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120,
                                     limits=httpx.Limits(max_connections=len(passwords))) as client:
            answers = await asyncio.gather(*(client.get("/queue", auth=("rita", p)) for p in passwords))
        return Counter(a.status_code for a in answers)

    try:
        server.wait_ready()
        # Right passwords are not counted, however many arrive together.
        assert asyncio.run(at_once([PASSWORD] * 15)) == {200: 15}
        # Thirty wrong ones at once: ten are checked (each counted as it starts), the rest refused.
        assert asyncio.run(at_once([f"guess {i}" for i in range(30)])) == {401: 10, 429: 20}
        assert httpx.get(f"{server.base_url}/queue", auth=("rita", PASSWORD)).status_code == 429
    finally:
        server.stop()


def test_x_forwarded_for_is_believed_only_from_a_named_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    var = tmp_path / "var"
    assert cli("users", "add", "vic", "--role", "viewer", var=var, stdin=PASSWORD + "\n").returncode == 0

    def from_address(server: WorkerServer, address: str) -> httpx.Client:
        return httpx.Client(base_url=server.base_url, transport=httpx.HTTPTransport(local_address=address))

    # By default the header does not change the address that is counted, not even from 127.0.0.1
    # (which uvicorn itself would trust).
    server = WorkerServer(WORKER, {}, var)
    try:
        server.wait_ready()
        with from_address(server, "127.0.0.1") as client:
            for i in range(10):
                wrong = client.get("/queue", auth=(f"user{i}", PASSWORD), headers={"X-Forwarded-For": f"10.9.0.{i}"})
                assert wrong.status_code == 401
            assert client.get("/queue", auth=("vic", PASSWORD), headers={"X-Forwarded-For": "10.8.0.1"}).status_code == 429
    finally:
        server.stop()
    # With FORWARDED_ALLOW_IPS naming the proxy, the proxy's clients are counted apart; others are not believed.
    server = WorkerServer(WORKER, {"FORWARDED_ALLOW_IPS": "127.0.0.60"}, var)
    try:
        server.wait_ready()
        with from_address(server, "127.0.0.60") as proxy:
            for i in range(10):
                assert proxy.get("/queue", auth=(f"user{i}", PASSWORD), headers={"X-Forwarded-For": "10.9.0.1"}).status_code == 401
            assert proxy.get("/queue", auth=("vic", PASSWORD), headers={"X-Forwarded-For": "10.9.0.1"}).status_code == 429
            assert proxy.get("/queue", auth=("vic", PASSWORD), headers={"X-Forwarded-For": "10.9.0.2"}).status_code == 200
        with from_address(server, "127.0.0.61") as client:
            for i in range(10):
                assert client.get("/queue", auth=(f"user{i}", PASSWORD), headers={"X-Forwarded-For": f"10.7.0.{i}"}).status_code == 401
            assert client.get("/queue", auth=("vic", PASSWORD), headers={"X-Forwarded-For": "10.7.1.1"}).status_code == 429
    finally:
        server.stop()


def test_queue_moves_authenticate_before_reading_the_body_and_paths_never_redirect(tmp_path: Path) -> None:
    var = tmp_path / "var"
    assert cli("users", "add", "rita", "--role", "reviewer", var=var, stdin=PASSWORD + "\n").returncode == 0
    server = WorkerServer(WORKER, {}, var)
    bad_bodies = [b"{bad", b"[" * 50_000 + b"]" * 50_000, b'{"note": 5}', b"\xff"]
    json_type = {"Content-Type": "application/json"}
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.base_url) as client:
            for path in ("/queue/1/claim", "/queue/1/resolve", "/queue/1/release"):
                for body in bad_bodies:
                    anonymous = client.post(path, content=body, headers=json_type)
                    assert anonymous.status_code == 401, (path, body[:8], anonymous.status_code)
            # An operator is told what is wrong with the body; a good one gets as far as the queue.
            for path in ("/queue/1/resolve", "/queue/1/release"):
                for body in bad_bodies:
                    assert client.post(path, content=body, headers=json_type, auth=("rita", PASSWORD)).status_code == 422
                missing = client.post(f"/queue/{2**31 - 1}/resolve", json={"note": "done"}, auth=("rita", PASSWORD))
                assert missing.status_code == 404
            # No slash redirects (their Location came from the caller's Host header): a 404, for anyone.
            for method, path in (("GET", "/queue/"), ("GET", "/metrics/"), ("POST", "/queue/1/claim/")):
                for auth in (None, ("rita", PASSWORD)):
                    answer = client.request(method, path, headers={"Host": "evil.example"}, auth=auth)
                    assert answer.status_code == 404 and "location" not in answer.headers, (method, path, answer.status_code)
    finally:
        server.stop()


# --- the password prompt at a terminal -----------------------------------------------------------

def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 60.0) -> None:
    """Read the terminal's output until `marker` appears (or fail after `timeout`)."""
    import time

    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            assert chunk, f"terminal closed before {marker!r}: {bytes(seen)!r}"
            seen.extend(chunk)


def test_users_add_at_a_terminal_asks_twice_without_echo(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CHANNEL_WORKER_VAR"] = str(var)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI with the pseudo-terminal as its controlling terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "worker.cli", "users", "add", "ada", "--role", "admin"], env)
    seen = bytearray()
    try:
        _read_until(fd, b"password: ", seen)
        os.write(fd, PASSWORD.encode() + b"\n")
        _read_until(fd, b"again: ", seen)
        os.write(fd, PASSWORD.encode() + b"\n")
        _read_until(fd, b"user ada added", seen)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    assert PASSWORD.encode() not in seen  # never echoed
    users = json.loads(cli("users", "list", "--json", var=var).stdout)
    assert [(u["name"], u["role"]) for u in users] == [("ada", "admin")]


# --- the store, on both databases -----------------------------------------------------------------

async def test_users_and_tokens_are_stored_as_hashes_and_names_are_unique(database_url: str) -> None:
    from escalation.operators import OperatorError

    store = await TranscriptStore.open(database_url)
    try:
        operators = OperatorStore(store.db)
        await operators.add_user("rita", "reviewer", hash_password(PASSWORD))
        with pytest.raises(OperatorError, match="exists"):
            await operators.add_user("rita", "admin", hash_password(PASSWORD))
        await operators.add_user("rita", "admin", hash_password("another long password"), replace=True)
        stored, role = await operators.password_hash("rita")
        assert role == "admin" and verify_password("another long password", stored) and PASSWORD not in stored
        token = new_token()
        await operators.add_token(token.id, "grafana", "viewer", token.secret_hash)
        rows = await store.db.fetchall("SELECT * FROM api_tokens")
        assert token.token.split("_", 2)[2] not in json.dumps(rows, default=str)
        with pytest.raises(OperatorError, match="exists"):
            await operators.add_token(new_token().id, "grafana", "viewer", token.secret_hash)
        await operators.revoke_token("grafana")
        assert await operators.token(token.id) is None
        with pytest.raises(OperatorError, match="no token"):
            await operators.revoke_token("grafana")
        await operators.remove_user("rita")
        assert await operators.password_hash("rita") is None
    finally:
        await store.close()
