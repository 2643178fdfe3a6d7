"""The ``ivr`` command under hostile arguments (issue 7, point 5).

Hypothesis hands :func:`ivr.cli.main` argument lists: random text, every known subcommand
with junk options and values, very long strings, any unicode but NUL (including the
surrogate escapes Python makes of argv bytes that are not UTF-8). The database setting
points at a port nothing listens on, so nothing reaches a real database. Whatever arrives,
the command ends as its users are promised (``ivr/cli.py``): exit 0, 1 or 2, and a failure
says what is wrong on stderr, never a traceback and never another exception.

The commands that would run a service or write outside the test's directory are stood in
for: ``serve``, and the audio and configuration writers behind ``prompts build`` and
``asterisk-conf render`` (their argument handling still runs).
"""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import ivr.asterisk.conf
import ivr.cli
import ivr.notices.audio
from ivr.cli import build_parser, main
from ivr.notices.catalogue import Manifest

UNREACHABLE_DATABASE = "postgresql+psycopg://x@127.0.0.1:1/x"


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], list[str]]]:
    """Every leaf command of the parser, with the options it takes."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))
            return
    yield path, [option for action in parser._actions for option in action.option_strings]


COMMANDS = dict(commands(build_parser()))
OPTIONS = sorted({option for options in COMMANDS.values() for option in options})

SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
ARGV_TEXT = st.characters(exclude_characters="\x00", exclude_categories=SURROGATES) | \
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)  # argv bytes not UTF-8
WORD = st.text(ARGV_TEXT, max_size=40)
LONG = st.integers(1_000, 200_000).map(lambda n: "9" * n) | st.text(ARGV_TEXT, min_size=500,
                                                                     max_size=3000)
TIMES = st.datetimes(
                     timezones=st.none() | st.builds(
                         timezone, st.integers(-1439, 1439).map(lambda m: timedelta(
                             minutes=m)))).map(datetime.isoformat)
VALUES = WORD | LONG | TIMES | st.uuids().map(str) | st.sampled_from(
    ["now", "phone", "email", "040404040", "+38640404040", "agent1", "-", "--", "=", "a=b",
     "training", "evidence", "..", "/"])
JUNK_ARGS = st.lists(st.sampled_from(OPTIONS) | VALUES, max_size=8)


def known_command_argv() -> st.SearchStrategy[list[str]]:
    return st.builds(lambda path, rest: [*path, *rest],
                     st.sampled_from(sorted(COMMANDS)), JUNK_ARGS)


def run_cli(argv: Sequence[str]) -> tuple[object, str, str]:
    """``ivr ARGV`` in this process, with stdout and stderr encoded as on a UTF-8 terminal
    (stdout strict, stderr with backslash escapes)."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IVR_MODE", "test")
        patch.setenv("IVR_DATABASE__URL", UNREACHABLE_DATABASE)
        patch.setattr(ivr.cli, "cmd_serve", lambda args: 0)
        patch.setattr(ivr.notices.audio, "build",
                      lambda *args: Manifest(segments=[], notices={}))
        patch.setattr(ivr.asterisk.conf, "render", lambda *args: [])
        patch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code: object = main(list(argv))
            except SystemExit as exc:
                code = exc.code
            out.flush()
            err.flush()
    return (code, out.buffer.getvalue().decode(),
            err.buffer.getvalue().decode())


def assert_ends_cleanly(argv: Sequence[str]) -> None:
    code, _, err = run_cli(argv)
    assert code in (0, 1, 2), (code, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    if code != 0:
        assert err.startswith(("usage:", "ivr: ", "configuration error:")), err[-2000:]


def test_the_parser_knows_the_commands_it_is_fuzzed_with() -> None:
    assert {("callbacks", "list"), ("revocations", "add"), ("users", "add"),
            ("recordings", "get"), ("subject", "export"), ("serve",)} <= set(COMMANDS)


@settings(max_examples=150, deadline=None)
@given(st.lists(WORD | LONG, max_size=6))
def test_random_argument_lists(argv: list[str]) -> None:
    assert_ends_cleanly(argv)


@settings(max_examples=250, deadline=None)
@given(known_command_argv())
# Found by this test: with the database down these printed SQLAlchemy's traceback.
@example(["audit", "verify"])
@example(["callbacks", "list", "--json"])
@example(["db", "upgrade", ":"])  # alembic's CommandError, with its traceback
def test_known_commands_with_junk_options(argv: list[str]) -> None:
    assert_ends_cleanly(argv)


@settings(max_examples=60, deadline=None)
@given(caller=VALUES, received=TIMES | VALUES, by=VALUES, note=VALUES)
# Found while fuzzing: a time before the year 1 in the centre's zone overflowed (OverflowError).
@example(caller="040404040", received="0001-01-01T00:00:00+01:00", by="dpo", note="")
def test_a_revocation_with_any_values(caller: str, received: str, by: str, note: str
                                      ) -> None:
    assert_ends_cleanly(["revocations", "add", "--caller", caller, "--via", "phone",
                         "--received-at", received, "--by", by, "--note", note])


def test_a_good_revocation_reaches_for_the_database_and_says_it_cannot() -> None:
    code, _, err = run_cli(["revocations", "add", "--caller", "040404040", "--via", "email",
                            "--received-at", (datetime.now(UTC) - timedelta(hours=1)
                                              ).isoformat()])
    assert code == 1
    assert err.startswith("ivr: cannot reach PostgreSQL at 127.0.0.1:1/x")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "value"), [
    ("IVR_LINES", "junk"), ("IVR_FASTAGI__ASTERISK_ADDRESSES", "10.0.0.8")])
def test_an_environment_list_that_is_not_json_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    code, _, err = run_cli(["settings", "show"])
    assert code == 2
    assert err.startswith("configuration error:\n"), err
    assert name.removeprefix("IVR_").split("__")[0].lower() in err
    assert "JSON" in err and "Traceback" not in err
