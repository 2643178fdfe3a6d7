"""ivr.asterisk.ami against a hostile AMI server (issue 7, point 4).

A local server on 127.0.0.1 speaks AMI to :class:`AmiClient`: the banner, a login, then
malformed frames (binary junk, headers of a megabyte, an AgentConnect without a channel,
frames run together without their blank line, which are dropped with the connection kept,
a QueueSummary whose counts are not numbers) and a connection dropped in the middle of a
frame. The service must go on: an agent is
never credited from a malformed event, a bad queue summary is an :class:`AmiError` (the
missed call is still recorded, rule 4), and with AMI gone the recording is refused at once
(``AmiError``), never waited for, until the client has logged in again.

Each test runs in its own event loop: panoramisk's reconnect timers die with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath

import pytest

from ivr.asterisk.ami import (
    QUEUE_LOAD_MAX_AGE_S,
    AgentConnected,
    AmiClient,
    AmiError,
    AmiNoReply,
)
from ivr.metrics.health import PartDown, curl_check
from ivr.settings import AmiSettings

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
END = b"\r\n\r\n"


def parse_action(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode(errors="replace").split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.lower()] = value
    return fields


class Session:
    """One client connection, logged in; the test says what the server sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.login: dict[str, str] = {}

    async def action(self) -> dict[str, str]:
        return parse_action(await self.reader.readuntil(END))

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def reply(self, action: dict[str, str], **fields: str) -> None:
        lines = [f"Response: {fields.pop('Response', 'Success')}",
                 f"ActionID: {action['actionid']}", *(f"{k}: {v}" for k, v in fields.items())]
        self.send("\r\n".join(lines).encode() + END)

    def drop(self) -> None:
        self.writer.close()


class FakeAmi:
    """An AMI server on 127.0.0.1 that accepts any login."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[Session] = asyncio.Queue()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.open: list[Session] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for session in self.open:
            session.drop()
        await self.server.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(reader, writer)
        self.open.append(session)
        writer.write(BANNER)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            login = await session.action()
            assert login["action"].lower() == "login"
            session.login = login
            session.reply(login, Message="Authentication accepted")
            await self.sessions.put(session)

    async def session(self) -> Session:
        return await asyncio.wait_for(self.sessions.get(), 5)


Scenario = Callable[[FakeAmi, AmiClient, list[AgentConnected]], Awaitable[None]]


def run(scenario: Scenario, recording_connections: int = 0) -> None:
    """``scenario`` against a client logged in to a fresh server; one connection unless
    said (``test_ami_connections.py``: the recordings' own)."""
    async def main() -> None:
        ami = FakeAmi()
        await ami.start()
        client = AmiClient(AmiSettings(port=ami.port, recording_connections=recording_connections),
                           action_timeout=0.5)
        for connection in (client._main, *client._recorders):
            # the service waits 1 s; tests need not
            connection.manager.reconnect_timeout = 0.05
        agents: list[AgentConnected] = []
        client.on_agent_connected(agents.append)
        try:
            async with asyncio.timeout(10):
                await client.connect(wait=5)
                assert client.logged_in.is_set()
                await scenario(ami, client, agents)
        finally:
            client.close()
            await ami.stop()

    asyncio.run(main())


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def answer_mix_monitor(session: Session) -> None:
    action = await session.action()
    assert action["action"] == "MixMonitor"
    session.reply(action, MixMonitorID="0x1")


async def record(client: AmiClient, session: Session) -> str:
    """A MixMonitor the server answers: the client still works."""
    answering = asyncio.create_task(answer_mix_monitor(session))
    mixmonitor_id = await client.mix_monitor("1.1", PurePosixPath("/rec/x.wav"))
    await answering
    return mixmonitor_id


@pytest.mark.parametrize(("name", "named"), [
    ("PJSIP/carrier-0000041a", "PJSIP/carrier-0000041a"),
    ("Local/040404040@ivr-queues-0000002b;1", "Local/040404040@ivr-queues-0000002b;1"),
    ("", "1.1"),  # no name given: the unique id
    ("PJSIP/a b", "1.1"),
    ("PJSIP/a\r\nAction: Originate", "1.1"),
    ("PJSIP/x\n", "1.1"),
    ("P" * 201, "1.1"),
])
def test_mixmonitor_names_the_channel_by_its_name_unless_ami_could_misread_it(
        name: str, named: str) -> None:
    """By name, Asterisk finds the channel in one lookup; by unique id, only by going
    through every channel. A name that could end AMI's header line is never sent."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        recording = asyncio.create_task(
            client.mix_monitor("1.1", PurePosixPath("/rec/x.wav"), name))
        action = await session.action()
        session.reply(action, MixMonitorID="0x1")
        assert await recording == "0x1"
        assert (action["action"], action["channel"], action["file"]) == (
            "MixMonitor", named, "/rec/x.wav")

    run(scenario)


def test_a_name_ami_does_not_find_is_asked_again_by_the_unique_id() -> None:
    """The channel renamed since (AMI: no such channel): the recording is asked for by its
    unique id, which does not change."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        recording = asyncio.create_task(
            client.mix_monitor("1.1", PurePosixPath("/rec/x.wav"), "PJSIP/old-00000001"))
        first = await session.action()
        session.reply(first, Response="Error", Message="No such channel")
        second = await session.action()
        session.reply(second, MixMonitorID="0x2")
        assert await recording == "0x2"
        assert (first["channel"], second["channel"]) == ("PJSIP/old-00000001", "1.1")

    run(scenario)


