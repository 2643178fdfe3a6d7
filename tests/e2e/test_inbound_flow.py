"""The inbound flow on the real test PBX (POLICY.md rules 1-3), with short stand-in
notices: SIPp places every call of this module at once, pressing digits by SIP INFO or
RFC 4733; each test then asserts one call's stored receipt and whether its recording file
exists with audio in it.

Short notice timing (espeak-ng): service information 0-2.7 s, question 2.7-5.0 s, closing
5.0-7.0 s; sales notice 0-3.0 s. The consent timeout is 3 s in these tests.
"""

from __future__ import annotations

import asyncio
import uuid
import wave
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testpbx.sipp import Action, Pause, Press, Sipp, SippResult

pytestmark = pytest.mark.pbx

SALES = "040404045"
SERVICE_NUMBERS = ("040404040", "040404030", "040404085", "040404042", "040404066",
                   "040404041")
DURING_QUESTION = Pause(3800)
AFTER_NOTICE = Pause(8000)


@dataclass(frozen=True)
class Scenario:
    number: str
    caller: str
    actions: tuple[Action, ...] = ()
    hold_ms: int = 6000
    arrives_as: str | None = None  # the caller ID as Asterisk hands it on, if not as sent


SCENARIOS: dict[str, Scenario] = {
    "sales-national": Scenario(SALES, "031000101"),
    "sales-e164": Scenario("+38640404045", "031000102"),
    "sales-00386": Scenario("0038640404045", "031000103"),
    "consent-info": Scenario("040404040", "031000201", (DURING_QUESTION, Press("1", "info"))),
    "consent-rfc4733": Scenario("040404030", "031000202",
                                (DURING_QUESTION, Press("1", "rfc4733"))),
    "refusal": Scenario("040404085", "031000203", (DURING_QUESTION, Press("2"))),
    "silence": Scenario("040404042", "031000204", (), hold_ms=22000),
    "other-digits-then-1": Scenario(
        "040404066", "031000205",
        (Pause(3500), Press("5", "rfc4733"), Pause(4500), Press("#"), Pause(300),
         Press("1", "rfc4733")),
        hold_ms=5000),
    "1-before-the-question": Scenario("040404041", "031000206",
                                      (Pause(1000), Press("1")), hold_ms=22000),
    "hangup-during-sales-notice": Scenario(SALES, "031000301", (), hold_ms=1200),
    "hangup-during-service-notice": Scenario("040404040", "031000302", (), hold_ms=1200),
    "withheld": Scenario(SALES, "anonymous"),
    "malformed": Scenario(SALES, "12ab34"),
    "path-traversal": Scenario(SALES, "../../etc/passwd"),
    # PJSIP decodes the URI user; ";" ends it, so only the quote is left.
    "sql": Scenario(SALES, "'%3B%20DROP%20TABLE%20calls%3B--", arrives_as="'"),
    "long": Scenario(SALES, "9" * 2048, arrives_as="9" * 79),
    "non-ascii": Scenario(SALES, "%C5%A1tevilka%E2%98%8E", arrives_as="številka☎"),
}
# 20 concurrent calls mixed over all seven numbers, 1 or 2 by either DTMF method.
MIXED = {
    f"mixed-{i:02d}": Scenario(
        number=(SALES, *SERVICE_NUMBERS)[i % 7], caller=f"0310004{i:02d}",
        actions=() if i % 7 == 0 else (DURING_QUESTION,
                                       Press("1" if i % 2 else "2",
                                             "rfc4733" if i % 3 else "info")))
    for i in range(20)
}


@dataclass
class Outcome:
    sipp: SippResult
    record: dict[str, Any]


@pytest.fixture(scope="module")
async def outcomes(service: Any, sipp: Sipp) -> dict[str, Outcome]:
    """Every scenario, placed concurrently; then each call's stored record."""
    everything = {**SCENARIOS, **MIXED}

    async def place(s: Scenario) -> SippResult:
        return await sipp.call(s.number, caller=s.caller, actions=s.actions, hold_ms=s.hold_ms)

    results = await asyncio.gather(*(place(s) for s in everything.values()))
    records = await service.all_call_records()
    found = {}
    for (name, scenario), result in zip(everything.items(), results, strict=True):
        matching = [r for r in records if _sent(scenario, r)]
        assert len(matching) == 1, (f"{name}: {len(matching)} stored calls match; caller IDs "
                                    f"stored: {sorted(str(r['caller_raw']) for r in records)}")
        found[name] = Outcome(result, matching[0])
    return found


def _sent(scenario: Scenario, record: dict[str, Any]) -> bool:
    """Whether a stored call came from the caller ID this scenario sent."""
    return bool(record["caller_raw"] == (scenario.arrives_as or scenario.caller))


def recorded(service: Any, outcome: Outcome) -> None:
    record = outcome.record
    assert record["file_name"] == f"{record['id']}.wav"  # named from the call's id only
    path = service.recording(record["file_name"])
    assert path.is_file(), f"no recording at {path}"
    assert path.stat().st_mode & 0o007 == 0, "a recording must not be readable by others"
    with wave.open(str(path)) as audio:
        assert audio.getnframes() > 8000 // 2, "less than half a second of audio"
    assert record["mixmonitor_id"]
    assert record["recording_started_at"] >= record["notice_ended_at"]


def not_recorded(service: Any, outcome: Outcome) -> None:
    record = outcome.record
    assert record["file_name"] is None
    assert not list(service.recordings.glob(f"{record['id']}*"))


