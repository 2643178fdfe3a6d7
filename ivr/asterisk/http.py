"""A small HTTP/1.1 client for ARI's REST calls: kept-alive connections to one host, a
bounded pool, Basic authentication, JSON in and out.

A call costs ARI several requests (answer, the notice's playback, variables, continue);
a general-purpose client spent more of the service's CPU on each of them than
the rest of the call's handling together (``make bench``, profiled with py-spy). This one
writes the request in one go and reads a Content-Length or chunked response; nothing else
of HTTP is needed to talk to Asterisk.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

MAX_HEAD = 64 * 1024
# An idle connection older than this is not reused (Asterisk closes them after 15 s).
IDLE_SECONDS = 10.0


class HttpError(Exception):
    """The request could not be carried out (connection, timeout, malformed reply)."""


class ConnectionRefused(HttpError):
    """Nothing listens at the address (the host answered so): the server is not running."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


class HttpPool:
    """Requests to ``base_url`` (e.g. ``http://127.0.0.1:8088/ari``), at most
    ``max_connections`` at once, each connection reused while the server keeps it."""

    def __init__(self, base_url: str, username: str, password: str, max_connections: int,
                 timeout: float = 10.0, connect_timeout: float = 3.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"ARI URL must be http://host[:port]: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._fixed = (f"Host: {parts.netloc}\r\nAuthorization: Basic {token}\r\n"
                       "Accept: application/json\r\n").encode()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)

    async def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                      json: Any = None) -> Response:
        head, body = self._encode(method, path, params, json)
        async with self._slots:
            for attempt in range(2):
                connection = self._reusable() if attempt == 0 else None
                reused = connection is not None
                if connection is None:
                    connection = await self._connect()
                try:
                    async with asyncio.timeout(self.timeout):
                        response, keep = await self._exchange(connection, head + body)
                except (OSError, asyncio.IncompleteReadError, HttpError, TimeoutError) as exc:
                    connection.close()
                    # A kept-alive connection the server had closed meanwhile (nothing of
                    # a response came back): once more, on a new connection.
                    if reused and attempt == 0 and _closed_before_reply(exc):
                        continue
                    raise HttpError(f"{type(exc).__name__}: {exc}") from None
                if keep:
                    connection.idle_since = time.monotonic()
                    self._idle.append(connection)
                else:
                    connection.close()
                return response
        raise HttpError("unreachable")  # pragma: no cover

    def _reusable(self) -> _Connection | None:
        """The most recently used idle connection; those idle too long are closed (the
        server drops them after its keep-alive time, 15 s for Asterisk)."""
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if now - connection.idle_since < IDLE_SECONDS:
                return connection
            connection.close()
        return None

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _encode(self, method: str, path: str, params: dict[str, Any] | None,
                json: Any) -> tuple[bytes, bytes]:
        target = self.prefix + quote(path, safe="/:@-._~!$&'()*+,;=")
        if params:
            target += "?" + urlencode({k: str(v) for k, v in params.items()})
        body = b"" if json is None else jsonlib.dumps(json).encode()
        head = (f"{method} {target} HTTP/1.1\r\n".encode() + self._fixed
                + (b"Content-Type: application/json\r\n" if json is not None else b"")
                + f"Content-Length: {len(body)}\r\n\r\n".encode())
        return head, body

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port,
                                                               limit=MAX_HEAD)
        except (OSError, TimeoutError) as exc:
            failure = ConnectionRefused if isinstance(exc, ConnectionRefusedError) else HttpError
            raise failure(f"cannot connect to {self.host}:{self.port}: "
                          f"{type(exc).__name__}: {exc}") from None
        return _Connection(reader, writer)

    async def _exchange(self, connection: _Connection, request: bytes) -> tuple[Response, bool]:
        connection.writer.write(request)
        await connection.writer.drain()
        try:
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError("response head too large") from None
        status, headers = parse_head(head)
        reader = connection.reader
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HttpError("bad Content-Length") from None
            body = await reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            return Response(status, await reader.read()), False
        keep = headers.get("connection", "").lower() != "close"
        return Response(status, body), keep


def _closed_before_reply(error: BaseException) -> bool:
    if isinstance(error, asyncio.IncompleteReadError):
        return not error.partial
    return isinstance(error, (ConnectionResetError, BrokenPipeError))


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (names lowered) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"malformed status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(f"malformed header {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError("bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
