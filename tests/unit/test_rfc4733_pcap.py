"""testpbx/rfc4733.py: the RFC 4733 presses SIPp plays are pcap files SIPp can read (the
layout of the files Debian ships), and each press of a call has its own place in the
call's RTP stream, so that Asterisk takes a second digit for a new event."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from testpbx.rfc4733 import pcap, pcap_file
from testpbx.sipp import Pause, Press, render_actions

DEBIAN = Path("/usr/share/sip-tester/dtmf_2833_1.pcap")


def packets(data: bytes) -> list[tuple[float, bytes]]:
    """(send time, RTP) of each frame, read as SIPp reads them: Ethernet, IPv4, UDP."""
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert (magic, link) == (0xA1B2C3D4, 1)
    found, offset = [], 24
    while offset < len(data):
        seconds, micros, length, original = struct.unpack("<IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + length]
        offset += 16 + length
        assert length == original == len(frame)
        assert struct.unpack("!H", frame[12:14])[0] == 0x0800  # IPv4
        assert frame[14] == 0x45 and frame[23] == 17  # no options, UDP
        assert struct.unpack("!H", frame[16:18])[0] == length - 14
        assert struct.unpack("!H", frame[38:40])[0] == length - 34
        found.append((seconds + micros / 1e6, frame[42:]))
    return found


def rtp(packet: bytes) -> tuple[bool, int, int, int, int, int, bool, int]:
    """marker, payload type, sequence, timestamp, SSRC, event, end, duration."""
    first, second, seq, timestamp, ssrc = struct.unpack("!BBHII", packet[:12])
    event, flags, duration = struct.unpack("!BBH", packet[12:16])
    assert first == 0x80 and len(packet) == 16
    return (bool(second & 0x80), second & 0x7F, seq, timestamp, ssrc, event,
            bool(flags & 0x80), duration)


def test_a_press_has_the_shape_of_the_files_debian_ships() -> None:
    ours = [rtp(p) for _, p in packets(pcap("1", 0))]
    theirs = [rtp(p) for _, p in packets(DEBIAN.read_bytes())]
    assert len(ours) == len(theirs) == 10
    shape = [(m, pt, event, end, duration) for m, pt, _, _, _, event, end, duration in ours]
    assert shape == [(m, pt, event, end, duration)
                     for m, pt, _, _, _, event, end, duration in theirs]
    sent = [at for at, _ in packets(pcap("1", 0))]
    assert sent == sorted(sent) and 0.13 < sent[-1] < 0.15


def test_each_press_of_a_call_moves_the_stream_on() -> None:
    first = [rtp(p) for _, p in packets(pcap("5", 0))]
    second = [rtp(p) for _, p in packets(pcap("1", 1))]
    assert {r[4] for r in first} == {r[4] for r in second}  # one stream
    assert max(r[2] for r in first) < min(r[2] for r in second)
    assert {r[3] for r in first} != {r[3] for r in second}  # two events
    assert {r[5] for r in first} == {5} and {r[5] for r in second} == {1}
    assert {rtp(p)[5] for _, p in packets(pcap("*", 0))} == {10}
    assert {rtp(p)[5] for _, p in packets(pcap("#", 0))} == {11}


def test_the_scenario_plays_each_press_from_its_own_file(tmp_path: Path) -> None:
    xml, _ = render_actions((Press("5", "rfc4733"), Pause(500), Press("1", "rfc4733"),
                             Press("2", "info")), tmp_path)
    played = [line.split('"')[1] for line in xml.splitlines() if "play_pcap_audio" in line]
    assert played == [str(tmp_path / "dtmf-5-0.pcap"), str(tmp_path / "dtmf-1-1.pcap")]
    assert Path(played[1]).read_bytes() == pcap("1", 1)
    assert pcap_file(tmp_path, "1", 1) == Path(played[1])  # written once


@pytest.mark.parametrize(("digit", "press"), [("A", 0), ("", 0), ("12", 0), ("1", -1)])
def test_what_is_not_a_press_is_refused(digit: str, press: int, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        pcap_file(tmp_path, digit, press)
    assert list(tmp_path.iterdir()) == []
