"""ivr.policy.numbers: what callers and trunks send, reduced to E.164 (POLICY.md, "Lines":
numbers must be recognised in national, E.164 and 00386 forms)."""

from __future__ import annotations

import pytest

from ivr.policy.numbers import InvalidNumber, caller_e164, dialled_forms, national, to_e164

SALES = "+38640404045"
# POLICY.md, "Lines and their legal basis": the sales number and the six service numbers.
POLICY_NUMBERS = {
    "040 40 40 45": "+38640404045",
    "040 40 40 40": "+38640404040",
    "040 40 40 30": "+38640404030",
    "040 40 40 85": "+38640404085",
    "040 40 40 42": "+38640404042",
    "040 40 40 66": "+38640404066",
    "040 40 40 41": "+38640404041",
}
# A message names the input (cut to 40 characters) and the reason, and nothing more.
MAX_MESSAGE = 200


@pytest.mark.parametrize(
    "raw",
    [
        "040 40 40 45",
        "040404045",
        "+386 40 40 40 45",
        "+38640404045",
        "00386 40 40 40 45",
        "0038640404045",
        "040-40-40-45",
        "040.40.40.45",
        "040/40 40 45",
        "(040) 40 40 45",
        "+386 (0)40 40 40 45",
        "+386-40-404-045",
        "00386.40.40.40.45",
        "  040 40 40 45  ",
    ],
)
def test_lines_rule_sales_number_in_every_written_form_is_one_e164(raw: str) -> None:
    """POLICY.md Lines: national, E.164 and 00386 forms, with any separators, are one number."""
    assert to_e164(raw) == SALES


@pytest.mark.parametrize(("written", "e164"), sorted(POLICY_NUMBERS.items()))
def test_lines_rule_every_configured_number_in_its_three_dialled_forms(
    written: str, e164: str
) -> None:
    """POLICY.md Lines: each of the seven numbers, as a trunk delivers it, maps back to itself."""
    assert to_e164(written) == e164
    forms = dialled_forms(e164)
    assert forms == (written.replace(" ", ""), e164, "00" + e164[1:])
    for form in forms:
        assert to_e164(form) == e164
    assert national(e164) == written.replace(" ", "")


def test_the_seven_policy_numbers_are_distinct() -> None:
    assert len(set(POLICY_NUMBERS.values())) == 7


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+44 20 7946 0958", "+442079460958"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+1 212 555 0100", "+12125550100"),
        ("+49 30 901820", "+4930901820"),
        ("+385 1 4800 000", "+38514800000"),
    ],
)
def test_foreign_numbers_keep_their_country(raw: str, e164: str) -> None:
    assert to_e164(raw) == e164


def test_slovenian_landline_caller_in_national_form() -> None:
    assert caller_e164("031 123 456") == "+38631123456"
    assert caller_e164("01 234 56 78") == "+38612345678"


def test_region_argument_reads_national_numbers_of_another_country() -> None:
    assert to_e164("020 7946 0958", region="GB") == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    ["anonymous", "Anonymous", "ANONYMOUS", "", "   ", "restricted", "Restricted", "unknown",
     "unavailable", "private", "withheld", " anonymous ", None],
)
def test_rule_3_withheld_caller_id_is_none_never_a_guess(raw: str | None) -> None:
    """Rule 3 (proof names the caller): a withheld caller ID is recorded as withheld."""
    assert caller_e164(raw) is None


def test_rule_3_caller_id_that_is_junk_is_an_error_not_withheld() -> None:
    """Rule 3: a present but broken caller ID is reported, not silently stored as withheld."""
    with pytest.raises(InvalidNumber):
        caller_e164("sip:alice@example.com")


