"""Telephone numbers: the forms callers and trunks use, reduced to E.164.

Slovenian numbers arrive in national form (``040 40 40 45``), E.164 (``+386 40 40 40 45``)
or with the international prefix (``00386 40 40 40 45``). Everything the service stores or
compares is E.164. A caller who withholds the number is ``None`` (withheld), never a guess.
"""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "SI"

# What SIP and Asterisk put in the caller ID when the caller withheld it.
_WITHHELD = {"", "anonymous", "restricted", "unknown", "unavailable", "private", "withheld"}
# Characters people and trunks put between digits; anything else is junk.
_SEPARATORS = re.compile(r"[ \t\-./()]")
_SHAPE = re.compile(r"\+?[0-9]+")
_MAX_DIGITS = 20
_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the 00 prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


class InvalidNumber(ValueError):
    """A string that is not a telephone number this service can use."""

    def __init__(self, raw: str, reason: str) -> None:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        super().__init__(f"not a telephone number: {shown!r} ({reason})")
        self.raw = raw
        self.reason = reason


def to_e164(raw: str, region: str = DEFAULT_REGION) -> str:
    """Return ``raw`` in E.164 form, or raise :class:`InvalidNumber` saying why.

    >>> to_e164("040 40 40 45")
    '+38640404045'
    >>> to_e164("+386 40 40 40 45")
    '+38640404045'
    >>> to_e164("00386 40 40 40 45")
    '+38640404045'
    """
    if not isinstance(raw, str):
        raise InvalidNumber(repr(raw), "expected text")
    compact = _SEPARATORS.sub("", raw.strip())
    if not compact:
        raise InvalidNumber(raw, "empty")
    if not _SHAPE.fullmatch(compact):
        raise InvalidNumber(raw, "only digits, one leading '+', spaces and - . / ( ) are allowed")
    if len(compact.lstrip("+")) > _MAX_DIGITS:
        raise InvalidNumber(raw, f"more than {_MAX_DIGITS} digits")
    try:
        parsed = phonenumbers.parse(compact, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(raw, _PARSE_ERRORS.get(exc.error_type, "not a number")) from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(raw, "not a possible number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def caller_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """A caller ID as E.164, or ``None`` when the caller withheld it.

    Raises :class:`InvalidNumber` for a caller ID that is present but not a number, so the
    caller of this function decides what to do with it (store it as withheld, log it).

    >>> caller_e164("anonymous") is None
    True
    >>> caller_e164("031 123 456")
    '+38631123456'
    """
    if raw is None or raw.strip().lower() in _WITHHELD:
        return None
    return to_e164(raw, region)


def national(e164: str) -> str:
    """The national form used in the dialplan, e.g. ``+38640404045`` -> ``040404045``."""
    parsed = phonenumbers.parse(e164, None)
    digits = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return _SEPARATORS.sub("", digits)


def dialled_forms(e164: str) -> tuple[str, str, str]:
    """The three forms a trunk may deliver: national, E.164 and ``00``-prefixed.

    >>> dialled_forms("+38640404045")
    ('040404045', '+38640404045', '0038640404045')
    """
    return national(e164), e164, "00" + e164[1:]
