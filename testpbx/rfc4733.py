"""RFC 4733 telephone-event packets for SIPp to play (``play_pcap_audio``), written here as
pcap files so that one call can press several digits this way.

SIPp takes the packets' RTP as it is. The files Debian ships (``dtmf_2833_<digit>.pcap``)
all carry the same sequence numbers, timestamp and SSRC: a second digit played in the
same call looks to Asterisk like a late copy of the first and is dropped. Each press of a
call here gets its own place in one RTP stream: sequence numbers and the event's
timestamp move on with every press, the SSRC stays.
"""

from __future__ import annotations

import struct
from pathlib import Path

EVENTS = {**{str(d): d for d in range(10)}, "*": 10, "#": 11}
PAYLOAD_TYPE = 101  # as the caller's SDP offers telephone-event (sipp/caller.xml)
SSRC = 0x1A4733
VOLUME = 10  # -10 dBm0
STEP_MS = 20
TONE_PACKETS = 7  # updates every 20 ms, then the end, sent three times
END_COPIES = 3
DURATION_STEP = 320  # timestamp units each update adds (as in the files Debian ships)
# Room between two presses in the stream (sequence numbers, and 8 kHz timestamp units).
SEQ_PER_PRESS = 16
TIMESTAMP_PER_PRESS = 8000 * 10

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet
_ETHERNET = bytes(6) + bytes(6) + struct.pack("!H", 0x0800)
_FROM, _TO = bytes((127, 0, 0, 1)), bytes((127, 0, 0, 1))
_PORTS = (6000, 10000)  # SIPp puts its own in


def event_packets(digit: str, press: int) -> list[tuple[float, bytes]]:
    """The RTP packets of one press (the ``press``-th of its call, from 0), each with its
    send time in seconds from the first."""
    if digit not in EVENTS:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    if press < 0:
        raise ValueError("press counts from 0")
    seq = 1000 + press * SEQ_PER_PRESS
    timestamp = 160 + press * TIMESTAMP_PER_PRESS
    packets = []
    for n in range(TONE_PACKETS + END_COPIES):
        end = n >= TONE_PACKETS
        duration = (TONE_PACKETS if end else n) * DURATION_STEP
        marker = 0x80 if n == 0 else 0
        header = struct.pack("!BBHII", 0x80, marker | PAYLOAD_TYPE,
                             seq + min(n, TONE_PACKETS), timestamp, SSRC)
        event = struct.pack("!BBH", EVENTS[digit], (0x80 if end else 0) | VOLUME, duration)
        at = min(n, TONE_PACKETS) * STEP_MS / 1000 + max(0, n - TONE_PACKETS) * 0.00004
        packets.append((at, header + event))
    return packets


def _frame(rtp: bytes) -> bytes:
    udp = struct.pack("!HHHH", *_PORTS, 8 + len(rtp), 0) + rtp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     _FROM, _TO)
    return _ETHERNET + ip + udp


def pcap(digit: str, press: int) -> bytes:
    """A pcap file of one press."""
    records = []
    for at, rtp in event_packets(digit, press):
        frame = _frame(rtp)
        seconds, micros = divmod(round(at * 1_000_000), 1_000_000)
        records.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    return _PCAP_HEADER + b"".join(records)


def pcap_file(directory: Path, digit: str, press: int) -> Path:
    """The pcap of the ``press``-th digit of a call, written into ``directory`` once."""
    name = f"dtmf-{EVENTS.get(digit, digit)}-{press}.pcap"
    path = directory / name
    if not path.exists():
        data = pcap(digit, press)
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    return path
