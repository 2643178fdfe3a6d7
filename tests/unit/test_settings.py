"""ivr.settings: POLICY.md's defaults, where settings come from, and failing closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ivr.policy.lines import LineKind
from ivr.settings import Settings, config_file, get_settings

SALES = "+38640404045"
SERVICE = ["+38640404040", "+38640404030", "+38640404085", "+38640404042", "+38640404066",
           "+38640404041"]
REAL_SECRETS: dict[str, Any] = {
    "ari": {"password": "a-real-ari-password"},
    "ami": {"secret": "a-real-ami-secret"},
    "database": {"url": "postgresql+psycopg://ivr:a-real-db-password@db.internal:5432/ivr"},
}


def _line(name: str, kind: str, *numbers: str) -> dict[str, Any]:
    return {"name": name, "kind": kind, "numbers": list(numbers), "queue": name, "notice": kind}


# --- POLICY.md's defaults -------------------------------------------------------------------


def test_lines_table_sales_line_is_040404045_recorded_on_legal_basis(
    test_settings: Settings,
) -> None:
    """POLICY.md Lines: 040 40 40 45 is the sales line, recorded always (ZEKom-2 214(7))."""
    sales = [line for line in test_settings.lines if line.kind is LineKind.SALES]
    assert len(sales) == 1
    assert sales[0].numbers == [SALES]
    assert sales[0].notice == "sales"


def test_lines_table_six_service_numbers_need_consent(test_settings: Settings) -> None:
    """POLICY.md Lines: the six customer-service numbers are consent lines."""
    service = [line for line in test_settings.lines if line.kind is LineKind.SERVICE]
    assert len(service) == 1
    assert service[0].numbers == SERVICE
    assert service[0].notice == "service"


def test_lines_table_no_other_lines_by_default(test_settings: Settings) -> None:
    assert [line.name for line in test_settings.lines] == ["sales", "service"]


def test_rule_6_retention_is_6_months_for_both_kinds(test_settings: Settings) -> None:
    """Rule 6: retention 6 months from creation, for legal-basis and consent recordings."""
    assert test_settings.retention.legal_basis_months == 6
    assert test_settings.retention.consent_months == 6


def test_rule_4_missed_calls_returned_within_60_minutes(test_settings: Settings) -> None:
    """Rule 4: missed calls are returned within 1 hour."""
    assert test_settings.callbacks.window_minutes == 60


def test_rule_8_revocation_within_5_slovenian_working_days(test_settings: Settings) -> None:
    """Rule 8: deleted at the latest within 5 working days, Slovenian calendar."""
    assert test_settings.revocations.working_days == 5
    assert test_settings.revocations.calendar_country == "SI"


def test_rule_2_question_waits_5_seconds_and_is_repeated_once(test_settings: Settings) -> None:
    """Rule 2: how often the question is repeated and the timeout are settings."""
    assert test_settings.consent.answer_timeout == 5.0
    assert test_settings.consent.question_repeats == 1


def test_defaults_are_slovenian(test_settings: Settings) -> None:
    assert test_settings.timezone == "Europe/Ljubljana"
    assert test_settings.region == "SI"


def test_default_mode_is_production() -> None:
    """Settings fail closed: without a mode, production is assumed (and the defaults refused)."""
    with pytest.raises(ValidationError, match="production mode refuses"):
        Settings()


# --- lines and numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(("number", "kind"),
                         [(SALES, LineKind.SALES), *((n, LineKind.SERVICE) for n in SERVICE)])
def test_lines_table_line_for_finds_each_number(
    test_settings: Settings, number: str, kind: LineKind
) -> None:
    line = test_settings.line_for(number)
    assert line is not None
    assert line.kind is kind
    assert line.name == kind.value
    assert line.queue == kind.value
    assert line.notice == kind.value


@pytest.mark.parametrize("number", ["+38640404046", "+38631123456", "+442079460958"])
def test_line_for_a_number_of_no_line_is_none(test_settings: Settings, number: str) -> None:
    assert test_settings.line_for(number) is None


@pytest.mark.parametrize(
    "written", ["040 40 40 45", "040404045", "+386 40 40 40 45", "00386 40 40 40 45",
                "040-40-40-45", "(040) 40.40.45"],
)
def test_lines_table_config_numbers_in_any_form_are_normalised(written: str) -> None:
    """POLICY.md Lines: numbers are recognised in national, E.164 and 00386 forms."""
    settings = get_settings(mode="test", lines=[_line("sales", "sales", written)])
    assert settings.lines[0].numbers == [SALES]
    line = settings.line_for(SALES)
    assert line is not None and line.name == "sales"


def test_junk_number_in_config_names_the_line_and_the_number() -> None:
    with pytest.raises(ValidationError) as caught:
        get_settings(mode="test", lines=[_line("sales", "sales", "040404045"),
                                     _line("service", "service", "040404040", "04O4O4O41")])
    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == ("lines", 1, "numbers")
    assert "'04O4O4O41'" in errors[0]["msg"]
    assert "only digits" in errors[0]["msg"]
    assert "lines.1.numbers" in str(caught.value)


def test_same_number_on_two_lines_is_refused() -> None:
    """POLICY.md Lines: a number has one legal basis; it cannot be on a sales and a service line."""
    with pytest.raises(ValidationError, match=r"number \+38640404045 is on two lines: "
                                              r"'sales' and 'service'"):
        get_settings(mode="test", lines=[_line("sales", "sales", "040 40 40 45"),
                                     _line("service", "service", "00386 40 40 40 45")])


def test_same_line_name_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="line name 'sales' is configured twice"):
        get_settings(mode="test", lines=[_line("sales", "sales", "040404045"),
                                     _line("sales", "sales", "040404046")])


def test_no_lines_is_refused() -> None:
    with pytest.raises(ValidationError):
        get_settings(mode="test", lines=[])


# --- failing closed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "value", "named"),
    [
        ("ari", {"password": "ivr-test-ari"}, "ari.password"),
        ("ami", {"secret": "ivr-test-ami"}, "ami.secret"),
        ("database", {"url": "postgresql+psycopg://ivr:ivr-test-db@db:5432/ivr"},
         "database.url password"),
    ],
)
def test_production_refuses_each_test_secret(
    section: str, value: dict[str, str], named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(mode="production", **{**REAL_SECRETS, section: value})
    message = str(caught.value)
    assert "production mode refuses the test PBX's default secrets for " + named + ":" in message
    assert "a-real-" not in message  # real secrets are never echoed


def test_production_refusal_does_not_echo_the_secret() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(mode="production")
    message = str(caught.value)
    assert "ari.password, ami.secret, database.url password" in message
    assert "ivr-test-db" not in message


def test_production_accepts_real_secrets() -> None:
    settings = Settings(mode="production", **REAL_SECRETS)
    assert settings.mode == "production"
    assert settings.ari.password.get_secret_value() == "a-real-ari-password"
    assert settings.database.password() == "a-real-db-password"


def test_production_accepts_real_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IVR_ARI__PASSWORD", "a-real-ari-password")
    monkeypatch.setenv("IVR_AMI__SECRET", "a-real-ami-secret")
    monkeypatch.setenv("IVR_DATABASE__URL", REAL_SECRETS["database"]["url"])
    assert get_settings().mode == "production"


def test_test_mode_accepts_the_defaults(test_settings: Settings) -> None:
    assert test_settings.ari.password.get_secret_value() == "ivr-test-ari"
    assert test_settings.ami.secret.get_secret_value() == "ivr-test-ami"
    assert test_settings.database.password() == "ivr-test-db"


def test_secrets_are_hidden_in_repr(test_settings: Settings) -> None:
    assert "ivr-test-ari" not in repr(test_settings)
    assert "ivr-test-db" not in repr(test_settings)


def test_settings_are_frozen(test_settings: Settings) -> None:
    with pytest.raises(ValidationError):
        test_settings.mode = "production"  # type: ignore[misc]  # what the test shows


def test_fastagi_hears_this_host_and_the_asterisk_addresses_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastAGI reports are decisions: by default only this host (loopback and the bind
    address) may make them; an Asterisk elsewhere is named."""
    monkeypatch.setenv("IVR_MODE", "test")
    assert get_settings().fastagi.allowed_peers() == {"127.0.0.1"}
    monkeypatch.setenv("IVR_FASTAGI__BIND_ADDRESS", "10.0.0.7")
    monkeypatch.setenv("IVR_FASTAGI__ASTERISK_ADDRESSES", '["10.0.0.8"]')
    assert get_settings().fastagi.allowed_peers() == {"127.0.0.1", "10.0.0.7", "10.0.0.8"}
    monkeypatch.setenv("IVR_FASTAGI__ASTERISK_ADDRESSES", '["asterisk.example"]')
    with pytest.raises(ValidationError, match=r"fastagi\.asterisk_addresses"):
        get_settings()