def test_a_name_ami_took_without_answering_is_not_asked_again() -> None:
    """No reply in time: the recording may have started, so it is not asked for twice."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        with pytest.raises(AmiNoReply):
            await client.mix_monitor("1.1", PurePosixPath("/rec/x.wav"), "PJSIP/a-00000001")
        action = await session.action()
        assert action["channel"] == "PJSIP/a-00000001"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await session.action()

    run(scenario)


def test_malformed_frames_change_nothing_and_credit_no_agent() -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        for junk in (b"\x00\xff\xfe\x80\x81 not: utf-8 \xc3\x28" + END,
                     b"no header in this frame at all" + END,
                     END + END,
                     b"Event: AgentConnect\r\nMemberName: agent1\r\nQueue: service" + END,
                     b"Event: AgentConnect\r\nUniqueid: \r\nMemberName: agent1" + END,
                     b"Event: Newexten\r\nX-Huge: " + b"a" * (1 << 20) + END,
                     b"Event: AgentConnect\r\nUniqueid: 1.1\r\nMemberName: agent2" + END):
            session.send(junk)
        await until(lambda: bool(agents))
        assert agents == [AgentConnected("1.1", "agent2")]
        assert client.logged_in.is_set()
        assert await record(client, session) == "0x1"

    run(scenario)


def test_frames_run_together_are_dropped_and_the_connection_kept() -> None:
    """Two frames without the blank line between them are one frame with every header
    twice. panoramisk alone fails on it and drops the connection; the client drops the
    frame instead: no agent is credited from it, no new login, and the next good
    AgentConnect on the same connection is delivered."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        for mangled in (b"Event: AgentConnect\r\nUniqueid: 2.2\r\nMemberName: agent1\r\n"
                        b"Event: AgentConnect\r\nUniqueid: 3.3\r\nMemberName: agent1" + END,
                        b"Event: AgentConnect\r\nUniqueid: 6.6\r\nUniqueid: 7.7" + END,
                        b"Response: Success\r\nActionID: x\r\nResponse: Error\r\n"
                        b"ActionID: y" + END):
            session.send(mangled)
        session.send(b"Event: AgentConnect\r\nUniqueid: 4.4\r\nMemberName: agent1" + END)
        await until(lambda: bool(agents))
        assert agents == [AgentConnected("4.4", "agent1")]
        assert await record(client, session) == "0x1"  # the same connection answers
        assert client.logged_in.is_set()
        assert client.reconnects == 0
        assert ami.sessions.empty(), "the client logged in again"

    run(scenario)


@pytest.mark.parametrize("counts", [
    b"Callers: lots\r\nAvailable: 2",
    b"Callers: 3\r\nAvailable: 2.5",
    b"Callers: 3\r\nCallers: 4\r\nAvailable: 2",
])
def test_a_queue_summary_with_unreadable_counts_is_an_ami_error(counts: bytes) -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()

        async def summary() -> None:
            action = await session.action()
            action_id = action["actionid"].encode()
            session.reply(action, EventList="start", Message="Queue summary will follow")
            session.send(b"Event: QueueSummary\r\nQueue: service\r\n" + counts +
                         b"\r\nActionID: " + action_id + END)
            session.send(b"Event: QueueSummaryComplete\r\nEventList: Complete\r\nActionID: "
                         + action_id + END)

        answering = asyncio.create_task(summary())
        with pytest.raises(AmiError, match="unreadable counts"):
            await client.queue_load("service")
        await answering

    run(scenario)


