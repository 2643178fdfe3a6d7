"""``/metrics`` (Prometheus text format) and ``/healthz`` (JSON) on the console's port.

Neither needs a login: the port is bound to 127.0.0.1 by default, and neither shows a
caller, a number or a secret. ``/metrics`` always answers: when PostgreSQL does not answer
within ``FIGURES_TIMEOUT`` it has the in-process metrics and ``ivr_database_up 0``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from ivr.metrics.exposition import CONTENT_TYPE, exposition
from ivr.metrics.policy_figures import Moments, PolicyFigures, read_policy_figures
from ivr.store.database import DatabaseUnreachable
from ivr.web.console import Console

log = logging.getLogger(__name__)

FIGURES_TIMEOUT = 2.0  # seconds; a scrape must not hang on a database that does not answer

router = APIRouter()


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    console = _console(request)
    if console.metrics is None:
        raise HTTPException(404, "metrics are not wired into this console")
    settings = console.settings
    at = Moments.at(datetime.now(UTC), settings.timezone,
                    settings.revocations.calendar_country)
    figures: PolicyFigures | None
    try:
        figures = await read_policy_figures(console.db, at, FIGURES_TIMEOUT)
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        figures = None
        log.warning("metrics without the database's figures: %s",
                    DatabaseUnreachable.from_error(console.db.url, exc))
    return Response(exposition(console.metrics, figures), media_type=CONTENT_TYPE)


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    console = _console(request)
    if console.health is None:
        raise HTTPException(404, "health checks are not wired into this console")
    report = await console.health.report()
    return JSONResponse(report.as_json(), status_code=200 if report.up else 503)
