"""The inbound flow played by the dialplan (``[dialplan] inbound_flow = "dialplan"``) on a
real Asterisk, with real SIPp calls and the short stand-in notices (POLICY.md rules 1-4).

The session's PBX runs the ARI flow and must keep it for the other modules, so this module
starts an Asterisk of its own: node 3 (testpbx/node.py: the same root, its own ports,
directories and spool), its configuration rendered from settings that select the dialplan
flow, the short notices and a 3 s answer timeout, and its own ``ivr serve`` given the same
settings. Nobody answers in the queue unless a test runs an agent's phone: the test
site's agents are SIPp phones that only exist while a test runs them
(test_inbound_queue.py), here only the agent test does; so every other call ends when its
caller gives up, a missed call to return (rule 4).

Short notice timing (espeak-ng): service information 0-2.7 s, question 2.7-5.0 s, closing
5.0-7.0 s; sales notice 0-3.0 s; then 3 s to answer, the question once more, 3 s again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ivr.calls.dialplan_notice import NOTE_SUFFIX, Ended, parse_end
from testpbx.asterisk import AGENT_PORTS, Asterisk, pid_alive
from testpbx.config import write_settings
from testpbx.errors import SetupError
from testpbx.node import further_node
from testpbx.paths import Paths
from testpbx.root import ensure_root
from testpbx.sipp import Action, Pause, Press, Sipp, SippResult, Speak

from .conftest import (
    RECORDS_SQL,
    TEST_STATE,
    ServiceUnderTest,
    migrated_database,
    recordings_without_basis,
    running_service,
    settings_with,
    short_prompts,
)

pytestmark = pytest.mark.pbx

NODE = further_node(3)
SALES = "040404045"
DURING_QUESTION = Pause(3800)
AFTER_NOTICE = Pause(8000)
QUESTION_ALONE = ["service-information", "service-question"]
WHOLE_NOTICE = ["service-information", "service-question", "service-closing"]
ASKED_TWICE = [*WHOLE_NOTICE, "service-question"]


@dataclass(frozen=True)
class DialplanNode:
    """Node 3's Asterisk playing the notices itself, and the settings (beyond its settings
    file) that both its configuration and its service were given."""

    pbx: Asterisk
    sipp: Sipp
    env: dict[str, str]


@pytest.fixture(scope="module")
def dialplan_node(pbx_paths: Paths) -> Iterator[DialplanNode]:
    """Node 3 started with ``inbound_flow = "dialplan"``; stopped at the end, leaving no
    process behind."""
    paths = Paths(cache=pbx_paths.cache, state=TEST_STATE.with_name("test-pbx-dialplan"),
                  node=NODE)
    try:
        ensure_root(paths, paths.logs / "debootstrap.log")
        env = short_prompts(Asterisk(paths, write_settings(paths)))
        env["IVR_DIALPLAN__INBOUND_FLOW"] = "dialplan"
        settings = settings_with(paths.settings_file, env)
        assert settings.dialplan.inbound_flow == "dialplan"
        pbx = Asterisk(paths, settings)
        pbx.start()
    except SetupError as exc:
        pytest.fail(f"these tests need a test PBX playing the notices itself, which could "
                    f"not start:\n{exc}", pytrace=False)
    try:
        pid = pbx.running_pid()
        yield DialplanNode(pbx, Sipp(paths, pbx=f"127.0.0.1:{NODE.sip_port}"), env)
    finally:
        pbx.stop()
    assert pid is not None and not pid_alive(pid), f"node 3's Asterisk (pid {pid}) still runs"


# the calls -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    number: str
    caller: str
    actions: tuple[Action, ...]
    hold_ms: int  # after the actions, until the caller hangs up (nobody answers)

    @property
    def e164(self) -> str:
        return "+386" + self.caller[1:]


SCENARIOS: dict[str, Scenario] = {
    "consent-info": Scenario("040404040", "031000801", (DURING_QUESTION, Press("1", "info")),
                             hold_ms=3000),
    "consent-rfc4733": Scenario("040404030", "031000802",
                                (AFTER_NOTICE, Press("1", "rfc4733")), hold_ms=3000),
    "refusal": Scenario("040404085", "031000803", (DURING_QUESTION, Press("2")), hold_ms=3000),
    "silence": Scenario("040404042", "031000804", (), hold_ms=18500),
    "hangup-during-notice": Scenario("040404040", "031000805", (), hold_ms=1500),
    "sales": Scenario(SALES, "031000806", (), hold_ms=6000),
    "other-digit": Scenario("040404066", "031000807", (DURING_QUESTION, Press("5")),
                            hold_ms=15000),
    "other-digit-then-1": Scenario(
        "040404041", "031000808",
        (DURING_QUESTION, Press("5", "rfc4733"), Pause(4500), Press("1", "rfc4733")),
        hold_ms=3000),
    "1-before-the-question": Scenario("040404040", "031000809", (Pause(1000), Press("1")),
                                      hold_ms=17500),
}


@dataclass
class Outcome:
    sipp: SippResult
    record: dict[str, Any]  # the call with its decision and recording (conftest.RECORDS_SQL)
    missed: dict[str, Any] | None  # the missed call and its callback
    started_over_ami: bool = False  # the service started its recording ([dialplan] recording_start)


STARTED_OVER_AMI = "recording started over AMI"


def started_over_ami(service: ServiceUnderTest) -> set[str]:
    """The channels whose recording the service started over AMI, from its log."""
    return {str(e.get("call")) for e in service.entries() if e.get("message") == STARTED_OVER_AMI}


MISSED_SQL = """
SELECT m.call_id::text AS call_id, m.caller, m.reason, b.caller AS callback_caller,
       b.status, b.record, b.notice_required