def test_a_sane_queue_summary_is_read() -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()

        async def summary() -> None:
            action = await session.action()
            action_id = action["actionid"].encode()
            session.reply(action, EventList="start", Message="Queue summary will follow")
            session.send(b"Event: QueueSummary\r\nQueue: service\r\nCallers: 7\r\n"
                         b"Available: 2\r\nActionID: " + action_id + END)
            session.send(b"Event: QueueSummaryComplete\r\nActionID: " + action_id + END)

        answering = asyncio.create_task(summary())
        assert await client.queue_load("service") == (7, 2)
        await answering

    run(scenario)


def test_a_queue_s_load_is_asked_again_only_once_its_reading_is_old() -> None:
    """Calls missed within ``QUEUE_LOAD_MAX_AGE_S`` of each other share one QueueSummary;
    the next after it asks AMI again, and reads the new counts."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        asked: list[str] = []

        async def summary(callers: int) -> None:
            action = await session.action()
            asked.append(action["queue"])
            action_id = action["actionid"].encode()
            session.reply(action, EventList="start", Message="Queue summary will follow")
            session.send(b"Event: QueueSummary\r\nQueue: service\r\nCallers: %d\r\n"
                         b"Available: 2\r\nActionID: %s%s" % (callers, action_id, END))
            session.send(b"Event: QueueSummaryComplete\r\nActionID: " + action_id + END)

        answering = asyncio.create_task(summary(7))
        assert await client.queue_load("service") == (7, 2)
        await answering
        assert await client.queue_load("service") == (7, 2)
        assert asked == ["service"]
        loop = asyncio.get_running_loop()
        read_at, load = client._loads["service"]
        client._loads["service"] = (read_at - QUEUE_LOAD_MAX_AGE_S, load)
        answering = asyncio.create_task(summary(9))
        assert await client.queue_load("service") == (9, 2)
        await answering
        assert asked == ["service", "service"]
        assert client._loads["service"][0] <= loop.time()

    run(scenario)


def test_with_the_connection_dropped_mid_frame_recording_is_refused_at_once() -> None:
    """AMI gone: MixMonitor fails fast with "AMI is not connected" (the caller goes on to
    the queue unrecorded) until AMI is back and the client has logged in again."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        session.send(b"Event: AgentConnect\r\nUniqueid: 5.5\r\nMemberNa")
        await ami.stop()
        await until(lambda: not client.logged_in.is_set())
        for _ in range(3):
            async with asyncio.timeout(0.1):
                with pytest.raises(AmiError, match="AMI is not connected"):
                    await client.mix_monitor("1.1", PurePosixPath("/rec/x.wav"))
            with pytest.raises(AmiError, match="AMI is not connected"):
                await client.queue_load("service")
            await asyncio.sleep(0.1)  # reconnects are refused meanwhile
        await ami.start()  # the same port
        back = await ami.session()
        await until(client.logged_in.is_set)
        assert await record(client, back) == "0x1"
        assert agents == []  # the half frame was never an event

    run(scenario)


def test_a_recording_asked_for_as_the_connection_drops_fails_within_the_timeout() -> None:
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()

        async def drop_on_action() -> None:
            await session.action()
            session.send(b"Response: Succ")
            session.drop()

        dropping = asyncio.create_task(drop_on_action())
        async with asyncio.timeout(2):
            with pytest.raises(AmiError):
                await client.mix_monitor("1.1", PurePosixPath("/rec/x.wav"))
        await dropping
        await ami.session()  # logged in again; MixMonitor is never replayed (forgetable)
        await until(client.logged_in.is_set)

    run(scenario)


def test_whether_func_curl_is_loaded_is_asked_of_ami_and_read() -> None:
    """ModuleCheck: loaded (Success with its version), not loaded (the error Asterisk
    gives, the health check's "down"), or another error, which is not taken for either."""
    async def scenario(ami: FakeAmi, client: AmiClient, agents: list[AgentConnected]) -> None:
        session = await ami.session()
        check = curl_check(client)

        async def answer(**fields: str) -> None:
            action = await session.action()
            assert (action["action"], action["module"]) == ("ModuleCheck", "func_curl")
            session.reply(action, **fields)

        answering = asyncio.create_task(answer(Version="22.6.0"))
        await check()
        await answering
        answering = asyncio.create_task(answer(Response="Error", Message="Module not loaded"))
        with pytest.raises(PartDown, match="no func_curl loaded: the dialplan cannot ask"):
            await check()
        await answering
        answering = asyncio.create_task(answer(Response="Error",
                                               Message="Permission denied"))
        with pytest.raises(AmiError, match="Permission denied"):
            await client.module_loaded("func_curl")
        await answering

    run(scenario)