@pytest.mark.parametrize("name", ["sales-national", "sales-e164", "sales-00386"])
def test_rule_1_sales_line_every_form_recorded_after_the_notice(
        service: Any, outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.sipp.ok, o.sipp.errors()
    assert o.record["decision"] == "legal_basis"
    assert o.record["line_kind"] == "sales" and o.record["dialled"] == "+38640404045"
    assert o.record["notice_completed"] is True
    assert [p["id"] for p in o.record["prompts_played"]] == ["sales-notice"]
    assert all(len(p["sha256"]) == 64 and p["version"] == 1 and p["ended_at"]
               for p in o.record["prompts_played"])
    recorded(service, o)


@pytest.mark.parametrize("name", ["consent-info", "consent-rfc4733"])
def test_rule_2_service_line_1_is_consent_and_recorded(
        service: Any, outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    assert o.sipp.ok, o.sipp.errors()
    r = o.record
    assert (r["decision"], r["digit"], r["line_kind"]) == ("consent", "1", "service")
    assert r["question_started_at"] <= r["digit_at"] <= r["notice_ended_at"]
    # rule 3: what was played, in order, the notice to its end
    assert [p["id"] for p in r["prompts_played"]] == [
        "service-information", "service-question", "service-closing"]
    assert r["notice_completed"] is True
    recorded(service, o)


def test_rule_2_service_line_2_is_refusal_not_recorded(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["refusal"]
    assert (o.record["decision"], o.record["digit"]) == ("refusal", "2")
    not_recorded(service, o)


def test_rule_2_silence_repeats_the_question_then_no_consent(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["silence"]
    assert o.sipp.ok, o.sipp.errors()
    assert (o.record["decision"], o.record["digit"]) == ("no_consent", None)
    assert [p["id"] for p in o.record["prompts_played"]] == [
        "service-information", "service-question", "service-closing", "service-question"]
    not_recorded(service, o)


def test_rule_2_other_digits_are_ignored_then_1_counts(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["other-digits-then-1"]
    assert (o.record["decision"], o.record["digit"]) == ("consent", "1")
    assert o.record["digit_at"] > o.record["notice_ended_at"]
    recorded(service, o)


def test_rule_2_a_1_before_the_question_began_does_not_count(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["1-before-the-question"]
    assert o.record["decision"] == "no_consent"
    not_recorded(service, o)


def test_rule_1_hangup_during_the_sales_notice_is_not_recorded(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["hangup-during-sales-notice"]
    assert o.record["notice_completed"] is False
    assert o.record["decision"] is None  # the caller was never told: no basis was applied
    assert o.record["ended_at"] is not None and o.record["end_reason"]
    not_recorded(service, o)


def test_rule_1_hangup_during_the_service_notice_is_no_consent(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    o = outcomes["hangup-during-service-notice"]
    assert o.record["notice_completed"] is False
    assert o.record["decision"] == "no_consent"
    not_recorded(service, o)


@pytest.mark.parametrize("name", ["withheld", "malformed", "path-traversal", "sql", "long",
                                  "non-ascii"])
def test_odd_caller_ids_are_stored_safely_and_never_name_a_file(
        service: Any, outcomes: dict[str, Outcome], name: str) -> None:
    o = outcomes[name]
    r = o.record
    assert o.sipp.ok, o.sipp.errors()
    assert r["decision"] == "legal_basis"  # the call went through the flow like any other
    assert r["caller"] is None  # withheld or not a number: never a guess
    assert r["caller_withheld"] is (name == "withheld")
    assert r["caller_raw"] is not None and len(r["caller_raw"]) <= 80
    assert all(ch.isprintable() for ch in r["caller_raw"])
    uuid.UUID(r["file_name"].removesuffix(".wav"))  # the file name is the call's id
    recorded(service, o)


def test_twenty_concurrent_calls_over_all_seven_numbers_are_each_correct(
        service: Any, outcomes: dict[str, Outcome]) -> None:
    for name, scenario in MIXED.items():
        o = outcomes[name]
        assert o.sipp.ok, f"{name}: {o.sipp.errors()}"
        if scenario.number == SALES:
            assert o.record["decision"] == "legal_basis", name
            recorded(service, o)
            continue
        digit = next(a.digit for a in scenario.actions if isinstance(a, Press))
        assert o.record["decision"] == ("consent" if digit == "1" else "refusal"), name
        if digit == "1":
            recorded(service, o)
        else:
            not_recorded(service, o)


async def test_metrics_and_health_count_this_modules_calls(
        pbx: Any, service: Any, outcomes: dict[str, Outcome]) -> None:
    """/metrics after the module's calls: every call counted by its stored decision, one
    answer latency per call, and one recording-start latency per recording, from the
    notice's end or from the digit as the receipt says; /healthz says every part is up."""
    records = [o.record for o in outcomes.values()]
    base = f"http://127.0.0.1:{pbx.settings.web.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        health = await client.get("/healthz")
        text = (await client.get("/metrics")).text
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "up" and set(health.json()["parts"]) == {
        "database", "ari", "ami"}, health.text

    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    for decision in ("legal_basis", "consent", "refusal", "no_consent"):
        assert total("ivr_calls", window="1h", decision=decision) == sum(
            r["decision"] == decision for r in records), decision
    assert total("ivr_step_seconds_count", step="answer") == len(records)
    started = [r for r in records if r["recording_started_at"] is not None]
    after_notice = [r for r in started
                    if r["digit_at"] is not None and r["digit_at"] > r["notice_ended_at"]]
    assert total("ivr_step_seconds_count", step="digit_to_recording") == len(after_notice)
    assert total("ivr_step_seconds_count", step="notice_end_to_recording") == \
        len(started) - len(after_notice)
