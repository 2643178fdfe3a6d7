"""The FastAGI server survives port scans, half-open peers, garbage and huge headers, and
still serves the next real request (issue: desk-phone path of callbacks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from ivr.asterisk.agi import AgiError, AgiRequest, parse_reply, set_variable
from ivr.asterisk.fastagi import AgiSession, FastAgiServer, Handler

from .listening import listening

REQUEST = (b"agi_network: yes\nagi_network_script: callback-dial\nagi_channel: PJSIP/agent1-1\n"
           b"agi_uniqueid: 1795.1\nagi_callerid: agent1\nagi_extension: 031000808\n\n")


def serving(handler: Handler, **options: Any) -> AbstractAsyncContextManager[FastAgiServer]:
    """A server with ``handler`` as its ``callback-dial``, until the block ends."""
    return listening(FastAgiServer("127.0.0.1", 0, {"callback-dial": handler},
                                   header_timeout=0.3, handler_timeout=2, **options))


async def start(handler_calls: list[str]) -> tuple[FastAgiServer, asyncio.Task[None]]:
    async def dial(request: AgiRequest, agi: AgiSession) -> None:
        handler_calls.append(request.get("extension") or "")
        await agi.set("IVR_RECORD", "no")

    server = FastAgiServer("127.0.0.1", 0, {"callback-dial": dial}, header_timeout=0.3,
                           handler_timeout=2)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready))
    await ready.wait()
    return server, task


async def real_request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    command = await asyncio.wait_for(reader.readline(), 2)
    writer.write(b"200 result=1\n")
    await writer.drain()
    await asyncio.wait_for(reader.read(), 2)  # the server closes when done
    writer.close()
    return command


async def test_hostile_peers_do_not_stop_the_next_real_request() -> None:
    calls: list[str] = []
    server, task = await start(calls)
    try:
        port = server.port
        # a port scan: connect, close
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        # half-open: connect, say nothing (closed by the server after its header timeout)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r.read(), 2) == b""
        w.close()
        # a header cut short, then closed (must not spin)
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"agi_network: yes\nagi_netw")
        await w.drain()
        w.close()
        # garbage, binary, and an oversized header block
        for junk in (os.urandom(512) + b"\n\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\n\n",
                     b"agi_x: " + b"a" * 20000 + b"\n\n"):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(junk)
            await w.drain()
            assert await asyncio.wait_for(r.read(), 2) == b""
            w.close()
        # an unknown script is refused, the connection closed
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(REQUEST.replace(b"callback-dial", b"rm-rf"))
        assert await asyncio.wait_for(r.read(), 2) == b""
        w.close()
        # and a real request is still served
        command = await real_request(port)
        assert command == b'SET VARIABLE IVR_RECORD "no"\n'
        assert calls == ["031000808"]
        assert server.refused >= 5 and server.served == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_the_server_never_sends_caller_data_as_a_variable() -> None:
    with pytest.raises(AgiError):
        set_variable("IVR_RECORD", '"; EXEC System rm -rf /')
    with pytest.raises(AgiError):
        set_variable("bad name", "x")


def test_replies_and_requests_parse_or_refuse() -> None:
    assert parse_reply(b"200 result=1 (ANSWER)\n") == (200, "1", "ANSWER")
    assert parse_reply(b"200 result=0\n") == (200, "0", None)
    # Asterisk's refusals: the code and what it says, so that the error names them
    assert parse_reply(b"510 Invalid or unknown command\n") == (
        510, "", "Invalid or unknown command")
    assert parse_reply(b"520-Invalid command syntax.  Proper usage follows:\n")[0] == 520
    for bad in (b"", b"hello", b"\xff\xfe"):
        with pytest.raises(AgiError):
            parse_reply(bad)
    for bad in (b"", b"not a header", b"agi_x: y\nfoo", b"\xff: x"):
        with pytest.raises(AgiError):
            AgiRequest.parse(bad)


def test_a_long_argument_is_one_header() -> None:
    """The dialplan flow's report (every segment played, with its times, and the caller as
    it arrived) can pass 512 characters: a header value may hold 2 KB."""
    report = "v=1&played=" + "service-question@1795414187.123@1795414195.456~" * 40
    request = AgiRequest.parse(f"agi_network_script: notice-decision\nagi_arg_1: {report}\n"
                               .encode())
    assert request.get("arg_1") == report


async def test_a_peer_that_is_not_asterisk_is_closed_unread() -> None:
    """A report from anywhere but Asterisk would be a forged decision: the peer is closed
    before a byte of it is read, and the handler never runs."""
    calls: list[str] = []

    async def dial(request: AgiRequest, agi: AgiSession) -> None:
        calls.append(request.get("extension") or "")
        await agi.set("IVR_RECORD", "no")

    async with serving(dial, allowed_peers=frozenset({"127.0.0.2"})) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(REQUEST)
        # closed without a command (reset, as what was sent lay unread)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        assert calls == [] and server.refused == 1 and server.served == 0
        # Asterisk's own address is heard
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port,
                                                       local_addr=("127.0.0.2", 0))
        writer.write(REQUEST)
        assert await asyncio.wait_for(reader.readline(), 2) == b'SET VARIABLE IVR_RECORD "no"\n'
        writer.write(b"200 result=1\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        assert calls == ["031000808"] and server.served == 1


async def test_the_handler_is_told_how_long_the_header_took_from_the_accept() -> None:
    """A header that comes in two parts 0.1 s apart: the session's header_ms counts from
    the connection's accept to the whole header (the log of a decision carries it)."""
    took: list[float] = []

    async def dial(request: AgiRequest, agi: AgiSession) -> None:
        took.append(agi.header_ms)
        await agi.set("IVR_RECORD", "no")

    server = FastAgiServer("127.0.0.1", 0, {"callback-dial": dial}, header_timeout=2)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready))
    await ready.wait()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(REQUEST[:40])
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(REQUEST[40:])
        assert await asyncio.wait_for(reader.readline(), 2) == b'SET VARIABLE IVR_RECORD "no"\n'
        writer.write(b"200 result=1\n")
        await asyncio.wait_for(reader.read(), 2)
        writer.close()
        assert len(took) == 1 and 90 <= took[0] < 2000
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_refusal_with_its_usage_is_read_whole_and_named() -> None:
    """Asterisk answers a command it cannot parse with ``520-``, the command's usage and
    ``520 End of proper usage.``: the error carries the usage (it says what Asterisk
    expected), and the next command's reply is not read from inside it."""
    errors: list[str] = []
    values: list[str | None] = []

    async def dial(request: AgiRequest, agi: AgiSession) -> None:
        try:
            await agi.set("IVR_RECORD", "no")
        except AgiError as exc:
            errors.append(str(exc))
        values.append(await agi.get("IVR_RECORD"))

    async with serving(dial) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(REQUEST)
        assert await asyncio.wait_for(reader.readline(), 2) == b'SET VARIABLE IVR_RECORD "no"\n'
        writer.write(b"520-Invalid command syntax.  Proper usage follows:\n"
                     b" Usage: SET VARIABLE <variablename> <value>\n"
                     b"\tSets a variable to the current channel.\n"
                     b"520 End of proper usage.\n")
        assert await asyncio.wait_for(reader.readline(), 2) == b"GET VARIABLE IVR_RECORD\n"
        writer.write(b"200 result=1 (no)\n")
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        assert errors == ["SET VARIABLE IVR_RECORD: 520 Invalid command syntax.  Proper usage "
                          "follows: Usage: SET VARIABLE <variablename> <value> Sets a "
                          "variable to the current channel."]
        assert values == ["no"]
