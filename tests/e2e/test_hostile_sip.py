"""Hostile caller IDs and SIP headers from the carrier trunk (issue 7, point 5), on the real
test PBX with short stand-in notices.

SIPp places every INVITE of this module at once, each to the sales line and to a service
line: From display names with quotes, CR/LF escapes, SQL, 1200 characters and bytes that are
not UTF-8; a From user of URL-encoded shell metacharacters; P-Asserted-Identity and
Remote-Party-ID each given twice with other numbers; a 4 kB header and 30 X- headers; an SDP
that offers only AMR-WB; a CANCEL right after the INVITE. A plain call placed afterwards
must still work.

What Asterisk 22 does with them (found by these tests):

- display names: taken as the caller name, bytes that are not UTF-8 replaced (with a
  warning in its log), every call answered; the service stores no caller name at all;
- the From user: URL-decoded, cut at the first ``;`` and to 79 characters, handed on as the
  caller number; the service stores it as ``caller_raw`` (printable, at most
  CALLER_RAW_MAX) and no E.164 caller;
- P-Asserted-Identity: trusted from the trunk (``trust_id_inbound``), the first one becomes
  the caller number, the second and both Remote-Party-IDs are ignored;
- a 4 kB header and 30 X- headers: accepted, the call goes on as any other;
- only AMR-WB offered: ``488 Not Acceptable Here``, the application never hears of it;
- CANCEL after the 100 Trying: ``200`` to the CANCEL, ``487`` to the INVITE; the channel
  may already have reached the application, whose record is then closed, nothing recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from ivr.store.models import CALLER_RAW_MAX
from testpbx.asterisk import Asterisk
from testpbx.sipp import SCENARIOS, Sipp, SippResult

from .conftest import FaultFigures

pytestmark = pytest.mark.pbx



@dataclass(frozen=True)
class Line:
    number: str  # as dialled
    e164: str  # as stored
    digit: str  # in the callers of its calls, so that no caller ID is on both lines


LINES = {"sales": Line("040404045", "+38640404045", "5"),
         "service": Line("040404040", "+38640404040", "0")}
# Past the end of the short sales notice (3.0 s), so the sales calls are recorded; within
# the service question (2.7-5.0 s), so a service call ends as a hang-up before its end.
HOLD_MS = 4500
# The caller's BYE: seen by the service as the hang-up, or first as the channel gone under a
# command it was giving (a playback, say).
CALLER_LEFT = ("caller hung up", "channel gone")
SHELL = "$(reboot)`reboot`|cat|" + "$(id)" * 20 + ";rm -rf /"
AFTERWARDS = "031759999"  # the plain call placed after the hostile ones


@dataclass(frozen=True)
class Hostile:
    """One INVITE: its SIPp scenario (in ``sipp/``), what it fills in, what should arrive."""

    scenario: str
    caller: str  # the From user as sent
    display_name: bytes = b""
    headers: bytes = b""
    arrives_as: str | None = None  # the caller number as Asterisk hands it on, if not as sent
    stored_as: str | None = None  # the E.164 caller the service should store

    def values(self) -> dict[str, bytes]:
        return {"from_name": self.display_name, "from_user": self.caller.encode(),
                "headers": self.headers, "hold_ms": str(HOLD_MS).encode()}

    @property
    def answered(self) -> bool:
        return self.scenario == "hostile-caller"


def header_lines(*lines: str) -> bytes:
    """Extra INVITE headers, each with the line break before it (see hostile-caller.xml)."""
    return "".join(f"\n{line}" for line in lines).encode()


def hostile_calls(line: str, digit: str) -> dict[str, Hostile]:
    """The hostile INVITEs to one line, from callers 0317<digit>NNNN."""
    def number(n: int) -> str:
        return f"0317{digit}{n:04d}"

    def answered(n: int, **fields: Any) -> Hostile:
        return Hostile("hostile-caller", number(n), **{"stored_as": f"+386{number(n)[1:]}",
                                                       **fields})

    asserted = f"+386319{digit}5001"
    return {f"{line}-{name}": case for name, case in {
        "quotes": answered(1, display_name=b'"Eve \\"the\\" \\"admin\\" O\'Hara" '),
        "crlf": answered(2, display_name=b'"Eve%0d%0aX-Injected: yes\\r\\nVia: evil%0D%0A" '),
        "sql": answered(3, display_name=b"\"'; DROP TABLE calls;--\" "),
        "long-name": answered(4, display_name=b'"' + b"Ab0 " * 300 + b'" '),
        "not-utf8": answered(5, display_name=b'"\xff\xfe\xc3\x28\x80 %FF%FE%C0%AF" '),
        "shell": Hostile("hostile-caller", "".join(f"%{ord(c):02X}" for c in SHELL),
                         arrives_as=SHELL.partition(";")[0][:79]),
        "identity": answered(
            7, arrives_as=asserted, stored_as=asserted, headers=header_lines(
                f"P-Asserted-Identity: <sip:{asserted}@127.0.0.1>",
                f'P-Asserted-Identity: "Boss" <sip:0319{digit}5002@127.0.0.1>',
                f'Remote-Party-ID: "Other" <sip:0319{digit}5003@127.0.0.1>;party=calling;'
                "screen=yes;privacy=off",
                f"Remote-Party-ID: <sip:0319{digit}5004@127.0.0.1>;party=calling")),
        "oversized": answered(8, headers=header_lines(
            "X-Padding: " + "p" * 4096, *(f"X-Hostile-{i:02d}: {i}" for i in range(30)))),
        "codec": Hostile("hostile-codec", number(9)),
        "cancel": Hostile("hostile-cancel", number(10)),
    }.items()}


CALLS = {name: case for line in LINES
         for name, case in hostile_calls(line, LINES[line].digit).items()}


def line_of(name: str) -> str:
    return name.split("-", 1)[0]


def render(sipp: Sipp, case: Hostile) -> Path:
    """The case's scenario with its values filled in, as bytes (some are not UTF-8)."""
    text = (SCENARIOS / f"{case.scenario}.xml").read_bytes()
    for key, value in case.values().items():
        text = text.replace(f"@@{key}@@".encode(), value)
    sipp.dir.mkdir(parents=True, exist_ok=True)
    path = sipp.dir / f"{case.scenario}-{hashlib.sha256(text).hexdigest()[:12]}.xml"
    path.write_bytes(text)
    return path