def test_the_decisions_listeners_need_a_port_each_and_a_known_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastAGI and the HTTP reports cannot share a port (one would not start); the way the
    dialplan asks is one of the two the service answers."""
    monkeypatch.setenv("IVR_MODE", "test")
    assert (get_settings().fastagi.report_port, get_settings().dialplan.decision_request) == (
        4574, "http")
    monkeypatch.setenv("IVR_FASTAGI__REPORT_PORT", "4573")
    with pytest.raises(ValidationError, match="report_port 4573 is FastAGI's port too"):
        get_settings()
    monkeypatch.delenv("IVR_FASTAGI__REPORT_PORT")
    monkeypatch.setenv("IVR_DIALPLAN__DECISION_REQUEST", "ari")
    with pytest.raises(ValidationError, match=r"dialplan\.decision_request"):
        get_settings()


# --- sources: environment, file, defaults ----------------------------------------------------


def test_environment_overrides_nested_with_double_underscore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IVR_MODE", "test")
    monkeypatch.setenv("IVR_CONSENT__ANSWER_TIMEOUT", "7")
    monkeypatch.setenv("IVR_CALLBACKS__WINDOW_MINUTES", "30")
    settings = get_settings()
    assert settings.mode == "test"
    assert settings.consent.answer_timeout == 7.0
    assert settings.consent.question_repeats == 1  # the rest of the section keeps its default
    assert settings.callbacks.window_minutes == 30


def test_environment_lines_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_MODE", "test")
    monkeypatch.setenv("IVR_LINES", '[{"name": "sales", "kind": "sales", "numbers": '
                                    '["040 40 40 45"], "queue": "sales", "notice": "sales"}]')
    settings = get_settings()
    assert [line.numbers for line in settings.lines] == [[SALES]]


def test_environment_value_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_MODE", "test")
    monkeypatch.setenv("IVR_CONSENT__ANSWER_TIMEOUT", "0")
    with pytest.raises(ValidationError, match=r"consent\.answer_timeout"):
        get_settings()


SETTINGS_TOML = """\
mode = "test"

