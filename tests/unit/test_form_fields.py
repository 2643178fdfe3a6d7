"""``form_fields`` reads URL-encoded fields exactly as ``urllib.parse.parse_qsl`` does with
``keep_blank_values`` and ``strict_parsing``: the same pairs, the same refusals."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.asterisk.form_fields import form_fields

# What the dialplan writes, what breaks it, and what a hostile caller ID could carry.
ALPHABET = st.sampled_from(list("ab1=&+%%2B41%C5%A1%zz~@.- é\x00"))


def outcome(read: object, text: str, limit: int) -> object:
    try:
        return ("pairs", list(read(text, limit)))  # type: ignore[operator]
    except ValueError as exc:
        return ("refused", str(exc))


def stdlib(text: str, limit: int) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                     max_num_fields=limit)


@settings(max_examples=3000, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join), st.integers(min_value=1, max_value=6))
def test_the_same_pairs_and_refusals_as_parse_qsl(text: str, limit: int) -> None:
    assert outcome(form_fields, text, limit) == outcome(stdlib, text, limit)


@pytest.mark.parametrize("text", ["a=1&&b=2", "a=1&b", "a=1&", "&a=1"])
def test_a_field_without_its_equals_sign_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="bad query field"):
        form_fields(text, 10)


def test_an_empty_text_has_no_fields() -> None:
    assert form_fields("", 1) == []


def test_more_fields_than_allowed_are_refused() -> None:
    assert form_fields("a=1&b=2", 2) == [("a", "1"), ("b", "2")]
    with pytest.raises(ValueError, match="Max number of fields"):
        form_fields("a=1&b=2&c=3", 2)


def test_decoded_as_the_dialplan_encodes() -> None:
    assert form_fields("caller=%2B38631000925&name=PJSIP%2Ftrunk-0001&x=a+b&y=%C5%A1",
                       4) == [("caller", "+38631000925"), ("name", "PJSIP/trunk-0001"),
                              ("x", "a b"), ("y", "š")]
