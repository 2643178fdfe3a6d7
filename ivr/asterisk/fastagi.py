"""A FastAGI server that survives what the network throws at it: port scans, peers that
connect and say nothing (half-open), peers that close mid-header, garbage, huge headers.
Only Asterisk's addresses are heard; any other peer is closed unread. Each connection has
a deadline; anything malformed is logged and the connection closed.
Parsing is in ``agi.py``; the handlers are the service's (one per script name)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from ivr.asterisk.agi import (
    MAX_HEADER_BYTES,
    AgiError,
    AgiRequest,
    get_variable,
    parse_reply,
    set_variable,
)

log = logging.getLogger(__name__)
# A 520 refusal's usage text: read up to this many lines, kept up to this many characters.
MAX_USAGE_LINES = 40
MAX_USAGE_CHARS = 400


class FastAgiUnavailable(RuntimeError):
    """The FastAGI address cannot be bound (taken, or not this host's)."""


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


class FastAgiServer:
    def __init__(self, host: str, port: int, handlers: Mapping[str, Handler],
                 header_timeout: float = 5.0, handler_timeout: float = 10.0,
                 allowed_peers: frozenset[str] = frozenset({"127.0.0.1"})) -> None:
        self.host = host
        self.port = port
        self.handlers = handlers
        self.allowed_peers = allowed_peers
        self.header_timeout = header_timeout
        self.handler_timeout = handler_timeout
        self.served = 0
        self.refused = 0

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        """Accept connections until cancelled."""
        try:
            server = await asyncio.start_server(self._connection, self.host, self.port,
                                                limit=MAX_HEADER_BYTES)
        except OSError as exc:
            raise FastAgiUnavailable(
                f"FastAGI cannot listen on {self.host}:{self.port}: {exc.strerror}; stop what "
                "holds the port or set IVR_FASTAGI__PORT") from None
        self.port = server.sockets[0].getsockname()[1]
        log.info("FastAGI listening", extra={"address": f"{self.host}:{self.port}"})
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        accepted = time.monotonic()
        try:
            if not peer or peer[0] not in self.allowed_peers:
                # Not Asterisk: nothing it says is read (a report from it would be a
                # forged decision).
                self.refused += 1
                log.warning("FastAGI peer refused: not an Asterisk address",
                            extra={"peer": str(peer)[:64]})
                return
            request = await self._read_request(reader)
            if request is None:
                self.refused += 1
                return
            handler = self.handlers.get(request.script)
            if handler is None:
                self.refused += 1
                log.warning("FastAGI script unknown", extra={"script": request.script[:64]})
                return
            session = AgiSession(reader, writer, self.header_timeout,
                                 round((time.monotonic() - accepted) * 1000, 1))
            async with asyncio.timeout(self.handler_timeout):  # no task of its own
                await handler(request, session)
            self.served += 1
        except (TimeoutError, ConnectionError, AgiError) as exc:
            log.warning("FastAGI connection dropped: %s", exc, extra={"peer": str(peer)})
        except Exception:
            log.exception("FastAGI handler failed", extra={"peer": str(peer)})
        finally:
            writer.close()
            with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()

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
