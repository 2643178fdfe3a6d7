"""The dialplan that plays the notices itself (``inbound_flow = "dialplan"``), as rendered
for the PBX: it plays exactly the catalogue's segments in order (rule 1), lets only a 1 or
a 2 answer once the question has started and asks again as the settings say (rule 2),
reports what was played to the service in the fields it parses (rule 3), starts
MixMonitor only into the file the service names after storing the decision (rule 1), and
notes every call's end for the missed calls (rule 4)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ivr.asterisk.conf import (
    DEFAULT_SOURCE,
    NOTICES_FILE,
    NUMBERS_FILE,
    ConfigError,
    numbers_dialplan,
    render,
)
from ivr.asterisk.notice_dialplan import CONNECT_TIMEOUT, REPORT_TIMEOUT
from ivr.asterisk.report_server import ReportServer
from ivr.calls.dialplan_notice import END_FIELDS, HEARD_FIELDS, NOTE_SUFFIX, SCRIPT
from ivr.notices.catalogue import (
    MANIFEST,
    BuiltSegment,
    Manifest,
    Notice,
    dump_manifest,
    load_catalogue,
)
from ivr.policy.numbers import dialled_forms
from ivr.settings import (
    ConsentSettings,
    DialplanSettings,
    FastAgiSettings,
    PromptSettings,
    Settings,
)

SITE = DEFAULT_SOURCE / "testpbx"
EXTRA = {"agent1_port": "5071", "agent2_port": "5072", "agent_password": "x",
         "customer_port": "5080"}
END = "ivr-notice-end"


@dataclass(frozen=True)
class Step:
    """One dialplan priority: its extension, its label if any, the application and its
    argument text."""

    exten: str
    label: str | None
    app: str
    args: str


Dialplan = dict[str, list[Step]]


def _parse(text: str) -> Dialplan:
    contexts: Dialplan = {}
    current, exten = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        header = re.fullmatch(r"\[([a-z0-9-]+)\]", line)
        if header:
            current = header.group(1)
            assert current not in contexts, f"[{current}] twice"
            contexts[current] = []
            continue
        first = re.fullmatch(r"exten => ([^,]+),1,(.*)", line)
        if first:
            exten, label, body = first.group(1), None, first.group(2)
        else:
            same = re.fullmatch(r"same => n(?:\(([a-z]+)\))?,(.*)", line)
            assert same is not None, line
            label, body = same.groups()
        app, paren, rest = body.partition("(")
        assert paren and rest.endswith(")"), line
        contexts[current].append(Step(exten, label, app, rest[:-1]))
    return contexts


def _settings(**changes: object) -> Settings:
    return Settings.model_validate({
        "mode": "test", "dialplan": DialplanSettings(inbound_flow="dialplan"), **changes})


SETTINGS: dict[str, dict[str, object]] = {
    "defaults": {},
    "three repeats, 7.5 s, another FastAGI": {
        "consent": ConsentSettings(question_repeats=3, answer_timeout=7.5),
        "fastagi": FastAgiSettings(bind_address=IPv4Address("192.0.2.7"), port=4599)},
    "never asked again": {"consent": ConsentSettings(question_repeats=0)},
    "over FastAGI, other ports": {
        "dialplan": DialplanSettings(inbound_flow="dialplan", decision_request="fastagi"),
        "fastagi": FastAgiSettings(port=4600, report_port=4601)},
}


@pytest.fixture(params=list(SETTINGS.values()), ids=list(SETTINGS))
def settings(request: pytest.FixtureRequest) -> Settings:
    return _settings(**request.param)


@pytest.fixture
def text(tmp_path: Path, settings: Settings) -> str:
    files = {p.name: p for p in render(settings, tmp_path / "etc-asterisk", SITE, EXTRA)}
    return files[NOTICES_FILE].read_text()


@pytest.fixture
def dialplan(text: str) -> Dialplan:
    return _parse(text)


def _question(notice: str) -> str | None:
    catalogue = load_catalogue()
    return next((s for s in catalogue.notice[notice].segments if catalogue.by_id(s).question),
                None)


NOTICES = sorted(load_catalogue().notice)


def _plays(steps: list[Step]) -> list[Step]:
    return [s for s in steps if s.app in ("Playback", "Background")]


def _assignments(step: Step) -> list[str]:
    """What a ``Set`` or ``MSet`` assigns, each ``name=value`` (``MSet``'s pairs split at
    the commas outside any ``${...}``, ``$[...]`` or ``(...)``)."""
    if step.app == "Set":
        return [step.args]
    if step.app != "MSet":
        return []
    pairs, depth, start = [], 0, 0
    for i, char in enumerate(step.args):
        depth += (char in "{[(") - (char in "}])")
        if char == "," and depth == 0:
            pairs.append(step.args[start:i])
            start = i + 1
    return [*pairs, step.args[start:]]


def _assigning(steps: list[Step], assignment: str) -> int:
    """The one step that makes ``assignment`` (by ``Set`` or among an ``MSet``'s)."""
    found = [i for i, s in enumerate(steps) if assignment in _assignments(s)]
    assert len(found) == 1, (assignment, found)
    return found[0]


def _index(steps: list[Step], app: str, args: str) -> int:
    found = [i for i, s in enumerate(steps) if (s.app, s.args) == (app, args)]
    assert len(found) == 1, (app, args, found)
    return found[0]


def test_the_catalogue_has_the_policys_notices() -> None:
    assert NOTICES == ["sales", "service"]
    assert (_question("sales"), _question("service")) == (None, "service-question")


def test_a_context_for_each_notice_and_the_hangup_handler(dialplan: Dialplan) -> None:
    assert set(dialplan) == {f"ivr-notice-{n}" for n in NOTICES} | {END}


def test_nothing_is_left_to_fill_and_no_line_is_cut_by_a_comment(text: str) -> None:
    """``;`` starts a comment in Asterisk's configuration: an application line with one
    would be cut short there."""
    assert "@@" not in text
    for line in text.splitlines():
        if not line.startswith(";"):
            assert ";" not in line, line


@pytest.mark.parametrize("notice", NOTICES)
def test_rule_1_the_segments_play_in_the_catalogues_order(
        dialplan: Dialplan, settings: Settings, notice: str) -> None:
    """Before the question, Playback (a digit does not stop it); from the question on,
    Background with ``m`` (only a digit the context answers, 1 or 2, stops it)."""
    segments = load_catalogue().notice[notice].segments
    question = _question(notice)
    asked_from = segments.index(question) if question else len(segments)
    s = [step for step in dialplan[f"ivr-notice-{notice}"] if step.exten == "s"]
    prefix = settings.prompts.sound_prefix
    assert [(p.app, p.args) for p in _plays(s)] == [
        ("Playback", f"{prefix}/{seg}") if i < asked_from else
        ("Background", f"{prefix}/{seg},m") for i, seg in enumerate(segments)]
    for seg in segments:  # each noted as played, with its start and its end
        assert sum(f"IVR_PLAYED=${{IVR_PLAYED}}{seg}@${{IVR_SEG_START}}@" in step.args
                   for step in s) == 1
        # started: one step names it and stamps its start
        started = [_assignments(step) for step in s if f"IVR_SEG={seg}" in _assignments(step)]
        assert len(started) == 1 and started[0][1].startswith("IVR_SEG_START=${STRFTIME(")
    # ended: each end note of a segment clears the segment under way with it
    ended = [_assignments(step) for step in s if "IVR_PLAYED=${IVR_PLAYED}" in step.args]
    assert len(ended) == len(segments) and all(a[1:] == ["IVR_SEG="] for a in ended)
    # A segment that fails to play ends the notice there: reported as never ended.
    status = [step for step in s if step.app == "GotoIf" and "STATUS}" in step.args]
    assert len(status) == len(segments)
    assert all(step.args.endswith('!= "SUCCESS"]?decide,1') for step in status)


@pytest.mark.parametrize("notice", NOTICES)
def test_rule_1_the_hangup_handler_and_no_recording_are_set_before_anything_plays(
        dialplan: Dialplan, settings: Settings, notice: str) -> None:
    steps = dialplan[f"ivr-notice-{notice}"]
    first_play = steps.index(_plays(steps)[0])
    # A channel that comes back has had its notice: on to its queue, nothing pushed again.
    assert steps[0] == Step("s", None, "GotoIf", '$["${IVR_ENTERED}" != ""]?'
                            f"{settings.dialplan.queue_context},${{IVR_QUEUE}},1")
    assert steps[1] == Step("s", None, "Answer", "")
    assert _index(steps, "Set", f"CHANNEL(hangup_handler_push)={END},s,1") < first_play
    assert _assigning(steps, "IVR_RECORD=no") < first_play
    # Nothing in the dialplan names a file to record into: only the service does.
    assert [a for s in steps for a in _assignments(s) if a.startswith("IVR_RECORD=")] == [
        "IVR_RECORD=no", "IVR_RECORD=${CUT(IVR_DECIDED,:,2)}"]


@pytest.mark.parametrize("notice", NOTICES)
def test_rule_1_mixmonitor_only_after_the_decision_and_only_into_the_services_file(
        dialplan: Dialplan, settings: Settings, notice: str) -> None:
    steps = dialplan[f"ivr-notice-{notice}"]
    decide = [s for s in steps if s.exten == "decide"]
    # No answer from before counts: cleared, then asked.
    assert decide[0] == Step("decide", None, "Set", "IVR_DECIDED=")
    asked = len(_asking(decide, settings))
    then = decide[1 + asked:]
    mixmonitor = [i for i, s in enumerate(then) if s.app == "MixMonitor"]
    assert mixmonitor == [5]
    # The service's one answer, "<decision>:<file or no>[:<started>]", split; no answer:
    # no recording.
    assert then[0] == Step("decide", None, "GotoIf", '$["${IVR_DECIDED}" = ""]?queue')
    assert _assignments(then[1]) == ["IVR_DECISION=${CUT(IVR_DECIDED,:,1)}",
                                     "IVR_RECORD=${CUT(IVR_DECIDED,:,2)}",
                                     "IVR_RECORDING_AT=${CUT(IVR_DECIDED,:,3)}"]
    assert then[1].app == "MSet"
    assert then[2] == Step("decide", None, "GotoIf",
                           '$["${IVR_RECORD}" = "no" | "${IVR_RECORD}" = ""]?queue')
    # The service started it over AMI (the answer says when): the dialplan starts none.
    assert then[3] == Step("decide", None, "GotoIf", '$["${IVR_RECORDING_AT}" != ""]?queue')
    assert then[4].app == "Set" and then[4].args.startswith("IVR_RECORDING_AT=${STRF")
    assert then[5].args == (f"{settings.recordings.asterisk_dir}/${{IVR_RECORD}},"
                            "i(IVR_MIXMONITOR_ID)")
    labelled = [i for i, s in enumerate(then) if s.label == "queue"]
    assert len(labelled) == 1 and labelled[0] > 5  # the skips land past MixMonitor
    assert _assignments(then[labelled[0]]) == [
        'IVR_RECORDED=${IF($["${IVR_MIXMONITOR_ID}" = ""]?no:yes)}', "IVR_QUEUED=1"]
    assert decide[-1] == Step(
        "decide", None, "Goto", f"{settings.dialplan.queue_context},${{IVR_QUEUE}},1")
    # MixMonitor nowhere else, in any context.
    assert [s for s in steps if s.app == "MixMonitor"] == [then[5]]


def _asking(decide: list[Step], settings: Settings) -> list[Step]:
    """The steps that ask the service for the decision, as ``decision_request`` says; each
    sets ``IVR_DECIDED`` to the answer or leaves it empty."""
    address = settings.fastagi.bind_address
    if settings.dialplan.decision_request == "fastagi":
        assert decide[1].app == "AGI"
        assert decide[1].args.startswith(f"agi://{address}:{settings.fastagi.port}/{SCRIPT},")
        return decide[1:2]
    assert decide[1] == Step("decide", None, "MSet", f"CURLOPT(conntimeout)={CONNECT_TIMEOUT},"
                             f"CURLOPT(httptimeout)={REPORT_TIMEOUT}")
    assert decide[2].app == "Set"
    assert decide[2].args.startswith(
        f"IVR_DECIDED=${{CURL(http://{address}:{settings.fastagi.report_port}/{SCRIPT}"
        "?channel=${UNIQUEID}&name=${URIENCODE(${CHANNEL})},v=1&")
    assert decide[2].args.endswith(")}")
    return decide[1:3]


def _report(decide: list[Step], settings: Settings) -> str:
    """The report's fields as the dialplan sends them (the FastAGI argument, or the body
    CURL() posts)."""
    asking = _asking(decide, settings)[-1].args
    _, _, report = asking.partition(",")
    return report if settings.dialplan.decision_request == "fastagi" else report[:-2]


def test_the_dialplan_waits_for_the_answer_longer_than_the_service_takes() -> None:
    """CURL() gives up only after the service would have: its answer is never cut off by
    the dialplan's own deadline while it stands (a recording started, the dialplan told
    nothing: the end note says so, but the dialplan would not know)."""
    server = ReportServer("127.0.0.1", 0, {})
    assert server.header_timeout + server.handler_timeout < REPORT_TIMEOUT



def test_rule_1_nothing_records_outside_the_decision(dialplan: Dialplan) -> None:
    every = [s for steps in dialplan.values() for s in steps]
    assert sum(s.app == "MixMonitor" for s in every) == len(NOTICES)
    assert all(s.exten == "decide" for s in every if s.app == "MixMonitor")


def test_rule_2_the_question_is_asked_again_as_the_settings_say(
        dialplan: Dialplan, settings: Settings) -> None:
    """Silence (``t``) or another digit (``i``): the question again, until it was asked
    ``question_repeats`` more times; then the decision (no consent)."""
    steps = dialplan["ivr-notice-service"]
    prefix, repeats = settings.prompts.sound_prefix, settings.consent.question_repeats
    timeout = f"{settings.consent.answer_timeout:g}"
    again = [s for s in steps if s.exten == "t"]
    assert again[0].args == f"$[${{IVR_ASKED}} >= {repeats}]?decide,1"
    assert again[1].args == "IVR_ASKED=$[${IVR_ASKED} + 1]"
    assert [(p.app, p.args) for p in _plays(again)] == [
        ("Background", f"{prefix}/service-question,m")]
    assert again[-1] == Step("t", None, "WaitExten", timeout)
    assert _assigning(steps, "IVR_ASKED=0") < steps.index(_plays(steps)[0])
    assert [s for s in steps if s.exten == "i"] == [Step("i", None, "Goto", "t,1")]
    # After the notice it waits for the answer as long as the settings say.
    s = [step for step in steps if step.exten == "s"]
    assert s[-1] == Step("s", None, "WaitExten", timeout)


def test_rule_2_only_1_and_2_answer_and_the_answer_ends_the_notice(
        dialplan: Dialplan) -> None:
    steps = dialplan["ivr-notice-service"]
    extens = {s.exten for s in steps}
    assert extens == {"s", "_[12]", "t", "i", "decide"}
    answer = [s for s in steps if s.exten == "_[12]"]
    assert answer[0].app == "Set" and answer[0].args.startswith("IVR_DIGIT_AT=")
    # The segment the answer cut short is noted as ended at the digit, and so is the
    # notice if it had not ended.
    assert answer[1].app == "MSet" and _assignments(answer[1]) == [
        "IVR_DIGIT=${EXTEN}",
        'IVR_PLAYED=${IVR_PLAYED}${IF($["${IVR_SEG}" != ""]?${IVR_SEG}@${IVR_SEG_START}'
        "@${IVR_DIGIT_AT}~)}",
        "IVR_SEG=",
        'IVR_NOTICE_END=${IF($["${IVR_NOTICE_END}" = ""]?${IVR_DIGIT_AT}:${IVR_NOTICE_END})}']
    assert answer[2:] == [Step("_[12]", None, "Goto", "decide,1")]


def test_the_sales_notice_asks_nothing(dialplan: Dialplan) -> None:
    steps = dialplan["ivr-notice-sales"]
    assert {s.exten for s in steps} == {"s", "decide"}
    assert not any(s.app in ("WaitExten", "Background") for s in steps)
    assert [s for s in steps if s.exten == "s"][-1] == Step("s", None, "Goto", "decide,1")


def _fields(query: str) -> list[str]:
    return [pair.partition("=")[0] for pair in query.split("&")]


@pytest.mark.parametrize("notice", NOTICES)
def test_rule_3_the_report_carries_exactly_the_fields_the_service_parses(
        dialplan: Dialplan, settings: Settings, notice: str) -> None:
    steps = dialplan[f"ivr-notice-{notice}"]
    assert len([s for s in steps if s.app == "AGI" or "CURL(" in s.args]) == 1
    argument = _report([s for s in steps if s.exten == "decide"], settings)
    assert _fields(argument) == list(HEARD_FIELDS)
    assert argument.startswith("v=1&")


def test_rule_4_the_hangup_handler_notes_exactly_the_fields_the_service_parses(
        dialplan: Dialplan, settings: Settings) -> None:
    steps = dialplan[END]
    assert steps[-1] == Step("s", None, "Return", "")
    notes = [s for s in steps if s.args.startswith("FILE(")]
    assert len(steps) == 2 and notes == steps[:1]
    # The segment playing when the caller hung up: noted as never ended.
    assert ('&played=${IVR_PLAYED}${IF($["${IVR_SEG}" != ""]?${IVR_SEG}@${IVR_SEG_START}@~)}&'
            in notes[0].args)
    target, _, note = notes[0].args.partition(")=")
    assert target == (f"FILE({settings.unattended.asterisk_dir}/${{UNIQUEID}}{NOTE_SUFFIX},,,a")
    assert sorted(_fields(note)) == sorted(END_FIELDS)
    assert len(_fields(note)) == len(END_FIELDS)
    assert note.startswith("v=1&")


# [ivr-numbers] ---------------------------------------------------------------------------
def test_with_the_dialplan_flow_every_number_enters_its_lines_notice() -> None:
    settings = _settings()
    text = numbers_dialplan(settings)
    steps = _parse(text)["ivr-numbers"]
    assert "Stasis" not in text and "ivr-unavailable" not in text
    expected = []
    for line in settings.lines:
        for number in line.numbers:
            for form in dialled_forms(number):
                expected += [Step(form, None, "Set", "IVR_DIALLED=${EXTEN}"),
                             Step(form, None, "Set", f"IVR_QUEUE={line.queue}"),
                             Step(form, None, "Goto", f"ivr-notice-{line.notice},s,1")]
    assert steps == expected
    assert len(expected) == 7 * 3 * 3
    assert {s.args for s in steps if s.app == "Goto"} == {
        "ivr-notice-sales,s,1", "ivr-notice-service,s,1"}


def test_every_notice_the_numbers_enter_is_rendered(tmp_path: Path) -> None:
    files = {p.name: p for p in render(_settings(), tmp_path / "out", SITE, EXTRA)}
    numbers = _parse(files[NUMBERS_FILE].read_text())["ivr-numbers"]
    notices = _parse(files[NOTICES_FILE].read_text())
    for step in numbers:
        if step.app == "Goto":
            context, exten, priority = step.args.split(",")
            assert context in notices and (exten, priority) == ("s", "1")


def test_with_the_ari_flow_the_numbers_enter_stasis_as_before() -> None:
    settings = Settings(mode="test")
    assert settings.dialplan.inbound_flow == "ari"
    text = numbers_dialplan(settings)
    assert "ivr-notice-" not in text and "IVR_QUEUE" not in text
    steps = _parse(text)["ivr-numbers"]
    forms = [form for line in settings.lines for n in line.numbers for form in dialled_forms(n)]
    assert [s.exten for s in steps if s.app == "Stasis"] == forms
    assert {s.args for s in steps if s.app == "Stasis"} == {settings.ari.app}
    assert numbers_dialplan(_settings(dialplan=DialplanSettings(inbound_flow="ari"))) == text


def _built(segments: list[tuple[str, bool]], notices: dict[str, list[str]]) -> Manifest:
    return Manifest(segments=[BuiltSegment(id=s, version=2, text=f"the site's {s}", question=q,
                                           file=f"{s}.wav", sha256="0" * 64, duration_ms=900)
                              for s, q in segments],
                    notices={n: Notice(segments=ids) for n, ids in notices.items()})


def test_the_notices_played_are_the_built_prompts_the_service_decides_from(
        tmp_path: Path) -> None:
    """A site with its own catalogue: the dialplan plays the segments of the prompts built
    into ``prompts.local_dir`` (whose manifest the service decides from), not the
    default catalogue's."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / MANIFEST).write_text(dump_manifest(_built(
        [("site-hello", False), ("site-ask", True), ("site-sales", False)],
        {"service": ["site-hello", "site-ask"], "sales": ["site-sales"]})))
    settings = _settings(prompts=PromptSettings(local_dir=prompts))
    files = {p.name: p for p in render(settings, tmp_path / "out", SITE, EXTRA)}
    dialplan = _parse(files[NOTICES_FILE].read_text())
    played = {context: [s.args.split("/")[-1].split(",")[0] for s in steps
                        if s.app in ("Playback", "Background") and s.exten == "s"]
              for context, steps in dialplan.items() if context != END}
    assert played == {"ivr-notice-service": ["site-hello", "site-ask"],
                      "ivr-notice-sales": ["site-sales"]}


def test_a_broken_manifest_is_a_clear_error_not_the_default_notices(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError, match="the notices' dialplan"):
        render(_settings(prompts=PromptSettings(local_dir=tmp_path)), tmp_path / "out", SITE,
               EXTRA)
