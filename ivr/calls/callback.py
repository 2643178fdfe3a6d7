"""Placing a callback (rules 4, 5, 9): the agent's phone first, then the customer through
the outbound trunk, the two bridged; recorded only as the returned call(s) allow.

When the customer heard the notice on the returned call, the callback inherits its
decision: nothing is played to the customer, and the receipt says which call the decision
came from. When the customer never heard it, the customer leg runs the inbound flow first
(notice, and on a service line the question) and the callback's own answer decides.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any

from ivr.asterisk.ami import AgentConnected, AmiError
from ivr.asterisk.ari import AriClient, AriError, Connected
from ivr.asterisk.ari_events import (
    Channel,
    ChannelDestroyed,
    ChannelHangupRequest,
    Event,
    StasisStart,
    channel_of,
)
from ivr.calls.inbound import CallDeps, InboundCallRunner, now
from ivr.calls.inherited import callback_line, store_inherited
from ivr.calls.router import CallItem, ChannelVanished
from ivr.flow import commands as cmd
from ivr.flow import events as ev
from ivr.flow.inbound import Consent, Segment, new_inbound_call
from ivr.policy.callbacks import Inheritance
from ivr.policy.lines import LineRef
from ivr.policy.numbers import national
from ivr.store.callbacks import CallbackView
from ivr.store.receipts import ClosedCall, OpenedCall

log = logging.getLogger(__name__)

# Q.850 causes of an originate that was not answered.
CAUSES = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected", 0: "no_answer",
          1: "unallocated_number", 34: "congestion", 38: "network_out_of_order"}


@dataclass(frozen=True)
class DialResult:
    reached: bool
    outcome: str
    status: str
    call_id: uuid.UUID
    recorded: bool


class CustomerLeg(InboundCallRunner):
    """The customer's channel when the notice must be played first: the inbound flow,
    except that "continue to the queue" means "join the agent in the bridge"."""

    def __init__(self, deps: CallDeps, start: StasisStart, items: asyncio.Queue[CallItem],
                 call_uuid: uuid.UUID, line: LineRef, bridge_id: str, agent: str) -> None:
        super().__init__(deps, start, items)
        self.call_uuid = call_uuid
        self.line: LineRef = line
        self.bridge_id = bridge_id
        self.agent_name = agent
        self.direction = "callback"

    async def run(self) -> None:
        line = self.line
        segments = tuple(Segment(s.id, s.question)
                         for s in self.deps.manifest.notice_segments(line.notice))
        consent = Consent(self.deps.settings.consent.answer_timeout,
                          self.deps.settings.consent.question_repeats)
        call, commands = new_inbound_call(str(self.call_uuid), line.kind, line.queue,
                                          segments, consent)
        await self.drive(call, commands)

    async def continue_to_queue(self, queue: str, decision: cmd.Decision | None,
                                recorded: bool) -> ev.FlowEvent:
        await self.deps.ari.add_to_bridge(self.bridge_id, self.channel_id)
        self.items.put_nowait(AgentConnected(self.channel_id, self.agent_name))
        log.info("customer joined the agent", extra={**self.log_extra, "recorded": recorded})
        return ev.Continued(now())


class CallbackDialer:
    """Places one callback attempt. ``deps.ari`` must be an ARI client of its own
    application (the dialer follows only the channels it originates)."""

    def __init__(self, deps: CallDeps, progress: Callable[[str], None] = lambda _: None) -> None:
        self.deps = deps
        self.ari: AriClient = deps.ari
        self.progress = progress
        self.events: dict[str, asyncio.Queue[Event | ChannelVanished]] = {}

    async def dial(self, callback_id: uuid.UUID, agent: str) -> DialResult:
        settings = self.deps.settings
        callbacks = self.deps.callbacks
        view, attempt_id = await callbacks.begin_attempt(callback_id, agent, now())
        call_uuid = uuid.uuid4()
        result = DialResult(False, "failed", "open", call_uuid, False)
        try:
            result = await self._dial(view, agent, call_uuid, attempt_id)
        finally:
            status = await callbacks.end_attempt(
                callback_id, attempt_id, call_uuid, result.outcome, result.reached, now(),
                settings.callbacks.retry_attempts, settings.callbacks.retry_delay_minutes)
            result = replace(result, status=status)
            self.progress(f"attempt ended: {result.outcome}; callback {status}")
        return result

    async def _dial(self, view: CallbackView, agent: str, call_uuid: uuid.UUID,
                    attempt_id: uuid.UUID) -> DialResult:
        line = callback_line(self.deps.settings, view)
        tag = call_uuid.hex[:16]
        agent_ch, customer_ch, bridge_id = f"ivrcb-{tag}-agent", f"ivrcb-{tag}-customer", \
            f"ivrcb-{tag}"
        self.events = {agent_ch: asyncio.Queue(), customer_ch: asyncio.Queue()}
        await self.deps.records.open(OpenedCall(
            id=call_uuid, channel_id=customer_ch, linkedid=customer_ch, dialled=view.caller,
            caller=view.caller, caller_withheld=False, caller_raw=view.caller,
            line_name=line.name, line_kind=line.kind.value, started_at=now()),
            direction="callback")
        await self.deps.callbacks.link_attempt(attempt_id, call_uuid)
        # The stream is closed only after the task group has seen its reader cancelled.
        async with aclosing(self.ari.events()) as stream, asyncio.TaskGroup() as tasks:
            first = await anext(stream)
            assert isinstance(first, Connected)
            pump = tasks.create_task(self._pump(stream))
            try:
                return await self._place(view, agent, line, call_uuid, agent_ch, customer_ch,
                                         bridge_id)
            finally:
                for channel in (agent_ch, customer_ch):
                    with suppress(AriError):
                        await self.ari.hangup(channel)
                with suppress(AriError):
                    await self.ari.destroy_bridge(bridge_id)
                pump.cancel()

    async def _pump(self, stream: Any) -> None:
        async for item in stream:
            if isinstance(item, Connected):
                await self._reconnected()
                continue
            channel = channel_of(item)
            queue = self.events.get(channel or "")
            if queue is not None:
                queue.put_nowait(item)

    async def _reconnected(self) -> None:
        """Events were lost with the connection (Asterisk restarted?): a followed channel
        that no longer exists ended meanwhile."""
        try:
            present = {channel.id for channel in await self.ari.channels()}
        except AriError as exc:
            log.warning("callback: channels unknown after reconnecting: %s", exc)
            return
        for channel_id, queue in self.events.items():
            if channel_id not in present:
                queue.put_nowait(ChannelVanished(channel_id))

    async def _wait(self, channel: str, kinds: tuple[type, ...], seconds: float) -> Event | None:
        """The channel's next event of one of ``kinds``; a channel found gone after a
        reconnect counts as destroyed."""
        queue = self.events[channel]
        try:
            async with asyncio.timeout(seconds):
                while True:
                    event = await queue.get()
                    if isinstance(event, ChannelVanished) and ChannelDestroyed in kinds:
                        return ChannelDestroyed("ChannelDestroyed", None, "", Channel(
                            channel, "", "Down", "", "", "", "", channel), 0,
                            "gone after a reconnect")
                    if isinstance(event, Event) and isinstance(event, kinds):
                        return event
        except TimeoutError:
            return None

    async def _place(self, view: CallbackView, agent: str, line: LineRef, call_uuid: uuid.UUID,
                     agent_ch: str, customer_ch: str, bridge_id: str) -> DialResult:
        settings = self.deps.settings.callbacks
        app = self.ari.settings.app
        records = self.deps.records
        started = now()

        def closed(reason: str, agent_answered: bool, notice: bool | None = None) -> ClosedCall:
            return ClosedCall(answered_at=None, ended_at=now(), end_reason=reason,
                              notice_completed=notice, agent_answered=agent_answered,
                              agent=f"PJSIP/{agent}", state="ended")

        self.progress(f"calling the agent's phone PJSIP/{agent}")
        await self.ari.originate(f"PJSIP/{agent}", app, agent_ch,
                                 f'"Callback" <{national(view.caller)}>',
                                 settings.agent_ring_seconds, "agent")
        answered = await self._wait(agent_ch, (StasisStart, ChannelDestroyed),
                                    settings.agent_ring_seconds + 5)
        if not isinstance(answered, StasisStart):
            await records.close(call_uuid, closed("the agent did not answer", False), None)
            return DialResult(False, "agent_no_answer", "open", call_uuid, False)
        await self.ari.create_bridge(bridge_id)
        await self.ari.add_to_bridge(bridge_id, agent_ch)

        number = (national(view.caller) if settings.dial_format == "national"
                  else view.caller)
        self.progress(f"agent answered; calling the customer {number} through "
                      f"{settings.trunk}")
        await self.ari.originate(f"PJSIP/{number}@{settings.trunk}", app, customer_ch,
                                 f'"{line.name}" <{national(self.line_number(line))}>',
                                 settings.customer_ring_seconds, "customer")
        waited = await self._wait_customer(agent_ch, customer_ch,
                                           settings.customer_ring_seconds + 5)
        if not isinstance(waited, StasisStart):
            outcome = ("agent_gave_up" if waited is None or channel_of(waited) == agent_ch
                       else CAUSES.get(getattr(waited, "cause", -1), "failed"))
            await records.close(call_uuid, closed(f"customer not reached: {outcome}", True),
                                None)
            return DialResult(False, outcome, "open", call_uuid, False)

        inheritance = view.inheritance
        self.progress(f"customer answered; {inheritance.reason}")
        if inheritance.notice_required:
            recorded = await self._with_notice(waited, call_uuid, line, bridge_id, agent,
                                               agent_ch)
        else:
            recorded = await self._inherited(inheritance, call_uuid, line, customer_ch,
                                             bridge_id, agent_ch, started)
        return DialResult(True, "answered", "done", call_uuid, recorded)

    async def _wait_customer(self, agent_ch: str, customer_ch: str,
                             seconds: float) -> Event | None:
        """The customer answers (StasisStart) or not (ChannelDestroyed); the agent may
        give up meanwhile."""
        customer = asyncio.ensure_future(self._wait(customer_ch, (StasisStart,
                                                                  ChannelDestroyed), seconds))
        agent = asyncio.ensure_future(self._wait(agent_ch, (ChannelHangupRequest,
                                                            ChannelDestroyed), seconds))
        done, pending = await asyncio.wait({customer, agent},
                                           return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        winner = done.pop()
        return winner.result()

    async def _inherited(self, inheritance: Inheritance, call_uuid: uuid.UUID, line: LineRef,
                         customer_ch: str, bridge_id: str, agent_ch: str,
                         started: Any) -> bool:
        """Rule 5: the notice is not repeated; the decision is the returned call's."""
        settings = self.deps.settings
        recording = await store_inherited(self.deps, call_uuid, line, inheritance)
        recorded = False
        if recording is not None:
            path = PurePosixPath(settings.recordings.asterisk_dir) / recording.file_name
            try:
                mixmonitor_id = await self.deps.ami.mix_monitor(customer_ch, path)
                await self.deps.records.recording_started(recording.file_name, mixmonitor_id,
                                                          now())
                recorded = True
            except AmiError as exc:
                log.error("callback recording did not start: %s", exc)
        await self.ari.add_to_bridge(bridge_id, customer_ch)
        self.progress("connected" + (", recording" if recorded else ", not recorded"))
        ended = await self._first_hangup(agent_ch, customer_ch)
        await self.deps.records.close(call_uuid, ClosedCall(
            answered_at=None, ended_at=now(), end_reason=ended, notice_completed=None,
            agent_answered=True, agent=None, state="ended"),
            recording.file_name if recording and recorded else None)
        return recorded

    async def _with_notice(self, start: StasisStart, call_uuid: uuid.UUID, line: LineRef,
                           bridge_id: str, agent: str, agent_ch: str) -> bool:
        """Rule 1: the customer never heard the notice; it is played now, first."""
        items: asyncio.Queue[CallItem] = asyncio.Queue()
        customer_events = self.events[start.channel.id]
        leg = CustomerLeg(self.deps, start, items, call_uuid, line, bridge_id, agent)

        async def forward() -> None:
            while True:
                items.put_nowait(await customer_events.get())

        async def agent_watch() -> None:
            await self._wait(agent_ch, (ChannelHangupRequest, ChannelDestroyed), 1e9)
            with suppress(AriError):
                await self.ari.hangup(start.channel.id)

        async with asyncio.TaskGroup() as tasks:
            forwarding = tasks.create_task(forward())
            watching = tasks.create_task(agent_watch())
            await leg.run()
            forwarding.cancel()
            watching.cancel()
        return leg.recording_file is not None

    async def _first_hangup(self, agent_ch: str, customer_ch: str) -> str:
        result = await self._wait_customer(agent_ch, customer_ch, 1e9)
        return ("the customer hung up" if result is not None
                and channel_of(result) == customer_ch else "the agent hung up")

    def line_number(self, line: LineRef) -> str:
        for configured in self.deps.settings.lines:
            if configured.name == line.name:
                return configured.numbers[0]
        return self.deps.settings.lines[0].numbers[0]
