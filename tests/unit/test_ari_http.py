"""The ARI REST client's HTTP/1.1 against a local server speaking raw bytes: kept-alive
connections reused, Content-Length and chunked replies, a connection the server closed
while idle retried once, errors clear and nothing left hanging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ivr.asterisk.ari import AriClient, AriError, ChannelGone
from ivr.asterisk.http import HttpError, HttpPool, parse_head
from ivr.settings import AriSettings

Reply = Callable[[bytes], bytes | None]


class Server:
    """Answers each request with ``reply(request head)``; ``None`` closes the connection."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                answer = self.reply(head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Serve = Callable[[Reply], Awaitable[tuple[Server, int]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(reply: Reply) -> tuple[Server, int]:
        server = Server(reply)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        return server, listening.sockets[0].getsockname()[1]

    yield start
    for listening in servers:
        listening.close()


def ok(body: bytes = b'{"ok": true}') -> Reply:
    return lambda head: (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def test_connections_are_kept_alive_and_reused(serve: Serve) -> None:
    server, port = await serve(ok())
    pool = HttpPool(f"http://127.0.0.1:{port}/ari", "ivr", "secret", 4)
    for _ in range(5):
        assert (await pool.request("POST", "/channels/1.2/answer")).json() == {"ok": True}
    await pool.aclose()
    assert server.connections == 1 and len(server.requests) == 5
    first = server.requests[0].decode()
    assert first.startswith("POST /ari/channels/1.2/answer HTTP/1.1\r\n")
    assert "Authorization: Basic aXZyOnNlY3JldA==" in first  # ivr:secret


async def test_query_parameters_are_encoded(serve: Serve) -> None:
    server, port = await serve(ok())
    pool = HttpPool(f"http://127.0.0.1:{port}/ari", "ivr", "x", 1)
    await pool.request("POST", "/channels/a/play/p-1", {"media": "sound:ivr/x y&z"})
    assert b"/ari/channels/a/play/p-1?media=sound%3Aivr%2Fx+y%26z HTTP/1.1" in server.requests[0]
    await pool.aclose()


async def test_a_chunked_reply_is_read_whole(serve: Serve) -> None:
    reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"4\r\n[1, \r\n3\r\n2]\n\r\n0\r\n\r\n")
    _, port = await serve(lambda head: reply)
    pool = HttpPool(f"http://127.0.0.1:{port}", "u", "p", 1)
    assert (await pool.request("GET", "/x")).json() == [1, 2]
    await pool.aclose()


async def test_a_connection_closed_while_idle_is_retried_once(
        serve: Serve) -> None:
    answered: list[int] = []

    def reply(head: bytes) -> bytes | None:
        answered.append(1)
        return None if len(answered) == 2 else ok()(head)  # drops the 2nd request unanswered

    server, port = await serve(reply)
    pool = HttpPool(f"http://127.0.0.1:{port}", "u", "p", 1)
    await pool.request("GET", "/a")
    assert (await pool.request("GET", "/b")).status == 200
    assert server.connections == 2
    await pool.aclose()


async def test_no_server_malformed_replies_and_timeouts_are_http_errors(
        serve: Serve) -> None:
    with pytest.raises(HttpError, match="cannot connect"):
        await HttpPool("http://127.0.0.1:1", "u", "p", 1).request("GET", "/")
    _, port = await serve(lambda head: b"SMTP ready\r\n\r\n")
    with pytest.raises(HttpError, match="malformed status line"):
        await HttpPool(f"http://127.0.0.1:{port}", "u", "p", 1).request("GET", "/")
    _, silent = await serve(lambda head: b"")
    slow = HttpPool(f"http://127.0.0.1:{silent}", "u", "p", 1, timeout=0.3)
    with pytest.raises(HttpError, match="TimeoutError"):
        await slow.request("GET", "/")
    with pytest.raises(ValueError, match="http://"):
        HttpPool("https://pbx", "u", "p", 1)
    assert parse_head(b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n") == (204, {"x-a": "b"})


async def test_the_ari_client_maps_statuses_to_its_errors(serve: Serve) -> None:
    def reply(head: bytes) -> bytes:
        if b"/channels/gone" in head:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        if b"/channels/leaving" in head:  # hanging up: no longer in the application
            body = b'{"message":"Channel not in Stasis application"}'
            return b"HTTP/1.1 409 Conflict\r\nContent-Length: %d\r\n\r\n%s" % (len(body),
                                                                                     body)
        if b"/channels/busy" in head:  # any other conflict stays an ARI error
            return b"HTTP/1.1 409 Conflict\r\nContent-Length: 4\r\n\r\nbusy"
        if b"/bridges" in head:
            return b"HTTP/1.1 500 Boom\r\nContent-Length: 4\r\n\r\nboom"
        return b"HTTP/1.1 204 No Content\r\n\r\n"

    _, port = await serve(reply)
    ari = AriClient(AriSettings(url=f"http://127.0.0.1:{port}"))
    assert await ari.request("POST", "/channels/x/answer") is None
    with pytest.raises(ChannelGone):
        await ari.answer("gone")
    with pytest.raises(ChannelGone, match="left the application") as left:
        await ari.set_variable("leaving", "IVR_DECISION", "consent")
    assert left.value.status == 409
    with pytest.raises(AriError, match="409 busy") as busy:
        await ari.answer("busy")
    assert not isinstance(busy.value, ChannelGone)
    with pytest.raises(AriError, match="500 boom") as failed:
        await ari.create_bridge("b")
    assert (failed.value.status, failed.value.refused) == (500, False)
    await ari.aclose()


async def test_only_a_refused_connection_says_nothing_listens_at_ari(serve: Serve) -> None:
    """A refused connection means Asterisk is not running there; a timeout says nothing
    about it (``ivr jobs retire-node`` keeps the node then)."""
    stopped = AriClient(AriSettings(url="http://127.0.0.1:1"))
    with pytest.raises(AriError, match="cannot connect") as refused:
        await stopped.channels()
    assert (refused.value.status, refused.value.refused) == (None, True)
    _, silent = await serve(lambda head: b"")
    hung = AriClient(AriSettings(url=f"http://127.0.0.1:{silent}"))
    hung._http.timeout = 0.3
    with pytest.raises(AriError, match="TimeoutError") as timed_out:
        await hung.channels()
    assert (timed_out.value.status, timed_out.value.refused) == (None, False)


async def test_all_idle_connections_dropped_by_the_server_cost_one_retry(
        serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asterisk closes every idle connection after its keep-alive time: a request after
    a quiet spell must not fail on a second stale connection (it once did)."""
    server, port = await serve(ok())
    pool = HttpPool(f"http://127.0.0.1:{port}", "u", "p", 4)
    await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(3)))  # 3 idle
    for connection in pool._idle:  # the server drops them all
        connection.writer.transport.abort()
    await asyncio.sleep(0.05)
    assert (await pool.request("GET", "/after")).status == 200
    monkeypatch.setattr("ivr.asterisk.http.IDLE_SECONDS", 0.0)  # too old: not even tried
    before = server.connections
    assert (await pool.request("GET", "/later")).status == 200
    assert server.connections == before + 1
    await pool.aclose()
