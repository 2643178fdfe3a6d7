"""The HTTP listener for the dialplan's reports (``CURL()``, ``[dialplan] decision_request =
"http"``): one request a connection, answered with the words the dialplan sets its
variable to, then closed. It survives what FastAGI's does (port scans, half-open peers,
garbage, huge heads: ``listener.py``); anything that is not a report gets an empty answer,
which the dialplan takes as no decision: nothing recorded.
Parsing is in ``report_http.py``; the handlers are the service's (one per path)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ivr.asterisk.listener import Listener, since
from ivr.asterisk.report_http import (
    MAX_HEAD_BYTES,
    ReportError,
    ReportRequest,
    answer,
    body_text,
)

log = logging.getLogger(__name__)

# The request, its body (URL-encoded fields) and the milliseconds from the accept to its
# end -> the answer's body ("" for none).
ReportHandler = Callable[[ReportRequest, str, float], Awaitable[str]]


class ReportServer(Listener[ReportHandler]):
    name = "HTTP reports"
    port_setting = "IVR_FASTAGI__REPORT_PORT"
    dropped = (TimeoutError, ConnectionError, ReportError)
    limit = MAX_HEAD_BYTES

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     accepted: float) -> bool:
        try:
            async with asyncio.timeout(self.header_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                request = ReportRequest.parse(head[:-4])
                body = body_text(await reader.readexactly(request.content_length))
        except asyncio.IncompleteReadError:
            return False  # closed before the request ended (a scan, a half-open peer)
        except (asyncio.LimitOverrunError, ReportError) as exc:
            log.warning("HTTP report refused: %s", exc)
            await self._send(writer, answer(400))
            return False
        except TimeoutError:
            log.warning("HTTP report: no complete request in time")
            return False
        handler = self.handlers.get(request.path)
        if handler is None:
            log.warning("HTTP report path unknown", extra={"path": request.path})
            await self._send(writer, answer(404))
            return False
        async with asyncio.timeout(self.handler_timeout):  # no task of its own
            words = await handler(request, body, since(accepted))
            await self._send(writer, answer(200, words))
        return True

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
