"""Watch an IMAP folder with aioimaplib: IDLE with a polling fallback, TLS (IMAPS, or STARTTLS
on a plain connection), new mail found by UIDVALIDITY + UID, reconnection with backoff.

Each new message is handed to a callback with its (UIDVALIDITY, UID), raw bytes and size; only
when the callback returns is the message marked processed on the server (`\\Seen`, or moved to
a folder), so a crash in between means the message is seen again, never lost. A message is
never loaded whole when it is larger than `max_bytes`: the callback gets its first
`max_bytes` + 1 bytes (enough for the headers) and the size the server reported.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Literal

import aioimaplib
from aioimaplib.aioimaplib import Command
from pydantic import BaseModel

log = logging.getLogger(__name__)

Handler = Callable[[str, int, bytes, int], Awaitable[None]]  # (uidvalidity, uid, raw, size)


class ImapSettings(BaseModel):
    host: str
    port: int = 993
    user: str
    password: str
    tls: Literal["ssl", "starttls", "none"] = "ssl"
    folder: str = "INBOX"
    ca_file: str | None = None
    processed: str = "seen"  # "seen", or "move:<folder>"
    idle_seconds: float = 300.0
    poll_seconds: float = 30.0
    timeout: float = 30.0

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


class ImapError(Exception):
    pass


def _ok(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        raise ImapError(f"{what} failed: {response.result} {b' '.join(response.lines[-1:]).decode(errors='replace')}")
    return response


async def connect(settings: ImapSettings) -> aioimaplib.IMAP4:
    lost = asyncio.Event()
    holder: dict[str, aioimaplib.IMAP4] = {}

    def on_lost(exc: Exception | None) -> None:
        # Wake an IDLE wait at once: a server that went away must not be waited on for minutes.
        lost.set()
        client = holder.get("client")
        if client is not None:
            client.protocol.idle_queue.put_nowait(aioimaplib.STOP_WAIT_SERVER_PUSH)

    if settings.tls == "ssl":
        client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(host=settings.host, port=settings.port,
                                                       ssl_context=settings.ssl_context(), timeout=settings.timeout)
    else:
        client = aioimaplib.IMAP4(host=settings.host, port=settings.port, timeout=settings.timeout)
    # Set on the protocol: IMAP4_SSL does not take the callback in its constructor.
    client.protocol.conn_lost_cb = on_lost
    holder["client"] = client
    client.connection_lost_event = lost  # type: ignore[attr-defined]
    await asyncio.wait_for(client.wait_hello_from_server(), settings.timeout)
    if settings.tls == "starttls":
        await _starttls(client, settings)
    _ok(await client.login(settings.user, settings.password), "LOGIN")
    return client


async def _starttls(client: aioimaplib.IMAP4, settings: ImapSettings) -> None:
    """aioimaplib has no STARTTLS: send the command, then upgrade the transport in place."""
    protocol = client.protocol
    loop = asyncio.get_running_loop()
    response = await asyncio.wait_for(
        protocol.execute(Command("STARTTLS", protocol.new_tag(), loop=loop)), settings.timeout)
    _ok(response, "STARTTLS")
    protocol.transport = await loop.start_tls(protocol.transport, protocol, settings.ssl_context(),
                                              server_hostname=settings.host)
    await protocol.capability()


class InboxWatcher:
    def __init__(self, settings: ImapSettings, handler: Handler, cursor_load: Callable[[], Awaitable[tuple[str, int] | None]],
                 cursor_save: Callable[[str, int], Awaitable[None]], max_bytes: int = 2_000_000):
        self.settings = settings
        self.max_bytes = max_bytes
        self.handler = handler
        self.cursor_load, self.cursor_save = cursor_load, cursor_save
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._client: aioimaplib.IMAP4 | None = None

    def stop(self) -> None:
        self._stop.set()
        if self._client is not None and self._client.has_pending_idle():
            self._client.protocol.idle_queue.put_nowait(aioimaplib.STOP_WAIT_SERVER_PUSH)

    async def run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            client = None
            try:
                client = await connect(self.settings)
                self._client = client
                select = _ok(await client.select(self.settings.folder), "SELECT")
                uidvalidity = next((m.group(1) for line in select.lines
                                    if (m := re.search(rb"UIDVALIDITY (\d+)", line))), b"0").decode()
                self.connected.set()
                backoff = 1.0
                while not self._stop.is_set():
                    await self.catch_up(client, uidvalidity)
                    await self.wait_for_mail(client)
            except (ImapError, OSError, asyncio.TimeoutError, aioimaplib.Abort, aioimaplib.Error, ConnectionError) as exc:
                self.connected.clear()
                log.warning("IMAP %s:%s: %s; reconnecting in %.0f s", self.settings.host, self.settings.port, exc, backoff)
            finally:
                if client is not None:
                    try:
                        await asyncio.wait_for(client.logout(), 2)
                    except Exception:  # the server may be gone already
                        pass
            if self._stop.is_set():
                break
            try:
                await asyncio.wait_for(self._stop.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(60.0, backoff * 2)

    async def catch_up(self, client: aioimaplib.IMAP4, uidvalidity: str) -> None:
        cursor = await self.cursor_load()
        last = cursor[1] if cursor and cursor[0] == uidvalidity else 0
        if cursor and cursor[0] != uidvalidity:
            log.warning("IMAP folder %s has a new UIDVALIDITY (%s, was %s): reading it again from the start; "
                        "messages already recorded are recognised by Message-ID", self.settings.folder, uidvalidity, cursor[0])
        response = _ok(await client.uid_search(f"UID {last + 1}:*", charset=None), "SEARCH")
        uids = sorted(int(u) for line in response.lines[:-1] for u in line.split() if u.isdigit())
        for uid in (u for u in uids if u > last):
            # A partial fetch: the server sends at most max_bytes + 1 bytes, whatever the size.
            fetched = _ok(await client.uid("fetch", str(uid), f"(RFC822.SIZE BODY.PEEK[]<0.{self.max_bytes + 1}>)"), "FETCH")
            # aioimaplib hands the message literal over as a bytearray, the response lines as bytes.
            raw = next((bytes(line) for line in fetched.lines if isinstance(line, bytearray)), None)
            if raw is None:
                continue
            size = next((int(m.group(1)) for line in fetched.lines if isinstance(line, bytes)
                         and (m := re.search(rb"RFC822\.SIZE (\d+)", line))), len(raw))
            await self.handler(uidvalidity, uid, raw, size)
            await self.mark_processed(client, uid)
            await self.cursor_save(uidvalidity, uid)

    async def mark_processed(self, client: aioimaplib.IMAP4, uid: int) -> None:
        if self.settings.processed.startswith("move:"):
            folder = self.settings.processed.split(":", 1)[1]
            await client.protocol.simple_command("CREATE", folder)  # exists already is fine
            if "MOVE" in client.protocol.capabilities:
                _ok(await client.uid("move", str(uid), folder), "MOVE")
                return
            _ok(await client.uid("copy", str(uid), folder), "COPY")
            _ok(await client.uid("store", str(uid), "+FLAGS", r"(\Deleted)"), "STORE")
            await client.expunge()
            return
        _ok(await client.uid("store", str(uid), "+FLAGS", r"(\Seen)"), "STORE")

    async def wait_for_mail(self, client: aioimaplib.IMAP4) -> None:
        """IDLE until the server says something changed, or poll when it cannot IDLE."""
        lost: asyncio.Event = client.connection_lost_event  # type: ignore[attr-defined]
        if "IDLE" not in client.protocol.capabilities:
            await asyncio.sleep(self.settings.poll_seconds)
            _ok(await client.noop(), "NOOP")
            return
        idle = await client.idle_start(timeout=self.settings.idle_seconds)
        try:
            while client.has_pending_idle() and not self._stop.is_set():
                pushes = await client.wait_server_push(timeout=self.settings.idle_seconds + 5)
                if pushes == aioimaplib.STOP_WAIT_SERVER_PUSH or any(b"EXISTS" in p for p in pushes if isinstance(p, bytes)):
                    break
            if lost.is_set():
                raise ConnectionError("the IMAP server closed the connection")
        finally:
            if not lost.is_set():
                client.idle_done()
                await asyncio.wait_for(idle, self.settings.timeout)
            else:
                idle.cancel()