JUNK = [
    pytest.param("abc", "only digits", id="letters"),
    pytest.param("040 40 40 4x", "only digits", id="trailing-letter"),
    pytest.param("040 40 40 45 ext 3", "only digits", id="extension"),
    pytest.param("+", "only digits", id="plus-alone"),
    pytest.param("++38640404045", "only digits", id="double-plus"),
    pytest.param("040+40404045", "only digits", id="plus-inside"),
    pytest.param("1", "not a number", id="one-digit"),
    pytest.param("12", "not a possible number", id="two-digits"),
    pytest.param("+386", "too short", id="country-code-only"),
    pytest.param("0038", "too short after the 00 prefix", id="00-prefix-only"),
    pytest.param("1" * 20, "too long", id="20-digits"),
    pytest.param("1" * 21, "more than 20 digits", id="21-digits"),
    pytest.param("+" + "3" * 30, "more than 20 digits", id="30-digits-e164"),
    pytest.param("'; DROP TABLE calls; --", "only digits", id="sql-injection"),
    pytest.param("040404045' OR '1'='1", "only digits", id="sql-injection-suffix"),
    pytest.param("$(rm -rf /)", "only digits", id="shell-substitution"),
    pytest.param("040404045; reboot", "only digits", id="shell-separator"),
    pytest.param("`id`", "only digits", id="shell-backticks"),
    pytest.param("040404045,1,Stasis(x)", "only digits", id="dialplan-injection"),
    pytest.param("040\x00404045", "only digits", id="nul"),
    pytest.param("040\x07404045", "only digits", id="bel"),
    pytest.param("\x1b[31m040404045", "only digits", id="ansi-escape"),
    pytest.param("040404045\x7f", "only digits", id="del"),
    pytest.param("٠٤٠٤٠٤٠٤٠٤٥", "only digits", id="arabic-indic-digits"),
    pytest.param("۰۴۰۴۰۴۰۴۰۴۵", "only digits", id="extended-arabic-indic-digits"),
    pytest.param("０４０４０４０４５", "only digits", id="fullwidth-digits"),
    pytest.param("०४०४०४०४५", "only digits", id="devanagari-digits"),
    pytest.param("4" * 100_000, "more than 20 digits", id="very-long-digits"),
    pytest.param("x" * 100_000, "only digits", id="very-long-junk"),
]


@pytest.mark.parametrize(("raw", "reason"), JUNK)
def test_junk_is_invalid_number_with_a_short_message_giving_the_reason(
    raw: str, reason: str
) -> None:
    with pytest.raises(InvalidNumber) as caught:
        to_e164(raw)
    message = str(caught.value)
    assert message.startswith("not a telephone number: ")
    assert reason in message
    assert reason in caught.value.reason
    assert len(message) <= MAX_MESSAGE
    assert caught.value.raw == raw


@pytest.mark.parametrize(("raw", "reason"), JUNK)
def test_junk_caller_id_is_invalid_number_too(raw: str, reason: str) -> None:
    with pytest.raises(InvalidNumber, match=reason):
        caller_e164(raw)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("040\n404045", id="newline"),
        pytest.param("040\r404045", id="carriage-return"),
        pytest.param("040\x0b404045", id="vertical-tab"),
        pytest.param("040\x0c404045", id="form-feed"),
        pytest.param("040\x1c404045", id="file-separator"),
        pytest.param("040\x1f404045", id="unit-separator"),
        pytest.param("040\x85404045", id="next-line"),
        pytest.param("040\u2028404045", id="line-separator"),
    ],
)
def test_control_characters_between_digits_are_junk(raw: str) -> None:
    with pytest.raises(InvalidNumber, match="only digits"):
        to_e164(raw)


def test_message_truncates_long_input_to_40_characters() -> None:
    raw = "9" * 25 + "x" * 975
    with pytest.raises(InvalidNumber) as caught:
        to_e164(raw)
    message = str(caught.value)
    assert repr(raw[:40] + "...") in message
    assert raw[:41] not in message
    assert len(message) < 150
    assert caught.value.raw == raw  # the whole input stays available to the caller


def test_message_shows_short_input_whole() -> None:
    with pytest.raises(InvalidNumber) as caught:
        to_e164("12345abc")
    assert "'12345abc'" in str(caught.value)
    assert "..." not in str(caught.value)


def test_message_escapes_control_characters() -> None:
    with pytest.raises(InvalidNumber) as caught:
        to_e164("040\x00\x1b[2J")
    message = str(caught.value)
    assert "\x00" not in message and "\x1b" not in message
    assert "\\x00" in message


@pytest.mark.parametrize("raw", [123, 40404045.0, b"040404045"])
def test_not_text_is_invalid_number(raw: object) -> None:
    with pytest.raises(InvalidNumber, match="expected text"):
        to_e164(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["", "   ", " - ( ) . / "])
def test_nothing_but_separators_is_empty(raw: str) -> None:
    with pytest.raises(InvalidNumber, match="empty"):
        to_e164(raw)


def test_invalid_number_is_a_value_error() -> None:
    assert issubclass(InvalidNumber, ValueError)
