"""The ARI events stream survives a dropped websocket: it reconnects with backoff and says
so (``Connected``), so the service can look for channels it lost sight of."""

from __future__ import annotations

import asyncio
import base64
import json
from contextlib import aclosing
from pathlib import Path

from pydantic import SecretStr
from websockets.asyncio.server import Server, ServerConnection, serve

from ivr.asterisk.ari import AriClient, Connected
from ivr.asterisk.ari_events import StasisStart
from ivr.settings import AriSettings

FRAME = (Path(__file__).parent / "transcripts" / "ari_events.jsonl").read_text().splitlines()[0]


async def first_items(server: Server, count: int) -> list[object]:
    """The first ``count`` items of a client's event stream from ``server``."""
    port = next(iter(server.sockets)).getsockname()[1]
    client = AriClient(AriSettings(url=f"http://127.0.0.1:{port}", password=SecretStr("pw"),
                                   reconnect_max_seconds=1))
    items: list[object] = []
    async with aclosing(client.events()) as events, asyncio.timeout(15):
        async for item in events:
            items.append(item)
            if len(items) == count:
                break
    await client.aclose()
    return items


async def test_dropped_websocket_reconnects_and_reports_it() -> None:
    seen_requests: list[tuple[str, str | None]] = []

    async def drop_after_one_frame(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen_requests.append((ws.request.path, ws.request.headers.get("Authorization")))
        await ws.send(FRAME)
        await ws.close()

    async with serve(drop_after_one_frame, "127.0.0.1", 0) as server:
        items = await first_items(server, 4)

    assert [type(i) for i in items] == [Connected, StasisStart, Connected, StasisStart]
    assert [i.reconnects for i in items if isinstance(i, Connected)] == [0, 1]
    path, auth = seen_requests[0]
    assert path == "/ari/events?app=ivr&subscribeAll=false"
    assert auth == "Basic " + base64.b64encode(b"ivr:pw").decode()
    assert json.loads(FRAME)["type"] == "StasisStart"


async def test_garbage_frames_are_skipped_not_fatal() -> None:
    async def garbage_then_event(ws: ServerConnection) -> None:
        for frame in ("not json", "[]", '{"type": 5}', FRAME):
            await ws.send(frame)
        await ws.wait_closed()

    async with serve(garbage_then_event, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = AriClient(AriSettings(url=f"http://127.0.0.1:{port}"))
        async with aclosing(client.events()) as events, asyncio.timeout(10):
            kinds = [type(await anext(events)), type(await anext(events))]
        await client.aclose()
    assert kinds == [Connected, StasisStart]


async def test_events_up_follows_the_websocket() -> None:
    """/healthz reads ``events_up``: set while connected, cleared the moment it drops
    (Stasis fails then, and callers go to the queue unrecorded)."""
    closed = asyncio.Event()

    async def one_frame_then_close(ws: ServerConnection) -> None:
        await ws.send(FRAME)
        await ws.close()
        closed.set()

    async with serve(one_frame_then_close, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        client = AriClient(AriSettings(url=f"http://127.0.0.1:{port}",
                                       reconnect_max_seconds=1))
        assert not client.events_up.is_set()
        async with aclosing(client.events()) as events, asyncio.timeout(10):
            assert isinstance(await anext(events), Connected)
            assert client.events_up.is_set()
            assert isinstance(await anext(events), StasisStart)
            await closed.wait()
            pending = asyncio.ensure_future(anext(events))  # reads the close, reconnects
            while client.events_up.is_set() and not pending.done():
                await asyncio.sleep(0.01)
            assert isinstance(await pending, Connected)
        assert not client.events_up.is_set()  # the stream closed
        await client.aclose()


async def test_a_connection_whose_application_asterisk_lost_is_made_again() -> None:
    """The websocket opened but Asterisk does not have the application (the previous
    connection's teardown unregistered the name as this one registered it: calls would
    find no application). The client asks ``GET /applications/<app>``, and while Asterisk
    answers 404 it connects again; ``Connected`` comes only once the application is
    there."""
    from websockets.http11 import Request, Response

    opened: list[int] = []
    asked: list[str] = []

    def applications(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/ari/applications/"):
            asked.append(request.path)
            # lost on the first two connections (five asks each), there on the third
            status = 404 if len(opened) < 3 else 200
            return connection.respond(status, "{}" if status == 200 else
                                      '{"message": "Application not found"}')
        return None

    async def events(ws: ServerConnection) -> None:
        opened.append(1)
        if len(opened) == 3:
            await ws.send(FRAME)
        await ws.wait_closed()

    async with serve(events, "127.0.0.1", 0, process_request=applications) as server:
        items = await first_items(server, 2)

    assert [type(i) for i in items] == [Connected, StasisStart]
    assert isinstance(items[0], Connected) and items[0].reconnects == 0
    assert len(opened) == 3
    assert asked[0] == "/ari/applications/ivr" and len(asked) >= 11
