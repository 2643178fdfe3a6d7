"""A FastAGI server that survives what the network throws at it: port scans, peers that
connect and say nothing (half-open), peers that close mid-header, garbage, huge headers.
Only Asterisk's addresses are heard; any other peer is closed unread. Each connection has
a deadline; anything malformed is logged and the connection closed (``listener.py``).
Parsing is in ``agi.py``; the handlers are the service's (one per script name)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ivr.asterisk.agi import (
    MAX_HEADER_BYTES,
    AgiError,
    AgiRequest,
    get_variable,
    parse_reply,
    set_variable,
)
from ivr.asterisk.listener import Listener, since

log = logging.getLogger(__name__)
# A 520 refusal's usage text: read up to this many lines, kept up to this many characters.
MAX_USAGE_LINES = 40
MAX_USAGE_CHARS = 400


class AgiSession:
    """The commands a handler may send on one FastAGI connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 command_timeout: float, header_ms: float = 0.0) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = command_timeout
        # From the connection's accept to its whole header: Asterisk writing the header a
        # line at a time, and this process's turns to read it.
        self.header_ms = header_ms

    async def _command(self, line: bytes) -> tuple[int, str, str | None]:
        self._writer.write(line)
        await self._writer.drain()
        async with asyncio.timeout(self._timeout):  # no task of its own, as wait_for makes
            reply = await self._reader.readline()
            if not reply:
                raise ConnectionError("the channel left the AGI")
            code, result, said = parse_reply(reply)
            if reply.startswith(b"520-"):
                said = await self._usage(said)
        return code, result, said

    async def _usage(self, said: str | None) -> str:
        """A ``520-`` refusal goes on with the command's usage up to ``520 End of proper
        usage.``: read it all (the next reply must not start inside it), and keep it for
        the error, which then says what Asterisk expected."""
        usage = [said or ""]
        for _ in range(MAX_USAGE_LINES):
            line = await self._reader.readline()
            if not line or line.startswith(b"520 "):
                break
            usage.append(line.decode("utf-8", "replace").strip())
        return " ".join(part for part in usage if part)[:MAX_USAGE_CHARS]

    async def set(self, name: str, value: str) -> None:
        code, _, said = await self._command(set_variable(name, value))
        if code != 200:
            raise AgiError(f"SET VARIABLE {name}: {code} {said or ''}".rstrip())

    async def get(self, name: str) -> str | None:
        code, result, value = await self._command(get_variable(name))
        return value if code == 200 and result == "1" else None


Handler = Callable[[AgiRequest, AgiSession], Awaitable[None]]


class FastAgiServer(Listener[Handler]):
    name = "FastAGI"
    port_setting = "IVR_FASTAGI__PORT"
    dropped = (TimeoutError, ConnectionError, AgiError)
    limit = MAX_HEADER_BYTES

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     accepted: float) -> bool:
        request = await self._read_request(reader)
        if request is None:
            return False
        handler = self.handlers.get(request.script)
        if handler is None:
            log.warning("FastAGI script unknown", extra={"script": request.script[:64]})
            return False
        session = AgiSession(reader, writer, self.header_timeout, since(accepted))
        async with asyncio.timeout(self.handler_timeout):  # no task of its own
            await handler(request, session)
        return True

    async def _read_request(self, reader: asyncio.StreamReader) -> AgiRequest | None:
        try:
            async with asyncio.timeout(self.header_timeout):
                block = await reader.readuntil(b"\n\n")
        except asyncio.IncompleteReadError:
            return None  # closed before the header block ended (a scan, a half-open peer)
        except asyncio.LimitOverrunError:
            log.warning("FastAGI header block too large")
            return None
        except TimeoutError:
            log.warning("FastAGI peer sent no complete header in time")
            return None
        try:
            return AgiRequest.parse(block[:-2])
        except AgiError as exc:
            log.warning("FastAGI request refused: %s", exc)
            return None