[consent]
answer_timeout = 9
question_repeats = 2

[[lines]]
name = "sales"
kind = "sales"
numbers = ["+386 40 40 40 45", "00386 40 40 40 99"]
queue = "sales"
notice = "sales"
"""


def test_file_named_by_ivr_config_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "etc" / "site.toml"
    path.parent.mkdir()
    path.write_text(SETTINGS_TOML)
    monkeypatch.setenv("IVR_CONFIG", str(path))
    assert config_file() == path
    settings = get_settings()
    assert settings.consent.answer_timeout == 9.0
    assert settings.consent.question_repeats == 2
    assert settings.lines[0].numbers == [SALES, "+38640404099"]


def test_ivr_config_naming_a_missing_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "ivr.toml"
    monkeypatch.setenv("IVR_CONFIG", str(missing))
    with pytest.raises(FileNotFoundError, match=f"IVR_CONFIG={missing}: no such settings file"):
        get_settings(mode="test")


def test_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SETTINGS_TOML)
    monkeypatch.setenv("IVR_CONFIG", str(path))
    monkeypatch.setenv("IVR_CONSENT__ANSWER_TIMEOUT", "7")
    settings = get_settings()
    assert settings.consent.answer_timeout == 7.0
    assert settings.consent.question_repeats == 2  # from the file


def test_init_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_MODE", "production")
    assert get_settings(mode="test").mode == "test"


def test_ivr_toml_in_the_working_directory_is_read() -> None:
    Path("ivr.toml").write_text(SETTINGS_TOML)
    assert config_file() == Path("ivr.toml")
    assert get_settings().consent.answer_timeout == 9.0


def test_no_file_means_defaults() -> None:
    """The autouse fixture leaves no settings file to find: the defaults are POLICY.md's."""
    assert config_file() is None
    assert get_settings(mode="test").consent.answer_timeout == 5.0


def test_malformed_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("mode = \n")
    monkeypatch.setenv("IVR_CONFIG", str(path))
    with pytest.raises(ValueError):
        get_settings()


# --- refusing what it does not know ----------------------------------------------------------


def test_unknown_top_level_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(mode="test", recording_everything=True)  # type: ignore[call-arg]


def test_unknown_top_level_key_in_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.toml"
    path.write_text('mode = "test"\nretension_months = 1\n')
    monkeypatch.setenv("IVR_CONFIG", str(path))
    with pytest.raises(ValidationError, match="retension_months"):
        get_settings()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"consent": {"answer_timout": 3}}, id="consent-typo"),
        pytest.param({"retention": {"consent_month": 1}}, id="retention-typo"),
        pytest.param({"lines": [{**_line("sales", "sales", "040404045"), "recorded": False}]},
                     id="line-unknown-key"),
    ],
)
def test_unknown_key_in_a_section_is_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(mode="test", **overrides)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe/Ljubljanaa", "", "../etc/passwd"])
def test_unknown_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(mode="test", timezone=zone)


def test_unknown_line_kind_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"lines\.0\.kind"):
        get_settings(mode="test", lines=[_line("vip", "vip", "040404045")])


def test_a_fault_point_is_refused_outside_test_mode() -> None:
    with pytest.raises(ValidationError, match="fault_point is for the fault-injection tests"):
        Settings(mode="production", fault_point="before_recording", **REAL_SECRETS)
    assert Settings(mode="test", fault_point="question").fault_point == "question"


def test_an_unknown_fault_point_or_a_bad_node_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="fault_point"):
        Settings(mode="test", fault_point="everywhere")
    with pytest.raises(ValidationError, match="node"):
        Settings(mode="test", node="../etc")
    assert Settings(mode="test", node="pbx-1.example").node == "pbx-1.example"
