"""ivr.asterisk.conf: the real ``asterisk-conf/`` and the test PBX site, rendered with the
settings into files the PBX runs (POLICY.md, "Lines": every configured number, in every
form, enters the policy application)."""

from __future__ import annotations

import re
import stat
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ivr.asterisk.conf import (
    DEFAULT_SOURCE,
    NOTICES_FILE,
    NUMBERS_FILE,
    PLACEHOLDER,
    ConfigError,
    fill,
    numbers_dialplan,
    render,
)
from ivr.policy.lines import LineKind
from ivr.policy.numbers import dialled_forms
from ivr.settings import AriSettings, LineSettings, PbxSettings, Settings

SITE = DEFAULT_SOURCE / "testpbx"
EXTRA = {"agent1_port": "5071", "agent2_port": "5072", "agent_password": "x",
         "customer_port": "5080"}
Sections = dict[str, list[tuple[str, str]]]


def _sections(text: str) -> Sections:
    """Asterisk configuration as ``{section: [(key, value), ...]}``; comments dropped."""
    sections: Sections = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        header = re.fullmatch(r"\[([^\]]+)\](\(.*\))?", line)
        if header:
            current = header.group(1)
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections.setdefault(current, []).append((key.strip(), value.lstrip(">").strip()))
    return sections


def _value(sections: Sections, section: str, key: str) -> str:
    values = [v for k, v in sections[section] if k == key]
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


@pytest.fixture
def rendered(tmp_path: Path, test_settings: Settings) -> dict[str, Path]:
    out = tmp_path / "etc-asterisk"
    files = render(test_settings, out, SITE, EXTRA)
    return {path.name: path for path in files}


def test_every_source_and_site_file_is_rendered(rendered: dict[str, Path]) -> None:
    expected = {p.name for p in DEFAULT_SOURCE.glob("*.conf")} | {
        p.name for p in SITE.glob("*.conf")} | {NUMBERS_FILE, NOTICES_FILE}
    assert set(rendered) == expected
    assert all(path.is_file() for path in rendered.values())


def test_no_placeholder_is_left(rendered: dict[str, Path]) -> None:
    """No ``@@`` outside comments (asterisk.conf's header comment mentions "@@-marked")."""
    for name, path in rendered.items():
        text = path.read_text()
        assert PLACEHOLDER.search(text) is None, name
        for line in text.splitlines():
            assert "@@" not in line.split(";", 1)[0], f"{name}: {line}"


def test_site_values_are_filled(rendered: dict[str, Path]) -> None:
    site = _sections(rendered["pjsip_site.conf"].read_text())
    assert _value(site, "agent1-auth", "password") == "x"
    assert "sip:agent2@127.0.0.1:5072" in rendered["pjsip_site.conf"].read_text()


@pytest.mark.parametrize(
    "number",
    ["+38640404045", "+38640404040", "+38640404030", "+38640404085", "+38640404042",
     "+38640404066", "+38640404041"],
)
def test_lines_table_every_number_in_three_forms_enters_stasis(
    rendered: dict[str, Path], number: str
) -> None:
    """POLICY.md Lines: national, E.164 and 00386 forms all reach the policy application."""
    text = rendered[NUMBERS_FILE].read_text()
    national, e164, international = dialled_forms(number)
    assert (national, e164, international) == (
        "0" + number[4:], number, "00" + number[1:])
    for form in (national, e164, international):
        assert f"exten => {form},1,Stasis(ivr)\n" in text


def test_lines_table_numbers_file_has_nothing_but_the_configured_numbers(
    rendered: dict[str, Path], test_settings: Settings
) -> None:
    """A number no line is configured for never enters the application from [ivr-numbers]."""
    text = rendered[NUMBERS_FILE].read_text()
    extens = re.findall(r"^exten => ([^,]+),1,(.*)$", text, flags=re.MULTILINE)
    configured = {form for line in test_settings.lines for n in line.numbers
                  for form in dialled_forms(n)}
    assert {exten for exten, _ in extens} == configured
    assert len(extens) == 7 * 3
    assert {app for _, app in extens} == {"Stasis(ivr)"}
    assert text.count(" same => n,Hangup()") == 7 * 3
    assert "[ivr-numbers]" in text


