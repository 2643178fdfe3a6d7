"""What the console's pages need from the service, built by the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from ivr.metrics.health import Health
from ivr.metrics.in_process import Metrics
from ivr.recordings.files import RecordingFiles
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.web.auth import SessionInfo, Sessions, Users
from ivr.web.i18n import texts

Spawn = Callable[[Awaitable[Any], str], None]


@dataclass
class Console:
    settings: Settings
    db: Database
    audit: AuditLog
    users: Users
    sessions: Sessions
    callbacks: Callbacks
    templates: Jinja2Templates
    # Places a callback: (callback id, agent endpoint, progress sink) -> awaitable.
    dial: Callable[[str, str, Callable[[str], None]], Awaitable[Any]] | None = None
    spawn: Spawn | None = None
    # /metrics and /healthz (ivr/web/monitoring.py); without them those answer 404.
    metrics: Metrics | None = None
    health: Health | None = None
    # Where recordings are read from (the spool, then the store): the composition root's.
    files: RecordingFiles | None = None
    progress: dict[str, list[str]] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.files is None:
            self.files = RecordingFiles.from_settings(self.settings.recordings)

    def local(self, moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if moment is None:
            return "-"
        return moment.astimezone(ZoneInfo(self.settings.timezone)).strftime(fmt)

    def render(self, request: Request, template: str, me: SessionInfo | None,
               **context: Any) -> Response:
        lang = request.query_params.get("lang") or (me.language if me else "sl")
        lang = lang if lang in ("sl", "en") else "sl"
        response: Response = self.templates.TemplateResponse(
            request, template, {"me": me, "lang": lang, "t": texts(lang), **context})
        return response