FROM missed_calls m LEFT JOIN callbacks b ON b.id = m.callback_id
"""


async def settled(service: ServiceUnderTest, callers: list[str],
                  wait: float = 60.0) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The calls of ``callers`` (by caller ID as sent), once each is stored, closed and
    its missed call recorded; and every missed call by call id."""
    deadline = time.monotonic() + wait
    while True:
        rows = {r["caller_raw"]: r for r in await service.query(RECORDS_SQL, {})}
        missed = {m["call_id"]: m for m in await service.query(MISSED_SQL, {})}
        mine = [rows.get(c) for c in callers]
        if all(r is not None and r["ended_at"] is not None and str(r["id"]) in missed
               for r in mine):
            return {c: r for c, r in rows.items() if c in callers}, missed
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not every call stored closed with its missed call after {wait} s: "
                f"{ {c: (r or {}).get('ended_at') for c, r in zip(callers, mine, strict=True)} }"
                f"\n{service.log.read_text(errors='replace')[-3000:]}")
        await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
async def outcomes(dialplan_node: DialplanNode, new_database: Any,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every scenario placed at once while node 3's service runs; each call's stored record
    and missed call once all are closed. The service is stopped afterwards."""
    log = tmp_path_factory.mktemp("dialplan-service") / "service.log"
    node = dialplan_node
    since = time.time()
    async with migrated_database(new_database) as url, \
            running_service(node.pbx, url, log, node.env) as service:
        results = await asyncio.gather(*(
            node.sipp.call(s.number, caller=s.caller, actions=s.actions, hold_ms=s.hold_ms)
            for s in SCENARIOS.values()))
        rows, missed = await settled(service, [s.caller for s in SCENARIOS.values()])
        by_ami = started_over_ami(service)
        found = {}
        for (name, scenario), result in zip(SCENARIOS.items(), results, strict=True):
            record = rows[scenario.caller]
            found[name] = Outcome(result, record, missed.get(str(record["id"])),
                                  record["channel_id"] in by_ami)
        unbased = await recordings_without_basis(service, since)
        assert unbased == [], f"recordings no stored decision allows: {unbased}"
    return found


def recordings_dir(node: DialplanNode) -> Path:
    return Path(node.pbx.settings.recordings.local_dir)


def played(record: dict[str, Any]) -> list[str]:
    return [p["id"] for p in record["prompts_played"]]


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def ends_the_notice(segment: dict[str, Any], record: dict[str, Any]) -> bool:
    """The notice ended when this, its last segment, did (the dialplan notes the two in
    turn: the notice's end a moment later)."""
    ended = at(segment["ended_at"])
    return ended is not None and 0 <= (record["notice_ended_at"] - ended).total_seconds() < 0.2


def recorded(node: DialplanNode, record: dict[str, Any]) -> None:
    """A recording row started by MixMonitor only after the decision was stored, and its
    file on the spool with audio in it, readable by no one else."""
    assert record["file_name"] == f"{record['id']}.wav"
    assert record["mixmonitor_id"], record
    assert record["recording_started_at"] is not None
    assert record["recording_started_at"] >= record["decided_at"], record
    assert record["recording_started_at"] >= record["notice_ended_at"], record
    path = recordings_dir(node) / record["file_name"]
    assert path.is_file(), f"no recording at {path}"
    assert path.stat().st_mode & 0o007 == 0, "a recording must not be readable by others"
    with wave.open(str(path)) as audio:
        assert audio.getnframes() > 8000 // 2, "less than half a second of audio"


def not_recorded(node: DialplanNode, record: dict[str, Any]) -> None:
    assert (record["file_name"], record["mixmonitor_id"]) == (None, None), record
    assert not list(recordings_dir(node).glob(f"{record['id']}*"))


def missed_in_the_queue(outcome: Outcome, scenario: Scenario, reason: str = "abandoned"
                        ) -> None:
    """Nobody answered: a missed call, returned by a callback to the caller that inherits
    the decision (rules 4, 5, 9)."""
    r, m = outcome.record, outcome.missed
    assert (r["agent_answered"], r["agent"]) == (False, None), r
    assert m is not None, f"no missed call for {scenario.caller}"
    assert (m["caller"], m["reason"], m["callback_caller"], m["status"]) == (
        scenario.e164, reason, scenario.e164, "open"), m
    assert m["record"] is (r["decision"] in ("consent", "legal_basis")), (m, r["decision"])
    assert m["notice_required"] is not r["notice_completed"], (m, r["notice_completed"])


def closed_in_the_dialplan(outcome: Outcome) -> None:
    r = outcome.record
    assert outcome.sipp.ok, outcome.sipp.errors()
    assert r["ended_at"] is not None and r["end_reason"].startswith("ended in the dialplan")
    assert r["state"] == "ended"


# rules 1-3 -------------------------------------------------------------------------------
def test_rule_2_a_1_by_sip_info_during_the_question_is_consent_and_recorded(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """A 1 sent by SIP INFO while the question plays is consent: the question stops at the
    digit (the notice ends with the answer, the closing is not played), the decision is
    stored before MixMonitor starts, the call is recorded into the file the service named."""
    o = outcomes["consent-info"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"], r["line_kind"]) == ("consent", "1", "service")
    assert r["dialled"] == "+38640404040" and r["caller"] == "+38631000801"
    assert played(r) == QUESTION_ALONE
    question = r["prompts_played"][1]
    assert at(question["started_at"]) == r["question_started_at"]
    assert r["question_started_at"] < r["digit_at"]
    assert at(question["ended_at"]) == r["digit_at"] == r["notice_ended_at"]
    assert all(len(p["sha256"]) == 64 and p["version"] == 1 for p in r["prompts_played"])
    assert r["decided_at"] >= r["digit_at"]
    assert r["notice_completed"] is True
    recorded(dialplan_node, r)
    assert o.started_over_ami  # the service's AMI, not the channel's turn in the dialplan
    missed_in_the_queue(o, SCENARIOS["consent-info"])


def test_rule_2_a_1_by_rfc4733_after_the_notice_is_consent_and_recorded(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """A 1 sent as RFC 4733 events while the dialplan waits after the whole notice."""
    o = outcomes["consent-rfc4733"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"]) == ("consent", "1")
    assert played(r) == WHOLE_NOTICE
    assert all(p["ended_at"] for p in r["prompts_played"])
    assert ends_the_notice(r["prompts_played"][-1], r)
    assert r["digit_at"] > r["notice_ended_at"]
    assert r["notice_completed"] is True
    recorded(dialplan_node, r)
    assert o.started_over_ami
    missed_in_the_queue(o, SCENARIOS["consent-rfc4733"])


def test_rule_2_a_2_is_refusal_and_nothing_is_recorded(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["refusal"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"]) == ("refusal", "2")
    assert played(r) == QUESTION_ALONE
    assert r["notice_completed"] is True
    not_recorded(dialplan_node, r)
    missed_in_the_queue(o, SCENARIOS["refusal"])


def test_rule_2_silence_asks_the_question_again_then_no_consent(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """Silence: the question once more (consent.question_repeats = 1), then no consent;
    the caller waits in the queue unrecorded, nobody answers: a call to return."""
    o = outcomes["silence"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"], r["digit_at"]) == ("no_consent", None, None)
    assert played(r) == ASKED_TWICE
    assert all(p["ended_at"] for p in r["prompts_played"])
    assert r["notice_completed"] is True
    not_recorded(dialplan_node, r)
    missed_in_the_queue(o, SCENARIOS["silence"])


def test_rule_1_a_hangup_during_the_notice_is_no_consent_noted_after_the_call(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """The caller leaves while the information plays: the dialplan never asked the service
    for a decision; the hangup handler's note gives it, after the call: not told, no
    consent, nothing recorded; a call to return with the notice still owed (rule 1)."""
    o = outcomes["hangup-during-notice"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"]) == ("no_consent", None)
    assert r["decided_at"] >= r["ended_at"]  # decided from the note, once the call was over
    assert played(r) == ["service-information"]
    assert r["prompts_played"][0]["ended_at"] is None  # cut short by the hang-up
    assert r["notice_ended_at"] is None
    assert r["notice_completed"] is False
    not_recorded(dialplan_node, r)
    missed_in_the_queue(o, SCENARIOS["hangup-during-notice"], reason="ivr_hangup")


def test_rule_1_the_sales_line_is_recorded_after_its_notice(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["sales"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["line_kind"], r["dialled"]) == (
        "legal_basis", "sales", "+38640404045")
    assert played(r) == ["sales-notice"]
    assert ends_the_notice(r["prompts_played"][0], r)
    assert r["notice_completed"] is True
    recorded(dialplan_node, r)
    missed_in_the_queue(o, SCENARIOS["sales"])


def test_rule_2_another_digit_during_the_question_is_no_answer(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """A 5 during the question neither stops it nor counts: the notice plays on, the
    question is asked again, and silence after it is no consent."""
    o = outcomes["other-digit"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"]) == ("no_consent", None)
    assert played(r) == ASKED_TWICE
    assert all(p["ended_at"] for p in r["prompts_played"])
    not_recorded(dialplan_node, r)
    missed_in_the_queue(o, SCENARIOS["other-digit"])


def test_rule_2_another_digit_then_1_is_consent_from_the_1(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """A 5 during the question, then a 1 after the notice: the 5 did not end the notice
    (the closing played to its end); the 1 is the answer."""
    o = outcomes["other-digit-then-1"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"]) == ("consent", "1")
    assert played(r) == WHOLE_NOTICE
    assert r["digit_at"] > r["notice_ended_at"]
    recorded(dialplan_node, r)


def test_rule_2_a_1_before_the_question_does_not_count(
        dialplan_node: DialplanNode, outcomes: dict[str, Outcome]) -> None:
    """A 1 while the information plays (before the question) is not heard: the notice
    goes on, and silence after the question is no consent."""
    o = outcomes["1-before-the-question"]
    closed_in_the_dialplan(o)
    r = o.record
    assert (r["decision"], r["digit"]) == ("no_consent", None)
    assert played(r) == ASKED_TWICE
    not_recorded(dialplan_node, r)


# the queue -------------------------------------------------------------------------------
async def idle(node: DialplanNode, wait: float = 30.0) -> None:
    """No channel left from earlier tests (a queue still ringing would reach our agent)."""
    deadline = time.monotonic() + wait
    while "0 active channels" not in node.pbx.cli("core show channels count").stdout:
        assert time.monotonic() < deadline, "node 3 still has channels from earlier tests"
        await asyncio.sleep(0.2)


async def test_an_agent_answers_the_consenting_caller_and_no_call_is_owed(
        dialplan_node: DialplanNode, new_database: Any, tmp_path: Path) -> None:
    """Item 7 of the receipt in this flow: the agent who answered in the queue, from the
    hangup handler's note; the recording goes on into the conversation; an answered call
    is not a missed one (rule 4)."""
    node = dialplan_node
    await idle(node)
    async with migrated_database(new_database) as url, \
            running_service(node.pbx, url, tmp_path / "service.log", node.env) as service:
        async with node.sipp.agent(AGENT_PORTS["agent1"]):
            # the caller speaks on after the 1 (MixMonitor writes only what flows)
            result = await node.sipp.call("040404040", caller="031000812",
                                          actions=(DURING_QUESTION, Press("1"), Speak()),
                                          hold_ms=6000)
        assert result.ok, result.errors()
        r = await service.call_record("031000812")
        await asyncio.sleep(1.5)  # a missed call would be stored right after the close
        missed = await service.query(MISSED_SQL, {})
    assert r["decision"] == "consent"
    assert (r["agent_answered"], r["agent"]) == (True, "PJSIP/agent1"), r
    recorded(node, r)
    with wave.open(str(recordings_dir(node) / r["file_name"])) as audio:
        assert audio.getnframes() > 8000 * 4, "the conversation with the agent not recorded"
    assert missed == []


# the service away ------------------------------------------------------------------------
def service_listening(node: DialplanNode) -> bool:
    """Whether anything answers on node 3's ports for the decision (HTTP or FastAGI)."""
    for port in (NODE.report_port, NODE.fastagi_port):
        with contextlib.closing(socket.socket()) as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
    return False


async def end_note(node: DialplanNode, caller: str, wait: float = 10.0) -> Ended:
    """The note the hangup handler left for ``caller``'s call (no service reads it yet)."""
    directory = Path(node.pbx.settings.unattended.local_dir)
    deadline = time.monotonic() + wait
    while True:
        for path in directory.glob(f"*{NOTE_SUFFIX}"):
            with contextlib.suppress(ValueError, OSError):
                ended = parse_end(path.read_text(errors="replace"))
                if ended.report.caller == caller:
                    return ended
        if time.monotonic() > deadline:
            raise AssertionError(f"no end note for {caller} in {directory}")
        await asyncio.sleep(0.2)


async def test_with_the_service_away_the_caller_reaches_the_queue_unrecorded(
        dialplan_node: DialplanNode, new_database: Any, tmp_path: Path) -> None:
    """No service runs when the call comes: the dialplan cannot ask for a decision, so it
    records nothing and hands the caller to the queue all the same. Once the service runs
    again it records the call from the hangup handler's note: closed, the decision the
    report allows (the caller pressed 1 during the question: consent), no recording, and
    a call to return."""
    node = dialplan_node
    caller = "031000810"
    since = time.time()
    assert not service_listening(node), "a service answers on node 3's decision ports"
    result = await node.sipp.call("040404040", caller=caller,
                                  actions=(DURING_QUESTION, Press("1")), hold_ms=3000)
    assert result.ok, result.errors()
    note = await end_note(node, caller)
    assert (note.decision, note.recording, note.recording_at, note.mixmonitor_id) == (
        None, None, None, None), note
    assert note.queued and note.agent is None, note
    assert (note.report.heard.digit, [p.segment_id for p in note.report.heard.played]) == (
        "1", QUESTION_ALONE)
    assert [p for p in recordings_dir(node).iterdir() if p.stat().st_mtime >= since] == []

    async with migrated_database(new_database) as url, \
            running_service(node.pbx, url, tmp_path / "service.log", node.env) as service:
        rows, missed = await settled(service, [caller])
        r = rows[caller]
        unbased = await recordings_without_basis(service, since)
    assert r["channel_id"] == note.channel_id
    assert r["end_reason"].startswith("ended in the dialplan")
    assert (r["decision"], r["digit"], r["line_kind"]) == ("consent", "1", "service")
    assert played(r) == QUESTION_ALONE
    assert r["notice_completed"] is True
    assert r["decided_at"] >= r["ended_at"]  # decided from the note, once the call was over
    not_recorded(node, r)
    assert unbased == []
    m = missed[str(r["id"])]
    # waited in the queue (not "ivr_hangup"), nobody answered; the callback inherits the
    # consent the caller gave (rules 5, 9)
    assert (m["caller"], m["reason"], m["status"], m["record"], m["notice_required"]) == (
        "+38631000810", "abandoned", "open", True, False), m


async def test_with_ami_away_the_dialplan_starts_the_recording_itself(
        dialplan_node: DialplanNode, new_database: Any, tmp_path: Path) -> None:
    """AMI refuses the service's login (a wrong secret): the service cannot start the
    recording the consent allows, so its answer names the file alone and the dialplan
    starts MixMonitor, still only after the decision was stored. The consenting caller is
    recorded all the same."""
    node = dialplan_node
    caller = "031000813"
    await idle(node)
    env = {**node.env, "IVR_AMI__SECRET": "not-the-ami-secret"}
    async with migrated_database(new_database) as url, \
            running_service(node.pbx, url, tmp_path / "service.log", env, ami=False) as service:
        result = await node.sipp.call("040404040", caller=caller,
                                      actions=(DURING_QUESTION, Press("1")), hold_ms=3000)
        assert result.ok, result.errors()
        rows, _ = await settled(service, [caller])
        by_ami = started_over_ami(service)
        left_to_the_dialplan = [e for e in service.entries() if str(e.get("message", ""))
                                .startswith("recording not started over AMI")]
    r = rows[caller]
    assert (r["decision"], r["digit"]) == ("consent", "1")
    recorded(node, r)
    assert r["channel_id"] not in by_ami
    assert [e.get("call") for e in left_to_the_dialplan] == [r["channel_id"]]


# the decision asked over FastAGI -------------------------------------------------------------
def decide_steps(node: DialplanNode) -> str:
    return node.pbx.cli("dialplan show decide@ivr-notice-service").stdout


async def test_over_fastagi_the_decision_is_stored_then_the_consent_recorded(
        dialplan_node: DialplanNode, new_database: Any, tmp_path: Path) -> None:
    """By default the dialplan asks for the decision over HTTP (CURL()); a PBX without
    func_curl renders it with ``decision_request = "fastagi"`` and asks over AGI(). The
    service answers there the same: the decision stored, then the consenting caller
    recorded into the file it names."""
    node = dialplan_node
    caller = "031000814"
    await idle(node)
    assert "CURL(http://" in decide_steps(node) and "AGI(" not in decide_steps(node)
    env = {**node.env, "IVR_DIALPLAN__DECISION_REQUEST": "fastagi"}
    Asterisk(node.pbx.paths, settings_with(node.pbx.paths.settings_file, env)).configure()
    node.pbx.cli("dialplan reload")
    try:
        assert "AGI(agi://" in decide_steps(node) and "CURL(" not in decide_steps(node)
        async with migrated_database(new_database) as url, \
                running_service(node.pbx, url, tmp_path / "service.log", env) as service:
            result = await node.sipp.call("040404040", caller=caller,
                                          actions=(DURING_QUESTION, Press("1")), hold_ms=3000)
            assert result.ok, result.errors()
            rows, _ = await settled(service, [caller])
            by_ami = started_over_ami(service)
    finally:
        node.pbx.configure()
        node.pbx.cli("dialplan reload")
    assert "CURL(http://" in decide_steps(node)
    r = rows[caller]
    assert (r["decision"], r["digit"]) == ("consent", "1")
    recorded(node, r)
    assert r["channel_id"] in by_ami


async def test_without_func_curl_the_service_says_so_and_nobody_is_recorded(
        dialplan_node: DialplanNode, new_database: Any, tmp_path: Path) -> None:
    """Asterisk without func_curl (unloaded here): the dialplan's CURL() asks nobody. The
    service says so at start and /healthz names the part down, with what to do, until the
    module is loaded again. A caller who consents meanwhile reaches the queue unrecorded
    (the safe side), and gets the decision the report allows from the end note."""
    node = dialplan_node
    caller = "031000815"
    await idle(node)
    assert "unloaded" in node.pbx.cli("module unload func_curl.so").stdout.lower()
    try:
        async with migrated_database(new_database) as url, \
                running_service(node.pbx, url, tmp_path / "service.log", node.env) as service:
            result = await node.sipp.call("040404040", caller=caller,
                                          actions=(DURING_QUESTION, Press("1")), hold_ms=3000)
            assert result.ok, result.errors()
            rows, _ = await settled(service, [caller])
            said = [str(e["message"]) for e in service.entries()
                    if str(e.get("message", "")).startswith("decisions cannot be asked for")]
            base = f"http://127.0.0.1:{NODE.web_port}"
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                down = await client.get("/healthz")
                node.pbx.cli("module load func_curl.so")
                up = await client.get("/healthz")
    finally:
        node.pbx.cli("module load func_curl.so")
    assert len(said) == 1 and "no func_curl loaded" in said[0], said
    assert down.status_code == 503 and down.json()["down"] == ["decision_requests"], down.text
    assert down.json()["parts"]["decision_requests"]["reason"].endswith(
        'or set [dialplan] decision_request = "fastagi"')
    assert up.status_code == 200, up.text
    r = rows[caller]
    assert (r["decision"], r["digit"]) == ("consent", "1")
    assert r["decided_at"] >= r["ended_at"]  # from the end note, once the call was over
    not_recorded(node, r)
