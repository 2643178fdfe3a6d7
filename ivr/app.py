"""Composition root: builds the service's parts from the settings and runs them in one
TaskGroup. Nothing is created at import time."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ivr.asterisk.ami import AmiClient
from ivr.asterisk.ari import AriClient, AriError, Connected
from ivr.asterisk.ari_events import StasisStart
from ivr.asterisk.fastagi import FastAgiServer
from ivr.asterisk.listener import ListenerUnavailable
from ivr.asterisk.report_server import ReportServer
from ivr.calls.callback import CallbackDialer
from ivr.calls.desk_phone import desk_phone_handlers
from ivr.calls.dialplan_notice import NoticeDecisions, collect_ended
from ivr.calls.inbound import CallDeps, InboundCallRunner
from ivr.calls.notes import Retries
from ivr.calls.recovery import resolve_orphans, sweep
from ivr.calls.router import CallItems, CallRouter
from ivr.calls.unattended import collect_unattended
from ivr.jobs.deletion import DeletionJob
from ivr.jobs.recording_moves import RecordingMoveJob
from ivr.metrics.event_loop import watch_lag
from ivr.metrics.health import Health, ami_check, ari_check, curl_check, database_check
from ivr.metrics.in_process import Metrics
from ivr.node_lock import node_held
from ivr.notices.audio import verify
from ivr.recordings.files import RecordingFiles
from ivr.settings import Settings
from ivr.stopping import slow_stop_reported
from ivr.store.audit import AuditLog
from ivr.store.closes_together import CloseQueue
from ivr.store.database import Database
from ivr.store.decisions_together import DecisionQueue
from ivr.store.durable import DurableRecords
from ivr.store.opens_together import OpenQueue
from ivr.web.auth import Sessions

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0  # seconds for each part's check at /healthz


class _Stopped(Exception):
    """Raised inside the TaskGroup to cancel every task on the way out."""


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever); :class:`NodeBusy` at once if another process
    holds this node (ivr/node_lock.py)."""
    stop = stop or asyncio.Event()
    with node_held(settings.journal.directory, "ivr serve"):
        async with slow_stop_reported(stop):
            await _serve(settings, stop)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    manifest = verify(settings.prompts.local_dir)
    db = Database(settings.database)
    ari = AriClient(settings.ari)
    metrics = Metrics()
    ami = AmiClient(settings.ami, on_reconnect=metrics.ami_reconnected)
    ari_connected = ari.events_up  # up while ARI's events websocket is connected
    checks = {"database": database_check(db), "ari": ari_check(ari, ari_connected),
              "ami": ami_check(ami)}
    if (settings.dialplan.inbound_flow, settings.dialplan.decision_request) == ("dialplan",
                                                                                "http"):
        checks["decision_requests"] = curl_check(ami)
    health = Health(checks, timeout=HEALTH_TIMEOUT)
    audit = AuditLog(db)
    records = DurableRecords.for_node(settings, db, audit)
    callbacks = records.callbacks
    by_dialplan = settings.dialplan.inbound_flow == "dialplan"
    decisions = DecisionQueue(records.store_decisions)
    closes = CloseQueue(records.close_many)
    opens = OpenQueue(records.open_many)
    deps = CallDeps(settings, ari, ami, records, manifest, callbacks, metrics, decisions,
                    closes, opens)

    async def handle(start: StasisStart, items: CallItems) -> None:
        await InboundCallRunner(deps, start, items).run()

    try:
        await db.check_reachable()
    except Exception as exc:
        log.error("database not reachable at start: %s; calls go on unrecorded until it is",
                  exc)
    await ami.connect()
    if "decision_requests" in checks:  # said at start; /healthz says it while it lasts
        asked = Health({"decision_requests": checks["decision_requests"]}, HEALTH_TIMEOUT)
        for part in (await asked.report()).parts:
            if not part.up:
                log.error("decisions cannot be asked for: %s", part.reason)
    freeze_startup_heap()
    try:
        async with asyncio.TaskGroup() as tasks:
            router = CallRouter(tasks, handle)
            ami.on_agent_connected(router.dispatch)
            since = datetime.now(UTC)
            tasks.create_task(_events(deps, router, stop, since, metrics, ari_connected),
                              name="ari-events")
            tasks.create_task(_sweep(deps, router, settings.jobs.sweep_seconds, since,
                                     not by_dialplan), name="sweep")
            tasks.create_task(closes.run(), name="closes")
            tasks.create_task(opens.run(), name="opens")
            tasks.create_task(decisions.run(), name="decisions")
            if by_dialplan:
                tasks.create_task(_dialplan_ends(deps), name="dialplan-ends")
            tasks.create_task(_replay_journal(records, settings.journal.replay_seconds),
                              name="journal-replay")
            # The dialplan asks for the notice's decision over HTTP or FastAGI, as it was
            # rendered: both listen, with one limit on the recordings started over AMI.
            notice = NoticeDecisions(deps)
            address, peers = str(settings.fastagi.bind_address), settings.fastagi.allowed_peers()
            fastagi = FastAgiServer(address, settings.fastagi.port,
                                    desk_phone_handlers(deps) | notice.fastagi_handlers(),
                                    allowed_peers=peers)
            tasks.create_task(fastagi.serve(), name="fastagi")
            reports = ReportServer(address, settings.fastagi.report_port,
                                   notice.http_handlers(), allowed_peers=peers)
            tasks.create_task(reports.serve(), name="http-reports")
            tasks.create_task(watch_lag(metrics), name="event-loop-lag")
            files = RecordingFiles.from_settings(settings.recordings)
            if settings.web.enabled:
                tasks.create_task(_console(settings, db, audit, deps, tasks, metrics, health,
                                           files), name="console")
            if settings.jobs.enabled:
                tasks.create_task(_deletion_jobs(DeletionJob(db, settings, audit, files),
                                                 settings.jobs.interval_seconds, Sessions(db)),
                                  name="deletion-jobs")
                tasks.create_task(_recording_moves(RecordingMoveJob(db, settings, audit, files),
                                                   settings.jobs.interval_seconds),
                                  name="recording-moves")
            await stop.wait()
            raise _Stopped
    except* _Stopped:
        log.info("service stopped")
    except* ListenerUnavailable as group:
        raise group.exceptions[0] from None
    finally:
        ami.close()
        await ari.aclose()
        await db.dispose()


