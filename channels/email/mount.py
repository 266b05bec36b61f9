"""The email channel on the worker's app: the inbox watcher, supervised. On when the spec
enables email and both IMAP and SMTP are configured."""

from __future__ import annotations

import logging
from typing import Protocol

from fastapi import FastAPI

from channels.email.channel import EmailChannel, EmailSettings
from channels.seam import ChannelRuntime

log = logging.getLogger(__name__)


class EmailSettingsSource(Protocol):
    def email_settings(self) -> EmailSettings | None: ...


async def mount(app: FastAPI, runtime: ChannelRuntime) -> bool:
    source: EmailSettingsSource = runtime.settings
    settings = source.email_settings() if runtime.conversations.spec.channels.email.enabled else None
    if settings is None:
        return False
    channel = EmailChannel(runtime.conversations, runtime.db, settings)
    runtime.loops.start("email", channel.run)

    async def stop() -> None:
        channel.stop()

    runtime.on_close(stop)
    log.info("email channel on: %s@%s:%s/%s", settings.imap.user, settings.imap.host, settings.imap.port,
             settings.imap.folder)
    return True
