"""The dialplan's report over HTTP, sans-I/O: the one request ``CURL()`` makes (a POST,
its head then its body of URL-encoded fields) and the answer the service gives it. The
server (``report_server.py``) only moves bytes.

Asterisk's ``CURL(url,data)`` sends the whole request in one write, where FastAGI's
header goes a line at a time (each waiting for the one before: Nagle's algorithm), and
reads the answer's body into the variable it sets.

>>> request = ReportRequest.parse(b"POST /notice-decision?channel=1795.1&name=PJSIP%2Fa-1 "
...                               b"HTTP/1.1\\r\\nHost: 127.0.0.1:4574\\r\\nContent-Length: 3")
>>> request.path, request.get("name"), request.content_length
('/notice-decision', 'PJSIP/a-1', 3)
>>> reply = answer(200, "consent:no").split(b"\\r\\n")
>>> reply[0], reply[2], reply[-1]
(b'HTTP/1.1 200 OK', b'Content-Length: 10', b'consent:no')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivr.asterisk.form_fields import form_fields

MAX_HEAD_BYTES = 4096
MAX_BODY_BYTES = 4096  # a report is under 1 KB
MAX_HEADERS = 32
MAX_QUERY_FIELDS = 8
_REQUEST_LINE = re.compile(r"^POST (/[A-Za-z0-9_-]{1,64})(?:\?([\x21-\x7e]{0,1024}))? "
                           r"HTTP/1\.[01]$")
_HEADER = re.compile(r"^([A-Za-z0-9-]{1,64}):[ \t]*([\x20-\x7e]{0,1024}?)[ \t]*$")
_LENGTH = re.compile(r"^[0-9]{1,6}$")
_ANSWER = re.compile(r"^[A-Za-z0-9_.:-]{0,200}$")
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found"}


class ReportError(ValueError):
    """Bytes that are not the dialplan's report request."""


@dataclass(frozen=True, slots=True)
class ReportRequest:
    path: str
    query: tuple[tuple[str, str], ...]
    content_length: int

    def get(self, name: str) -> str | None:
        return dict(self.query).get(name)

    @classmethod
    def parse(cls, head: bytes) -> ReportRequest:
        """Parse the request's head (without its terminating blank line)."""
        if len(head) > MAX_HEAD_BYTES:
            raise ReportError(f"request head larger than {MAX_HEAD_BYTES} bytes")
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            raise ReportError("request head is not ASCII") from None
        line, *header_lines = text.split("\r\n")
        match = _REQUEST_LINE.fullmatch(line)
        if match is None:
            raise ReportError(f"not a report's request line: {line[:60]!r}")
        if len(header_lines) > MAX_HEADERS:
            raise ReportError(f"more than {MAX_HEADERS} headers")
        headers: dict[str, str] = {}
        for header in header_lines:
            found = _HEADER.fullmatch(header)
            if found is None:
                raise ReportError(f"not a header: {header[:60]!r}")
            name = found.group(1).lower()
            if name in headers and name in ("content-length", "transfer-encoding"):
                raise ReportError(f"{name} given twice")
            headers[name] = found.group(2)
        if "transfer-encoding" in headers:
            raise ReportError("a report has a length, not a transfer encoding")
        length = headers.get("content-length", "")
        if not _LENGTH.fullmatch(length) or int(length) > MAX_BODY_BYTES:
            raise ReportError(f"content length {length[:10]!r} is not one up to "
                              f"{MAX_BODY_BYTES}")
        return cls(match.group(1), _query(match.group(2) or ""), int(length))


def _query(text: str) -> tuple[tuple[str, str], ...]:
    try:
        pairs = form_fields(text, MAX_QUERY_FIELDS)
    except ValueError as exc:
        raise ReportError(f"not a query: {exc}") from None
    if len({name for name, _ in pairs}) != len(pairs):
        raise ReportError("a query field given twice")
    return tuple(pairs)


def body_text(body: bytes) -> str:
    try:
        return body.decode("ascii")
    except UnicodeDecodeError:
        raise ReportError("report body is not ASCII (URL-encoded)") from None


def answer(status: int, body: str = "") -> bytes:
    """The whole response. Its body becomes a channel variable: only the service's own
    words (never caller data); anything else is refused rather than sent."""
    if status not in REASONS or not _ANSWER.fullmatch(body):
        raise ReportError(f"refusing to answer {status} {body[:40]!r}")
    return (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode("ascii")