def test_numbers_file_follows_the_settings(tmp_path: Path) -> None:
    settings = Settings(mode="test", ari=AriSettings(app="policy"), lines=[
        LineSettings(name="sales", kind=LineKind.SALES, numbers=["040 12 34 56"],
                     queue="sales", notice="sales"),
    ])
    text = numbers_dialplan(settings)
    assert "exten => 040123456,1,Stasis(policy)" in text
    assert "exten => +38640123456,1,Stasis(policy)" in text
    assert "exten => 0038640123456,1,Stasis(policy)" in text
    assert "040404045" not in text


@pytest.mark.parametrize("address", ["127.0.0.1", "192.0.2.10"])
def test_http_manager_and_pjsip_bind_to_the_settings_address(
    tmp_path: Path, address: str
) -> None:
    settings = Settings(mode="test", pbx=PbxSettings(bind_address=IPv4Address(address)))
    files = {p.name: p for p in render(settings, tmp_path / "out", SITE, EXTRA)}
    http = _sections(files["http.conf"].read_text())
    manager = _sections(files["manager.conf"].read_text())
    pjsip = _sections(files["pjsip.conf"].read_text())
    assert _value(http, "general", "bindaddr") == address
    assert _value(http, "general", "bindport") == "8088"
    assert _value(manager, "general", "bindaddr") == address
    assert _value(manager, "general", "port") == str(settings.ami.port)
    assert _value(pjsip, "transport-udp", "bind") == f"{address}:{settings.pbx.sip_port}"


def test_default_bind_address_is_loopback(test_settings: Settings) -> None:
    assert str(test_settings.pbx.bind_address) == "127.0.0.1"


def test_ami_user_is_limited_to_the_service_address(rendered: dict[str, Path]) -> None:
    manager = _sections(rendered["manager.conf"].read_text())
    assert _value(manager, "ivr", "deny") == "0.0.0.0/0.0.0.0"
    assert _value(manager, "ivr", "permit") == "127.0.0.1/255.255.255.255"
    assert _value(manager, "ivr", "secret") == "ivr-test-ami"


def test_ami_write_classes_exclude_originate_command_and_all(
    rendered: dict[str, Path],
) -> None:
    """AMI may start MixMonitor and hang up; it may not place calls or run CLI commands."""
    manager = _sections(rendered["manager.conf"].read_text())
    users = [name for name in manager if name != "general"]
    assert users == ["ivr"]
    for user in users:
        for key, value in manager[user]:
            if key == "write":
                classes = {c.strip().lower() for c in value.split(",")}
                assert classes.isdisjoint({"originate", "command", "all"}), classes
    assert _value(manager, "ivr", "write") == "system,call"


def test_ami_reads_only_agent_and_system_events(rendered: dict[str, Path]) -> None:
    """Channel events (class call) would each cost the service CPU for nothing: the calls
    are followed through ARI."""
    manager = _sections(rendered["manager.conf"].read_text())
    assert _value(manager, "ivr", "read") == "agent,system"


def test_ami_raises_no_event_per_dialplan_step_nor_per_variable(
        rendered: dict[str, Path]) -> None:
    """With any AMI session open, Asterisk makes an event of every channel message, in one
    thread: Newexten and VarSet, most of them, are disabled (the service reads neither),
    never the events it does read (AgentConnect, FullyBooted)."""
    manager = _sections(rendered["manager.conf"].read_text())
    disabled = {e.strip() for e in _value(manager, "general", "disabledevents").split(",")}
    assert disabled == {"Newexten", "VarSet"}


def test_ami_reads_only_system_events_when_the_dialplan_plays_the_notice(
        tmp_path: Path, test_settings: Settings) -> None:
    """The dialplan flow learns who answered from the call's end note: queue events would
    cost Asterisk and the service CPU for nothing."""
    settings = test_settings.model_copy(update={"dialplan": test_settings.dialplan.model_copy(
        update={"inbound_flow": "dialplan"})})
    files = {p.name: p for p in render(settings, tmp_path / "etc", SITE, EXTRA)}
    manager = _sections(files["manager.conf"].read_text())
    assert _value(manager, "ivr", "read") == "system"