async def place(sipp: Sipp, case: Hostile, number: str, slot: int) -> SippResult:
    """One INVITE from its own SIP and media ports (clear of Sipp.call's)."""
    return await sipp._run(["-sf", str(render(sipp, case)), "-s", number,
                            "-key", "caller", case.caller, "-m", "1", "-i", "127.0.0.1",
                            "-p", str(7100 + 2 * slot), "-mp", str(47000 + 4 * slot), sipp.pbx],
                           timeout_s=20)


@dataclass
class Outcome:
    case: Hostile
    sipp: SippResult
    records: list[dict[str, Any]]  # the stored calls that came from this INVITE
    on_the_line: list[str]  # every caller ID stored on its line, to tell what did arrive

    @property
    def record(self) -> dict[str, Any]:
        assert len(self.records) == 1, (f"{len(self.records)} stored calls match; caller IDs "
                                        f"stored on the line: {self.on_the_line}")
        return self.records[0]


@pytest.fixture(scope="module")
async def outcomes(service: Any, sipp: Sipp) -> dict[str, Outcome]:
    """Every hostile INVITE placed at once; then the stored calls of each."""
    results = await asyncio.gather(*(place(sipp, case, LINES[line_of(name)].number, slot)
                                     for slot, (name, case) in enumerate(CALLS.items())))
    records = await service.all_call_records(30)
    found = {}
    for (name, case), result in zip(CALLS.items(), results, strict=True):
        came_as = case.arrives_as or unquote(case.caller)
        on_the_line = [r for r in records if r["dialled"] == LINES[line_of(name)].e164]
        found[name] = Outcome(case, result,
                              [r for r in on_the_line if r["caller_raw"] == came_as],
                              sorted(str(r["caller_raw"]) for r in on_the_line))
    return found


ANSWERED = [name for name, case in CALLS.items() if case.answered]