def freeze_startup_heap() -> int:
    """Move what start-up allocated (modules, settings, the engine, compiled statements)
    into the collector's permanent generation, where no collection scans it again. A full
    collection of that heap held the event loop 60-94 ms (make bench, 40 calls/s), and a
    decision the dialplan waits for with it; what calls allocate later is collected as
    before. Returns the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _console(settings: Settings, db: Database, audit: AuditLog, deps: CallDeps,
                   tasks: asyncio.TaskGroup, metrics: Metrics, health: Health,
                   files: RecordingFiles) -> None:
    """The web console on its own address, in the service's TaskGroup; also /metrics and
    /healthz."""
    import uvicorn

    from ivr.web.app import create_app, templates
    from ivr.web.auth import Users
    from ivr.web.console import Console

    async def dial(callback_id: str, agent: str, progress: Callable[[str], None]) -> None:
        app_name = f"{settings.ari.app}-dial-{uuid.uuid4().hex[:8]}"
        ari = AriClient(settings.ari.model_copy(update={"app": app_name}))
        try:
            await CallbackDialer(replace(deps, ari=ari), progress).dial(
                uuid.UUID(callback_id), agent)
        except Exception as exc:
            progress(f"failed: {exc}")
            log.exception("callback from the console failed", extra={"callback": callback_id})
        finally:
            await ari.aclose()

    def spawn(work: Awaitable[Any], name: str) -> None:
        tasks.create_task(work, name=name)  # type: ignore[arg-type]

    console = Console(settings, db, audit, Users(db, audit), Sessions(db), deps.callbacks,
                      templates(), dial=dial, spawn=spawn, metrics=metrics, health=health,
                      files=files)
    server = uvicorn.Server(uvicorn.Config(
        create_app(console), host=str(settings.web.bind_address), port=settings.web.port,
        log_config=None, access_log=False, lifespan="off"))
    log.info("console listening", extra={
        "address": f"http://{settings.web.bind_address}:{settings.web.port}"})
    try:
        await server.serve()
    finally:
        server.should_exit = True


async def _recording_moves(job: RecordingMoveJob, interval: int) -> None:
    """Finished recordings from this node's spool into the recording store, every
    ``interval`` seconds, the first one interval after the start (calls an earlier
    instance left open are closed by then); a failing run is logged and retried."""
    while True:
        await asyncio.sleep(interval)
        try:
            report = await job.run_once()
            if report.moved or report.failed or report.missing or report.leftovers_removed:
                log.info("recording store job", extra=report.as_json())
        except Exception:
            log.exception("recording store job failed; retried at the next interval")


async def _deletion_jobs(job: DeletionJob, interval: int, sessions: Sessions) -> None:
    """Rules 6 and 8, every ``interval`` seconds; a failing run is logged and retried.
    Expired console sessions are purged on the same beat."""
    while True:
        try:
            report = await job.run_once()
            if report.deleted or report.failed or report.already_gone:
                log.info("deletion job", extra=report.as_json())
            await sessions.purge()
        except Exception:
            log.exception("deletion job failed; retried at the next interval")
        await asyncio.sleep(interval)


async def _replay_journal(records: DurableRecords, interval: float) -> None:
    """Call records written to the journal while PostgreSQL was unreachable go into it
    as soon as it answers again, oldest first."""
    while True:
        if records.journal is not None and records.journal.pending():
            try:
                written = await records.replay()
                log.info("journal replayed into PostgreSQL", extra={"entries": written})
            except Exception as exc:
                log.warning("journal not replayed yet: %s", str(exc).splitlines()[0][:200]
                            if str(exc) else type(exc).__name__)
        await asyncio.sleep(interval)


async def _sweep(deps: CallDeps, router: CallRouter, interval: int, since: datetime,
                 ends: bool) -> None:
    """Calls an earlier instance left open are closed once their channels end; calls the
    dialplan took while no instance ran are recorded (and returned: rule 4); with
    ``ends``, so are the ends of calls the dialplan played the notice to (left from a time
    the dialplan did, see ``_dialplan_ends``)."""
    unattended, ended = Retries(), Retries()
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(deps, router, since)
        except Exception as exc:
            log.warning("sweep of calls left open failed: %s", exc)
        try:
            await collect_unattended(deps, unattended)
        except Exception as exc:
            log.warning("calls taken while no instance ran not read yet: %s", exc)
        if ends:
            await _collect_ends(deps, ended)


async def _dialplan_ends(deps: CallDeps, interval: float = 1.0) -> None:
    """The ends of calls the dialplan played the notice to: closed within seconds, and
    returned when nobody answered (rule 4)."""
    retries = Retries()
    while True:
        await asyncio.sleep(interval)
        await _collect_ends(deps, retries)


async def _collect_ends(deps: CallDeps, retries: Retries) -> None:
    try:
        await collect_ended(deps, retries)
    except Exception as exc:
        log.warning("ends of calls the dialplan took not read yet: %s", exc)


async def _events(deps: CallDeps, router: CallRouter, stop: asyncio.Event,
                  since: datetime, metrics: Metrics, connected: asyncio.Event) -> None:
    async with aclosing(deps.ari.events()) as events:
        async for event in events:
            if isinstance(event, Connected):
                log.info("ARI connected", extra={"reconnects": event.reconnects})
                connected.set()
                if event.reconnects > 0:
                    metrics.ari_reconnected()
                try:
                    await resolve_orphans(deps, router, since)
                except AriError as exc:
                    log.error("could not list channels after connecting: %s", exc)
                continue
            router.dispatch(event)
            if stop.is_set():
                return