def test_asterisk_system_name_is_the_node(rendered: dict[str, Path],
                                          test_settings: Settings) -> None:
    """Channel ids carry the node: two nodes on one database never make the same id."""
    core = _sections(rendered["asterisk.conf"].read_text())
    assert _value(core, "options", "systemname") == test_settings.node


def test_ari_user_from_the_settings(rendered: dict[str, Path]) -> None:
    ari = _sections(rendered["ari.conf"].read_text())
    assert _value(ari, "ivr", "type") == "user"
    assert _value(ari, "ivr", "password") == "ivr-test-ari"


def test_rendered_files_are_mode_0640(rendered: dict[str, Path]) -> None:
    for name, path in rendered.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, name


def test_rendering_again_makes_an_existing_file_0640(tmp_path: Path,
                                                     test_settings: Settings) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "ari.conf").write_text("old")
    (out / "ari.conf").chmod(0o666)
    render(test_settings, out, SITE, EXTRA)
    assert stat.S_IMODE((out / "ari.conf").stat().st_mode) == 0o640
    assert "old" not in (out / "ari.conf").read_text()


def test_placeholder_without_value_names_the_file(
    tmp_path: Path, test_settings: Settings
) -> None:
    with pytest.raises(ConfigError) as caught:
        render(test_settings, tmp_path / "out", SITE, {"agent1_port": "5071"})
    message = str(caught.value)
    assert str(SITE / "pjsip_site.conf") in message
    assert "@@agent2_port@@" in message and "@@agent_password@@" in message


def test_fill_names_every_missing_placeholder_once() -> None:
    with pytest.raises(ConfigError, match=r"^x\.conf: no value for @@a@@, @@b@@$"):
        fill("@@b@@ @@a@@ @@b@@ @@c@@", {"c": "3"}, "x.conf")


def test_fill_replaces_every_occurrence() -> None:
    assert fill("@@a@@:@@a@@ @@b@@", {"a": "1", "b": "2"}, "x.conf") == "1:1 2"
    assert PLACEHOLDER.findall("@@Upper@@ @@ok_1@@") == ["ok_1"]


def test_missing_site_directory_is_config_error(tmp_path: Path, test_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="no site directory"):
        render(test_settings, tmp_path / "out", tmp_path / "no-site", EXTRA)


def test_missing_source_directory_is_config_error(
    tmp_path: Path, test_settings: Settings
) -> None:
    with pytest.raises(ConfigError, match="no asterisk-conf directory"):
        render(test_settings, tmp_path / "out", SITE, EXTRA, source=tmp_path / "nothing")


def test_without_the_application_a_caller_still_reaches_the_queue_unrecorded() -> None:
    """Stasis fails at once when no service instance is connected (a restart): the
    caller goes to the line's queue with nothing recorded, never a refusal."""
    text = numbers_dialplan(Settings(mode="test"))
    assert ' same => n,GotoIf($["${STASISSTATUS}" = "FAILED"]?unavailable)' in text
    assert " same => n(unavailable),Set(IVR_DIALLED=${EXTEN})" in text
    assert " same => n,Goto(ivr-unavailable,sales,1)" in text
    assert " same => n,Goto(ivr-unavailable,service,1)" in text
    source = (DEFAULT_SOURCE / "extensions.conf").read_text()
    unavailable = source.split("[ivr-unavailable]")[1].split("\n[")[0]
    assert "Set(IVR_RECORDED=no)" in unavailable and "MixMonitor" not in unavailable
    assert "Goto(@@queue_context@@,${EXTEN},1)" in unavailable
    # Rule 4: the call is noted when it ends, for the service to return it if missed.
    assert "Set(CHANNEL(hangup_handler_push)=ivr-unattended-end,s,1)" in unavailable
    note = source.split("[ivr-unattended-end]")[1].split("\n[")[0]
    assert "FILE(@@unattended_dir@@/${UNIQUEID}.call,,,a)" in note and "Return()" in note
