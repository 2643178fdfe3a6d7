"""After (re)connecting, ARI replays nothing: what an earlier instance of the service (or a
lost connection) left behind is resolved on the safe side.

- A channel sitting in the application that no task owns continues to its queue with no
  recording started for it; a decision already stored stays as it is, and a recording
  already running goes on (it has its basis). Its record is closed at the hand-off; the
  caller is followed in the queue, and if nobody answers, their missed call is stored
  (rule 4) as any other's.
- A caller an earlier instance handed to the queue, still waiting there, is followed from
  then on: when they leave, their record is closed, and if nobody answered, their missed
  call is stored (rule 4). One an agent answered before the restart is closed by the sweep
  once the call ends, with no missed call.
- A call of this node that an earlier instance left open, whose channel is gone, is closed
  with what is known; a callback attempt it belonged to ends as ``interrupted``. A call
  whose end the dialplan noted is left to that note (``dialplan_notice``), which knows more.
- A recording its decision allowed is settled: started (MixMonitor's id is on the channel,
  or its file is on disk) or never started (the row says so; there is no file).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.asterisk.ari import AriError
from ivr.asterisk.ari_events import Channel, StasisStart
from ivr.calls.dialplan_notice import NOTE_SUFFIX
from ivr.calls.inbound import FOUND_ON_DISK, InboundCallRunner, opened_call
from ivr.calls.router import CallItems, ChannelVanished
from ivr.policy.lines import LineRef
from ivr.policy.numbers import to_e164
from ivr.store.receipts import StaleCall

if TYPE_CHECKING:
    from ivr.calls.inbound import CallDeps
    from ivr.calls.router import CallRouter

log = logging.getLogger(__name__)

RESTART_REASON = "service restarted: continued unrecorded"
ENDED_UNFOLLOWED = "ended while no service instance followed it"
LEFT_IN_QUEUE = "left the queue, followed there after a service restart"


async def resolve_orphans(deps: CallDeps, router: CallRouter, since: datetime) -> int:
    """Hand every ownerless channel in the application to its queue, unrecorded; tell
    every call task whose channel is gone (its hang-up was lost with the connection);
    close the calls earlier instances left open whose channels are gone."""
    settings = deps.settings
    resolved = 0
    channels = await deps.ari.channels()
    present = {channel.id for channel in channels}
    for channel_id in router.channel_ids():
        if channel_id not in present:
            router.dispatch(ChannelVanished(channel_id))
    stale = await _stale(deps, since)
    for channel in channels:
        if router.has(channel.id) or not channel.in_application(settings.ari.app):
            continue
        if channel.id in stale:
            await settle_recording(deps, stale[channel.id], channel_present=True)
        try:
            line = settings.line_for(to_e164(channel.exten, settings.region))
        except ValueError:
            line = None
        context, exten = ((settings.dialplan.queue_context, line.queue) if line else
                          (settings.dialplan.unconfigured_context, channel.exten))
        call_id = stale[channel.id].id if channel.id in stale else uuid.uuid4()
        try:
            await deps.ari.set_variable(channel.id, "IVR_RECORDED", "no")
            if line is not None:  # followed in the queue: its events, after it leaves
                await deps.ari.subscribe_channel(channel.id)
            await deps.ari.continue_in_dialplan(channel.id, context, exten)
        except AriError as exc:
            log.warning("could not resolve a channel left in the application: %s", exc,
                        extra={"call": channel.id})
            continue
        if line is not None:
            router.follow(channel.id, _in_queue(deps, channel, call_id))
        resolved += 1
        try:
            if channel.id not in stale:  # it entered just as the earlier instance died
                await deps.records.open(opened_call(settings, call_id, channel,
                                                    datetime.now(UTC))[0])
            await deps.records.close_orphan(channel.id, RESTART_REASON, datetime.now(UTC))
        except Exception:
            log.exception("could not close the record of a resolved channel",
                          extra={"call": channel.id})
        log.warning("channel left in the application resolved: continued unrecorded",
                    extra={"call": channel.id, "context": context})
    resolved += adopt_waiting(deps, router, channels, stale)
    # a followed call whose channel went meanwhile is closed by its task (told above)
    await close_ended(deps, present | set(router.channel_ids()), list(stale.values()))
    return resolved


def adopt_waiting(deps: CallDeps, router: CallRouter, channels: list[Channel],
                  stale: dict[str, StaleCall]) -> int:
    """Callers an earlier instance handed to their queue, still there: followed from now
    on as if this instance had handed them on, so that a caller nobody answers is
    returned (rule 4). Left alone: a caller an agent answered before the restart (closed
    by the sweep once the channel ends: no missed call) and a call the dialplan flow took
    (its hangup handler notes its end, which says more)."""
    settings = deps.settings
    queues: dict[str, LineRef] = {}
    for line in settings.lines:
        queues.setdefault(line.queue, line.ref())
    adopted = 0
    for channel in channels:
        call = stale.get(channel.id)
        if (call is None or call.direction != "inbound" or router.has(channel.id)
                or channel.app_name.lower() == "stasis"
                or channel.context != settings.dialplan.queue_context):
            continue
        waits_in = queues.get(channel.exten)
        if waits_in is not None:
            router.follow(channel.id, _waiting(deps, channel, call, waits_in))
            adopted += 1
    return adopted


def _waiting(deps: CallDeps, channel: Channel, call: StaleCall,
             line: LineRef) -> Callable[[CallItems], Awaitable[None]]:
    """The task that follows a caller found waiting in the queue; its record is closed
    when the caller leaves, with the missed call first if nobody answered."""
    async def follow(items: CallItems) -> None:
        ari = deps.ari
        extra = {"call": channel.id, "call_id": str(call.id)}
        try:
            if await ari.get_variable(channel.id, "IVR_DIALLED"):
                return  # the dialplan flow's call: the note of its end closes it
            await ari.subscribe_channel(channel.id)
            # Queue() sets it just before the caller meets the agent (setinterfacevar);
            # an agent who answers from now on is reported (followed since the line above)
            agent = await ari.get_variable(channel.id, "MEMBERNAME")
            await settle_recording(deps, call, channel_present=True)
        except Exception as exc:  # ARI (the caller gone meanwhile) or PostgreSQL
            log.warning("caller left in the queue not followed (the sweep closes the "
                        "call): %s", str(exc)[:200], extra=extra)
            return
        if agent:
            log.info("caller left in the queue had an agent before the restart",
                     extra={**extra, "agent": agent})
            return
        log.warning("caller left in the queue by an earlier instance followed",
                    extra={**extra, "queue": line.queue})
        start = StasisStart("StasisStart", None, deps.settings.ari.app, channel, (), None)
        runner = InboundCallRunner(deps, start, items)
        runner.call_uuid = call.id
        hung_up = await runner.follow_handed_on(line)
        if hung_up is None:
            return
        try:
            await deps.records.close_orphan(channel.id, LEFT_IN_QUEUE, hung_up.at)
        except Exception:
            log.exception("could not close the call of a caller followed in the queue",
                          extra=extra)

    return follow


def _in_queue(deps: CallDeps, channel: Channel,
              call_id: uuid.UUID) -> Callable[[CallItems], Awaitable[None]]:
    """The task that follows a resolved caller in the queue, for rule 4's missed call."""
    async def follow(items: CallItems) -> None:
        start = StasisStart("StasisStart", None, deps.settings.ari.app, channel, (), None)
        runner = InboundCallRunner(deps, start, items)
        runner.call_uuid = call_id
        await runner.follow_handed_on()

    return follow