@pytest.mark.parametrize("name", ANSWERED)
def test_a_hostile_invite_is_answered_and_stored_once_closed(
        outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.sipp.ok, o.sipp.errors()
    r = o.record
    assert r["ended_at"] is not None and r["end_reason"] in CALLER_LEFT
    assert r["line_kind"] == line_of(name)
    assert r["caller"] == o.case.stored_as  # E.164, or None for what is not a number
    assert r["caller_withheld"] is False
    assert len(r["caller_raw"]) <= CALLER_RAW_MAX
    assert all(ch.isprintable() for ch in r["caller_raw"])


def test_the_display_name_is_stored_nowhere(outcomes: dict[str, Outcome]) -> None:
    """Quotes, CR/LF escapes, SQL and 1200 characters in the From display name reach the
    channel's caller name; no column of the stored call holds any of it."""
    for name in ANSWERED:
        stored = json.dumps(outcomes[name].record, default=str)
        for marker in ("Eve", "X-Injected", "DROP TABLE", "Ab0 Ab0", "%FF%FE"):
            assert marker not in stored, (name, marker)


def test_the_service_log_stays_one_json_object_a_line(service: Any,
                                                      outcomes: dict[str, Outcome]) -> None:
    """CR/LF (escaped or not) in a caller name never starts a log line of its own."""
    lines = service.log.read_text(errors="replace").splitlines()
    assert len(service.entries()) == len(lines)


@pytest.mark.parametrize("name", ["sales-shell", "service-shell"])
def test_shell_metacharacters_in_the_from_user_are_only_ever_data(
        outcomes: dict[str, Outcome], name: str) -> None:
    """URL-decoded by Asterisk, cut at the ``;`` and to 79 characters: stored as it came,
    as text, with no E.164 caller; the recording is named from the call id all the same."""
    r = outcomes[name].record
    assert r["caller_raw"] == "$(reboot)`reboot`|cat|" + "$(id)" * 11 + "$("
    assert r["caller"] is None  # not a number: never a guess
    if line_of(name) == "sales":
        assert r["file_name"] == f"{r['id']}.wav"


@pytest.mark.parametrize("name", ["sales-identity", "service-identity"])
def test_the_first_p_asserted_identity_of_the_trunk_is_the_caller(
        outcomes: dict[str, Outcome], name: str) -> None:
    """The trunk is trusted (trust_id_inbound): Asterisk hands on the first PAI; the second
    PAI and both Remote-Party-IDs are ignored, the From user too."""
    r = outcomes[name].record
    assert r["caller_raw"] == outcomes[name].case.arrives_as
    assert r["caller"] == outcomes[name].case.stored_as


def test_sales_calls_are_recorded_in_files_named_from_the_call_id(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    for name in ANSWERED:
        if line_of(name) != "sales":
            continue
        r = outcomes[name].record
        assert r["decision"] == "legal_basis", name
        assert r["file_name"] == f"{r['id']}.wav", name
        assert service.recording(r["file_name"]).is_file(), name


def test_nothing_is_recorded_on_the_service_line_without_a_1(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    for name, outcome in outcomes.items():
        if line_of(name) != "service":
            continue
        for r in outcome.records:
            assert r["decision"] in (None, "no_consent"), name
            assert r["digit"] is None and r["file_name"] is None, name
            assert not list(service.recordings.glob(f"{r['id']}*")), name


@pytest.mark.parametrize("name", ["sales-codec", "service-codec"])
def test_an_sdp_with_only_an_unknown_codec_is_refused_before_the_application(
        outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.sipp.ok, o.sipp.errors()  # 488 Not Acceptable Here, acknowledged
    assert o.records == []


@pytest.mark.parametrize("name", ["sales-cancel", "service-cancel"])
def test_a_cancel_right_after_the_invite_ends_cleanly(
        service: Any, outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    # 200 to the CANCEL, 487 to the INVITE. The service answers within milliseconds of
    # the call entering the application (its record is written meanwhile), so the CANCEL
    # sent once the 100 Trying is in may cross the call's 200 OK: SIPp then aborts on a
    # 200 where it waits for the 487, and hangs up (a BYE). Either way, what the service
    # stored is held to the same below.
    errors = "" if o.sipp.ok else o.sipp.errors()
    crossed = "while expecting '487'" in errors and "received 'SIP/2.0 200 OK" in errors
    assert o.sipp.ok or crossed, errors
    assert len(o.records) <= 1  # it may have reached the application before the CANCEL
    for r in o.records:
        assert r["ended_at"] is not None and r["notice_completed"] is False
        assert r["decision"] in (None, "no_consent") and r["file_name"] is None
        assert not list(service.recordings.glob(f"{r['id']}*"))


async def test_afterwards_the_service_runs_and_a_plain_call_is_recorded(
        pbx: Asterisk, service: Any, sipp: Sipp, outcomes: dict[str, Outcome]) -> None:
    assert pbx.running_pid() is not None
    assert service.process.poll() is None, "ivr serve died"
    result = await sipp.call(LINES["sales"].number, caller=AFTERWARDS, hold_ms=HOLD_MS)
    assert result.ok, result.errors()
    r = await service.call_record(AFTERWARDS, wait=20)
    assert (r["decision"], r["caller"]) == ("legal_basis", f"+386{AFTERWARDS[1:]}")
    assert r["file_name"] == f"{r['id']}.wav"
    assert service.recording(r["file_name"]).is_file()
    assert service.process.poll() is None


def test_recordings_and_their_directory_are_not_readable_by_others(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    files = [service.recording(o.record["file_name"]) for name, o in outcomes.items()
             if o.case.answered and line_of(name) == "sales"]
    assert files
    for path in files:
        assert path.stat().st_mode & 0o007 == 0, f"{path} is open to others"
    assert service.recordings.stat().st_mode & 0o007 == 0, \
        f"{service.recordings} is open to others"


def test_the_figures_for_the_reliability_table(service: Any,
                                               outcomes: dict[str, Outcome]) -> None:
    """docs/reliability.md: calls placed, completed cleanly (answered or refused),
    recordings without a basis, sales decisions not stored."""
    records = [r for o in outcomes.values() for r in o.records]
    unbased = [r for r in records if r["decision"] not in ("legal_basis", "consent")
               and list(service.recordings.glob(f"{r['id']}*"))]
    lost = [name for name, o in outcomes.items() if line_of(name) == "sales"
            and o.case.answered and o.record["decision"] != "legal_basis"]
    FaultFigures("hostile SIP INVITEs (headers, caller IDs, codecs, CANCEL)", len(outcomes),
                 sum(o.sipp.ok for o in outcomes.values()), len(unbased), len(lost),
                 None).write("hostile_sip")
    assert unbased == [] and lost == []
