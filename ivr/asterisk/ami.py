"""AMI through panoramisk: MixMonitor on an ARI channel, and the queue events that say an
agent answered or a caller gave up.

Asterisk serves each AMI connection with one thread, one action at a time. Recordings are
started on connections of their own (``[ami] recording_connections``, logged in with
events off), each to the one with the fewest actions awaiting a reply, so that a start
does not wait behind another in one thread; the first connection takes the events and
every other action, and the recordings too while none of their own is logged in.

panoramisk replays unanswered actions after a reconnect; recording actions are never
replayed here (``forgetable_actions``): a recording starts when the call flow asks for it,
or not at all.

A frame panoramisk cannot take (two frames run together without their blank line, so that
``Event`` or ``ActionID`` is given twice) is dropped by :class:`FramingGuard`; panoramisk
itself would fail on it and drop the connection, and with it every recording asked for
until it has logged in again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from ivr.settings import AmiSettings

log = logging.getLogger(__name__)

FORGETABLE = ("ping", "login", "mixmonitor", "stopmixmonitor")
# A channel's name as it may be given to AMI: printable, no space, nothing that could end
# the header line.
CHANNEL_NAME = re.compile(r"[!-~]{1,200}")
# Headers that say what a frame is and whom it answers: given twice, the frame is two frames
# run together, and belongs to neither.
IDENTIFYING = ("Event", "Response", "ActionID", "CommandID")


class AmiError(RuntimeError):
    """AMI refused an action, or is not connected."""


class AmiNoReply(AmiError):
    """AMI took the action but gave no answer in time: it may have been done."""


@dataclass(frozen=True, slots=True)
class AgentConnected:
    """AMI ``AgentConnect``: an agent answered the caller on ``channel_id``."""

    channel_id: str
    agent: str


QueueListener = Callable[[AgentConnected], None]


def run_together(message: Any) -> list[str]:
    """The identifying headers a parsed AMI frame carries more than once."""
    return [name for name in IDENTIFYING if isinstance(message.get(name), list)]


class FramingGuard(AMIProtocol):  # type: ignore[misc]  # panoramisk has no type hints
    """panoramisk's AMI protocol, except that a frame it cannot take is dropped and logged
    rather than failing ``data_received`` (which closes the connection to Asterisk)."""

    def handle_message(self, message: Any) -> None:
        doubled = run_together(message)
        if doubled:
            log.warning("AMI frame dropped: %s given more than once (frames run together)",
                        ", ".join(doubled))
            return
        try:
            super().handle_message(message)
        except Exception:
            log.exception("AMI frame dropped: it could not be handled")


class _Connection:
    """One AMI login: panoramisk's manager, whether it is logged in, and how many of its
    actions await their reply."""

    def __init__(self, settings: AmiSettings, events: bool,
                 on_login: Callable[[_Connection], None]) -> None:
        self.logged_in = asyncio.Event()
        self.logins = 0
        self.waiting = 0
        self._on_login = on_login
        self.manager = Manager(
            host=settings.host, port=settings.port, username=settings.username,
            secret=settings.secret.get_secret_value(), ping_delay=10, ping_interval=10,
            reconnect_timeout=1, forgetable_actions=FORGETABLE, protocol_factory=FramingGuard,
            loop=asyncio.get_running_loop(), on_login=self._logged_in,
            on_disconnect=self._dropped, events="on" if events else "off",
            log=logging.getLogger("ivr.asterisk.ami.wire"),
        )

    @property
    def up(self) -> bool:
        return self.logged_in.is_set() and self.manager.protocol is not None

    def _logged_in(self, manager: Any) -> None:
        self.logins += 1
        self.logged_in.set()
        self._on_login(self)

    def _dropped(self, manager: Any, exc: Exception | None) -> None:
        self.logged_in.clear()
        log.warning("AMI connection lost; reconnecting")


# The kinds of the service's AMI connections, as the reconnects metric's label names them:
# the first (events, the queue's questions) and the recordings' own.
EVENTS = "events"
RECORDINGS = "recordings"
CONNECTION_KINDS = (EVENTS, RECORDINGS)
# A queue's load read this recently is the queue's load now: under load most calls that
# end are missed calls, and each asked AMI for a QueueSummary of its own (three frames to
# parse, and Asterisk going through the queue's members) for the same counts.
QUEUE_LOAD_MAX_AGE_S = 1.0


class AmiClient:
    def __init__(self, settings: AmiSettings, action_timeout: float = 5.0,
                 on_reconnect: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.action_timeout = action_timeout
        # Called each time a connection has logged in again after a drop (not at its first
        # login), with which: EVENTS (the first) or RECORDINGS.
        self.on_reconnect = on_reconnect
        self._listeners: list[QueueListener] = []
        self._main = _Connection(settings, True, self._on_login)
        self._recorders = [_Connection(settings, False, self._recorder_login)
                           for _ in range(settings.recording_connections)]
        self.logged_in = self._main.logged_in
        self._main.manager.register_event("AgentConnect", self._agent_connect)
        self._loads: dict[str, tuple[float, tuple[int, int]]] = {}

    def on_agent_connected(self, listener: QueueListener) -> None:
        self._listeners.append(listener)

    async def connect(self, wait: float = 10.0) -> None:
        for connection in (self._main, *self._recorders):
            connection.manager.connect()
        try:
            async with asyncio.timeout(wait):  # not wait_for (see ``action``)
                await self.logged_in.wait()
        except TimeoutError:
            log.error("AMI login did not succeed within %.0f s; retrying in the background",
                      wait)

    def close(self) -> None:
        for connection in (self._main, *self._recorders):
            connection.manager.close()

    @property
    def reconnects(self) -> int:
        """Times the first connection has logged in again after a drop."""
        return max(0, self._main.logins - 1)

    def _on_login(self, connection: _Connection) -> None:
        log.info("AMI connected", extra={"reconnects": self.reconnects})
        if self.reconnects > 0 and self.on_reconnect is not None:
            self.on_reconnect(EVENTS)

    def _recorder_login(self, connection: _Connection) -> None:
        log.info("AMI connected for recordings", extra={"reconnects": connection.logins - 1})
        if connection.logins > 1 and self.on_reconnect is not None:
            self.on_reconnect(RECORDINGS)

    def _agent_connect(self, manager: Any, event: Any) -> None:
        channel_id = event.get("Uniqueid", "")
        agent = str(event.get("MemberName") or event.get("Interface") or "")
        if not channel_id or not isinstance(channel_id, str):  # none, or given twice
            return
        for listener in self._listeners:
            listener(AgentConnected(channel_id, agent))

    async def action(self, fields: dict[str, str], on: _Connection | None = None) -> Any:
        connection = on or self._main
        if not connection.up:
            raise AmiError("AMI is not connected")
        future = connection.manager.send_action(fields)
        connection.waiting += 1
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns a reply that
            # came as the task was cancelled and drops the cancellation (the service's stop)
            async with asyncio.timeout(self.action_timeout):
                reply = await asyncio.shield(future)
        except TimeoutError:
            raise AmiNoReply(f"AMI {fields['Action']}: no reply in {self.action_timeout} s") \
                from None
        finally:
            connection.waiting -= 1
        if isinstance(reply, list):
            reply = reply[0] if reply else None
        if reply is None or str(reply.get("Response", "")).lower() != "success":
            message = reply.get("Message", "no reply") if reply is not None else "no reply"
            raise AmiError(f"AMI {fields['Action']}: {message}")
        return reply

    async def module_loaded(self, module: str) -> bool:
        """Whether Asterisk has ``module`` (``func_curl``) loaded now (AMI ``ModuleCheck``;
        any other error, AMI away included, is raised)."""
        try:
            await self.action({"Action": "ModuleCheck", "Module": module})
        except AmiError as exc:
            if "not loaded" in str(exc).lower():
                return False
            raise
        return True

    async def queue_load(self, queue: str) -> tuple[int, int]:
        """Callers waiting in ``queue`` and agents available to it, right now (as read at
        most ``QUEUE_LOAD_MAX_AGE_S`` ago)."""
        if not self._main.up:
            raise AmiError("AMI is not connected")
        now = asyncio.get_running_loop().time()
        read = self._loads.get(queue)
        if read is not None and now - read[0] < QUEUE_LOAD_MAX_AGE_S:
            return read[1]
        load = await self._queue_summary(queue)
        self._loads[queue] = (now, load)
        return load

    async def _queue_summary(self, queue: str) -> tuple[int, int]:
        future = self._main.manager.send_action({"Action": "QueueSummary", "Queue": queue},
                                                as_list=True)
        try:
            async with asyncio.timeout(self.action_timeout):  # not wait_for (see ``action``)
                replies = await asyncio.shield(future)
        except TimeoutError:
            raise AmiError("AMI QueueSummary: no reply") from None
        for reply in replies if isinstance(replies, list) else [replies]:
            if str(reply.get("Event", "")) == "QueueSummary":
                try:
                    return (int(reply.get("Callers", 0) or 0),
                            int(reply.get("Available", 0) or 0))
                except (TypeError, ValueError):  # not a number, or the header twice
                    raise AmiError(f"AMI QueueSummary: unreadable counts for queue {queue}: "
                                   f"{str(reply.get('Callers'))[:40]!r}, "
                                   f"{str(reply.get('Available'))[:40]!r}") from None
        raise AmiError(f"AMI QueueSummary: no summary for queue {queue}")

    async def mix_monitor(self, channel_id: str, path: PurePosixPath, name: str = "") -> str:
        """Start recording the channel ``channel_id`` (its unique id, as ARI gives it) into
        ``path``; return the MixMonitor id. The path is built by the service, never from
        caller data. Given the channel's ``name``, AMI is given that: Asterisk finds a
        channel by its name in one lookup, by its unique id only by going through every
        channel (bench/ami-recording-start/: the action's p99 at 56 calls/s was 560 ms by
        unique id, 17 ms by name). A name AMI could misread is not sent; a name AMI does
        not find (the channel renamed since) is asked again by the unique id."""
        fields = {"Action": "MixMonitor", "Channel": channel_id, "File": str(path),
                  "Options": "i(IVR_MIXMONITOR_ID)"}
        if CHANNEL_NAME.fullmatch(name) and name != channel_id:
            try:
                return await self._mix_monitor(fields | {"Channel": name})
            except AmiNoReply:
                raise  # it may have started: never asked twice
            except AmiError as exc:
                log.info("MixMonitor by the channel's name refused (%s); by its unique id",
                         exc)
        return await self._mix_monitor(fields)

    async def _mix_monitor(self, fields: dict[str, str]) -> str:
        reply = await self.action(fields, self._recorder())
        return str(reply.get("MixMonitorID", ""))

    def _recorder(self) -> _Connection:
        """The recordings' connection with the fewest actions awaiting a reply, or the
        first connection while none of them is logged in."""
        up = [connection for connection in self._recorders if connection.up]
        return min(up, key=lambda connection: connection.waiting) if up else self._main
