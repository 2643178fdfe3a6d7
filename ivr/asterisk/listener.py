"""What the service's two listeners for the dialplan share (FastAGI, ``fastagi.py``, and
the HTTP report of the notice's decision, ``report_server.py``): only Asterisk's addresses
are heard, any other peer is closed unread (what it would report is a forged decision);
each connection has a deadline; whatever goes wrong with one connection is logged and
closes it, and the next is served."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
H = TypeVar("H")


class ListenerUnavailable(RuntimeError):
    """A listener's address cannot be bound (taken, or not this host's)."""


class Listener(Generic[H]):
    """Accepts the dialplan's connections; a subclass serves each (``_serve``) with its
    handlers (``H``), one per script or path."""

    name = "listener"  # as the logs and errors name it
    port_setting = ""  # the environment variable that moves it
    limit = 8192  # the longest request head read, in bytes
    dropped: tuple[type[Exception], ...] = (TimeoutError, ConnectionError)

    def __init__(self, host: str, port: int, handlers: Mapping[str, H],
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
                                                limit=self.limit)
        except OSError as exc:
            raise ListenerUnavailable(
                f"{self.name} cannot listen on {self.host}:{self.port}: {exc.strerror}; stop "
                f"what holds the port or set {self.port_setting}") from None
        self.port = server.sockets[0].getsockname()[1]
        log.info("%s listening", self.name, extra={"address": f"{self.host}:{self.port}"})
        if ready is not None:
            ready.set()
        async with server:
            await server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     accepted: float) -> bool:
        """Serve one connection from Asterisk; whether it was a request served."""
        raise NotImplementedError

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        accepted = time.monotonic()
        try:
            if not peer or peer[0] not in self.allowed_peers:
                self.refused += 1
                log.warning("%s peer refused: not an Asterisk address", self.name,
                            extra={"peer": str(peer)[:64]})
                return
            if await self._serve(reader, writer, accepted):
                self.served += 1
            else:
                self.refused += 1
        except self.dropped as exc:
            log.warning("%s connection dropped: %s", self.name, exc, extra={"peer": str(peer)})
        except Exception:
            log.exception("%s handler failed", self.name, extra={"peer": str(peer)})
        finally:
            writer.close()
            with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                async with asyncio.timeout(2):
                    await writer.wait_closed()


def since(accepted: float) -> float:
    """Milliseconds since ``accepted`` (``time.monotonic()``), to the tenth."""
    return round((time.monotonic() - accepted) * 1000, 1)
