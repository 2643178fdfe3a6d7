"""FastAGI, sans-I/O: the request header block Asterisk sends, and the replies to the
commands the service sends back. The server (``fastagi.py``) only moves bytes.

>>> request = AgiRequest.parse(b"agi_network_script: callback-dial\\nagi_extension: 031\\n")
>>> request.script, request.get("extension")
('callback-dial', '031')
>>> parse_reply(b"200 result=1 (ANSWER)")
(200, '1', 'ANSWER')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER_BYTES = 8192
MAX_HEADERS = 64
_HEADER = re.compile(r"^agi_([a-z_0-9]{1,32}): ?(.{0,2048})$")  # a report: up to 2 KB
_REPLY = re.compile(r"^(\d{3}) result=(-?\S*)(?: \((.*)\))?")
# Asterisk's refusals carry no result: "510 Invalid or unknown command", "511 Command Not
# Permitted on a dead channel or intercept routine", "520-Invalid command syntax..."
_REFUSAL = re.compile(r"^(5\d\d)[ -](.*)")
_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_VALUE = re.compile(r"^[A-Za-z0-9 _.:+@-]{0,200}$")


class AgiError(ValueError):
    """Bytes that are not a FastAGI request or reply."""


@dataclass(frozen=True, slots=True)
class AgiRequest:
    headers: tuple[tuple[str, str], ...]

    @property
    def script(self) -> str:
        return self.get("network_script") or ""

    def get(self, name: str) -> str | None:
        return dict(self.headers).get(name)

    @classmethod
    def parse(cls, block: bytes) -> AgiRequest:
        """Parse the header block (without its terminating blank line)."""
        if len(block) > MAX_HEADER_BYTES:
            raise AgiError(f"header block larger than {MAX_HEADER_BYTES} bytes")
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            raise AgiError("header block is not UTF-8") from None
        headers = []
        for line in text.splitlines():
            if not line.strip():
                continue
            match = _HEADER.fullmatch(line.rstrip("\r"))
            if match is None:
                raise AgiError(f"not an AGI header: {line[:60]!r}")
            headers.append((match.group(1), match.group(2)))
        if len(headers) > MAX_HEADERS:
            raise AgiError(f"more than {MAX_HEADERS} headers")
        if not headers:
            raise AgiError("empty header block")
        return cls(tuple(headers))


def set_variable(name: str, value: str) -> bytes:
    """The command that sets a channel variable. Names and values are the service's own
    (never caller data); anything else is refused rather than quoted."""
    if not _VARIABLE.fullmatch(name) or not _VALUE.fullmatch(value):
        raise AgiError(f"refusing to send variable {name[:40]!r}")
    return f'SET VARIABLE {name} "{value}"\n'.encode()


def get_variable(name: str) -> bytes:
    if not _VARIABLE.fullmatch(name):
        raise AgiError(f"refusing to ask for variable {name[:40]!r}")
    return f"GET VARIABLE {name}\n".encode()


def parse_reply(line: bytes) -> tuple[int, str, str | None]:
    """``200 result=1 (value)`` -> (200, '1', 'value'); a refusal such as ``510 Invalid or
    unknown command`` -> (510, '', 'Invalid or unknown command')."""
    try:
        text = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise AgiError("reply is not UTF-8") from None
    match = _REPLY.match(text)
    if match is not None:
        return int(match.group(1)), match.group(2), match.group(3)
    refusal = _REFUSAL.match(text)
    if refusal is not None:  # (510, '', 'Invalid or unknown command')
        return int(refusal.group(1)), "", refusal.group(2)[:120]
    raise AgiError(f"not an AGI reply: {text[:60]!r}")