async def sweep(deps: CallDeps, router: CallRouter, since: datetime) -> int:
    """Close the calls earlier instances left open whose channels have ended since (a
    callback the agent and customer finished while no instance followed it). A call this
    instance follows (a caller found waiting in the queue) is closed by its task, which
    knows how it ended."""
    stale = await _stale(deps, since)
    if not stale:
        return 0
    present = {channel.id for channel in await deps.ari.channels()}
    return await close_ended(deps, present | set(router.channel_ids()), list(stale.values()))


async def close_ended(deps: CallDeps, present: set[str], stale: list[StaleCall]) -> int:
    closed = 0
    callbacks = deps.settings.callbacks
    for call in stale:
        if call.channel_id in present:
            continue  # still going on (a bridged callback): a later sweep closes it
        if _end_noted(deps, call.channel_id):
            # The dialplan played its notice, and its hangup handler noted the end (before
            # the channel went): the note closes the call with what it knows, MixMonitor's
            # id among it; closing it here first would guess.
            continue
        extra = {"call": call.channel_id, "call_id": str(call.id)}
        try:
            await settle_recording(deps, call, channel_present=False)
            at = datetime.now(UTC)
            await deps.records.close_orphan(call.channel_id, ENDED_UNFOLLOWED, at)
            if call.direction == "callback":
                status = await deps.callbacks.interrupt_attempt(
                    call.id, at, callbacks.retry_attempts, callbacks.retry_delay_minutes)
                extra["callback"] = status or "no attempt under way"
        except Exception:
            log.exception("could not close a call left open", extra=extra)
            continue
        closed += 1
        log.warning("call left open by an earlier instance closed", extra=extra)
    return closed


def _end_noted(deps: CallDeps, channel_id: str) -> bool:
    note = Path(deps.settings.unattended.local_dir) / f"{channel_id}{NOTE_SUFFIX}"
    return "/" not in channel_id and note.exists()


async def settle_recording(deps: CallDeps, call: StaleCall, channel_present: bool) -> None:
    """Whether the recording a stored decision allowed ever started, from the channel's
    MixMonitor id or, once the channel is gone, from its file."""
    if call.file_name is None or call.mixmonitor_id is not None:
        return
    now = datetime.now(UTC)
    if channel_present:
        mixmonitor_id = await deps.ari.get_variable(call.channel_id, "IVR_MIXMONITOR_ID")
    else:
        on_disk = (deps.settings.recordings.local_dir / call.file_name).exists()
        mixmonitor_id = FOUND_ON_DISK if on_disk else None
    if mixmonitor_id:
        await deps.records.recording_started(call.file_name, mixmonitor_id, now)
        log.warning("recording found started after a restart",
                    extra={"call": call.channel_id, "file": call.file_name})
    else:
        await deps.records.recording_not_started(call.file_name, now)
        log.warning("recording allowed but never started: the service stopped first",
                    extra={"call": call.channel_id, "file": call.file_name})


async def _stale(deps: CallDeps, since: datetime) -> dict[str, StaleCall]:
    try:
        return {call.channel_id: call for call in await deps.records.stale_calls(since)}
    except Exception as exc:
        log.warning("calls left open unknown (database): %s", str(exc).splitlines()[0][:200]
                    if str(exc) else type(exc).__name__)
        return {}
