"""Composition root: builds the service's parts from the settings and runs them in one
TaskGroup. Nothing is created at import time."""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing

from ivr.asterisk.ami import AmiClient
from ivr.asterisk.ari import AriClient, AriError, Connected
from ivr.asterisk.ari_events import StasisStart
from ivr.asterisk.fastagi import FastAgiServer, FastAgiUnavailable
from ivr.calls.desk_phone import desk_phone_handlers
from ivr.calls.inbound import CallDeps, InboundCallRunner
from ivr.calls.recovery import resolve_orphans
from ivr.calls.router import CallItems, CallRouter
from ivr.jobs.deletion import DeletionJob
from ivr.notices.audio import verify
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.callbacks import Callbacks
from ivr.store.database import Database
from ivr.store.receipts import CallRecords

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """Raised inside the TaskGroup to cancel every task on the way out."""


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever)."""
    manifest = verify(settings.prompts.local_dir)
    db = Database(settings.database)
    ari = AriClient(settings.ari)
    ami = AmiClient(settings.ami)
    stop = stop or asyncio.Event()
    audit = AuditLog(db)
    deps = CallDeps(settings, ari, ami, CallRecords(db, audit), manifest,
                    Callbacks(db, settings.callbacks.window_minutes))

    async def handle(start: StasisStart, items: CallItems) -> None:
        await InboundCallRunner(deps, start, items).run()

    try:
        await db.check_reachable()
    except Exception as exc:
        log.error("database not reachable at start: %s; calls go on unrecorded until it is",
                  exc)
    await ami.connect()
    try:
        async with asyncio.TaskGroup() as tasks:
            router = CallRouter(tasks, handle)
            ami.on_agent_connected(router.dispatch)
            tasks.create_task(_events(deps, router, stop), name="ari-events")
            fastagi = FastAgiServer(str(settings.fastagi.bind_address), settings.fastagi.port,
                                    desk_phone_handlers(deps))
            tasks.create_task(fastagi.serve(), name="fastagi")
            if settings.jobs.enabled:
                tasks.create_task(_deletion_jobs(DeletionJob(db, settings, audit),
                                                 settings.jobs.interval_seconds),
                                  name="deletion-jobs")
            await stop.wait()
            raise _Stopped
    except* _Stopped:
        log.info("service stopped")
    except* FastAgiUnavailable as group:
        raise group.exceptions[0] from None
    finally:
        ami.close()
        await ari.aclose()
        await db.dispose()


async def _deletion_jobs(job: DeletionJob, interval: int) -> None:
    """Rules 6 and 8, every ``interval`` seconds; a failing run is logged and retried."""
    while True:
        try:
            report = await job.run_once()
            if report.deleted or report.failed or report.already_gone:
                log.info("deletion job", extra=report.as_json())
        except Exception:
            log.exception("deletion job failed; retried at the next interval")
        await asyncio.sleep(interval)


async def _events(deps: CallDeps, router: CallRouter, stop: asyncio.Event) -> None:
    async with aclosing(deps.ari.events()) as events:
        async for event in events:
            if isinstance(event, Connected):
                log.info("ARI connected", extra={"reconnects": event.reconnects})
                try:
                    await resolve_orphans(deps, router)
                except AriError as exc:
                    log.error("could not list channels after connecting: %s", exc)
                continue
            router.dispatch(event)
            if stop.is_set():
                return
