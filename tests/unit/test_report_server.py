"""The HTTP listener for the notice's decision (``CURL()``) survives port scans, half-open
peers, garbage and huge heads, hears only Asterisk's addresses, and answers a real report
(sent here by curl, the command of the library Asterisk's CURL() uses) with the words the
dialplan sets its variable to; anything else gets an empty answer: no decision."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from ivr.asterisk.fastagi import FastAgiServer
from ivr.asterisk.listener import Listener, ListenerUnavailable
from ivr.asterisk.report_http import ReportError, ReportRequest, answer
from ivr.asterisk.report_server import ReportHandler, ReportServer

from .listening import listening

REPORT = "v=1&entered=1795404920.100&digit=1"
REQUEST = (f"POST /notice-decision?channel=1795.1&name=PJSIP%2Fsipp-00000001 HTTP/1.1\r\n"
           f"Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(REPORT)}\r\n\r\n{REPORT}").encode()


class Reports:
    """A handler that notes what it was given and answers ``consent:no``."""

    def __init__(self) -> None:
        self.given: list[tuple[str | None, str | None, str, float]] = []

    async def __call__(self, request: ReportRequest, body: str, header_ms: float) -> str:
        self.given.append((request.get("channel"), request.get("name"), body, header_ms))
        return "consent:no"


def serving(handler: ReportHandler, **options: Any) -> AbstractAsyncContextManager[ReportServer]:
    return listening(ReportServer("127.0.0.1", 0, {"/notice-decision": handler},
                                  **{"header_timeout": 0.3, "handler_timeout": 2, **options}))


async def exchange(port: int, data: bytes, **connect: Any) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **connect)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()


def body_of(response: bytes) -> tuple[bytes, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


async def test_curl_s_report_is_answered_with_the_words_for_the_dialplan() -> None:
    """What curl sends (as Asterisk's CURL(url,data) does: a POST of the report) reaches
    the handler whole: the channel, its name and the report; curl prints the answer."""
    reports = Reports()
    async with serving(reports) as server:
        url = (f"http://127.0.0.1:{server.port}/notice-decision"
               "?channel=1795404928.12&name=PJSIP%2Fsipp-0000001a")
        done = await asyncio.to_thread(subprocess.run, [
            "curl", "-sS", "--max-time", "5", "--data", REPORT, url],
            capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "consent:no", "")
    [(channel, name, body, header_ms)] = reports.given
    assert (channel, name, body) == ("1795404928.12", "PJSIP/sipp-0000001a", REPORT)
    assert 0 <= header_ms < 2000
    assert server.served == 1


async def test_hostile_peers_do_not_stop_the_next_real_report() -> None:
    reports = Reports()
    async with serving(reports) as server:
        port = server.port
        # a port scan: connect, close
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        # half-open: connect, say nothing (closed after the head's timeout, no answer)
        assert await exchange(port, b"") == b""
        # a head cut short, a body shorter than its length: closed, no answer
        assert await exchange(port, REQUEST[:50]) == b""
        assert await exchange(port, REQUEST[:-3]) == b""
        # garbage, another method, an oversized head or body, a chunked body: refused
        for junk in (os.urandom(512) + b"\r\n\r\n",
                     REQUEST.replace(b"POST", b"GET", 1),
                     REQUEST.replace(b"Host: 127.0.0.1", b"X: " + b"a" * 5000),
                     REQUEST.replace(f"Length: {len(REPORT)}".encode(), b"Length: 99999"),
                     REQUEST.replace(b"Content-Length", b"Transfer-Encoding: chunked\r\n"
                                     b"Content-Length"),
                     REQUEST.replace(b"\r\nHost", b"\r\nContent-Length: 1\r\nHost")):
            assert body_of(await exchange(port, junk)) == (b"HTTP/1.1 400 Bad Request", b"")
        # another path: not found
        assert body_of(await exchange(port, REQUEST.replace(b"/notice-decision", b"/x"))) == (
            b"HTTP/1.1 404 Not Found", b"")
        assert reports.given == [] and server.served == 0 and server.refused >= 10
        # and a real report is still answered
        assert body_of(await exchange(port, REQUEST)) == (b"HTTP/1.1 200 OK", b"consent:no")
        assert len(reports.given) == 1 and server.served == 1


async def test_a_peer_that_is_not_asterisk_is_closed_unread() -> None:
    """A report from anywhere but Asterisk would be a forged decision: the peer is closed
    before a byte is read, and the handler never runs."""
    reports = Reports()
    async with serving(reports, allowed_peers=frozenset({"127.0.0.2"})) as server:
        with contextlib.suppress(ConnectionResetError):
            assert await exchange(server.port, REQUEST) == b""
        assert reports.given == [] and server.refused == 1
        # Asterisk's own address is heard
        response = await exchange(server.port, REQUEST, local_addr=("127.0.0.2", 0))
        assert body_of(response) == (b"HTTP/1.1 200 OK", b"consent:no")
        assert server.served == 1


async def test_a_handler_that_fails_or_stalls_gives_no_answer() -> None:
    """No answer at all, not an empty one: CURL() then sets nothing, and the dialplan
    records nothing. The next report is served."""
    async def failing(request: ReportRequest, body: str, header_ms: float) -> str:
        if body.endswith("digit=2"):
            await asyncio.sleep(10)
        raise RuntimeError("the store is away")

    async with serving(failing, handler_timeout=0.3) as server:
        assert await exchange(server.port, REQUEST) == b""
        assert await exchange(server.port, REQUEST.replace(b"digit=1", b"digit=2")) == b""
        assert server.served == 0


def test_the_answer_carries_only_the_service_s_own_words() -> None:
    assert answer(200, "consent:0b6f.wav:1795404928.500").endswith(
        b"\r\n\r\nconsent:0b6f.wav:1795404928.500")
    for words in ('"; EXEC System', "a" * 201, "\r\nX: y", "žž"):
        with pytest.raises(ReportError):
            answer(200, words)
    with pytest.raises(ReportError):
        answer(500)


def test_a_request_head_parses_or_is_refused() -> None:
    head = REQUEST.partition(b"\r\n\r\n")[0]
    request = ReportRequest.parse(head)
    assert (request.path, request.get("channel"), request.content_length) == (
        "/notice-decision", "1795.1", len(REPORT))
    for bad in (b"", b"POST / HTTP/1.1", head.replace(b"HTTP/1.1", b"HTTP/2"),
                head + b"\r\nno colon", head.replace(b"1795.1", b"1795.1&channel=2"),
                head.replace(b"127.0.0.1", "č".encode()),
                head.replace(b"POST /notice-decision", b"POST /../etc"),
                head + b"\r\nX: y" * 40):
        with pytest.raises(ReportError):
            ReportRequest.parse(bad)


@pytest.mark.parametrize(("make", "setting"), [
    (lambda port: ReportServer("127.0.0.1", port, {}), "IVR_FASTAGI__REPORT_PORT"),
    (lambda port: FastAgiServer("127.0.0.1", port, {}), "IVR_FASTAGI__PORT"),
])
async def test_a_port_taken_is_a_clear_error_naming_the_setting(
        make: Callable[[int], Listener[Any]], setting: str) -> None:
    """``ivr serve`` stops with one line (ivr/cli.py prints it), not a traceback."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        with pytest.raises(ListenerUnavailable) as raised:
            await make(port).serve()
    finally:
        holder.close()
    assert str(raised.value).startswith(f"{make(port).name} cannot listen on 127.0.0.1:{port}: ")
    assert str(raised.value).endswith(f"stop what holds the port or set {setting}")
