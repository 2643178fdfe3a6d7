"""Notes the dialplan leaves of calls it took while no service instance ran (rule 4): read
strictly, and a note that is not what the dialplan writes is moved aside, never guessed at."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.calls import notes
from ivr.calls.unattended import NoteError, parse_note, read_notes

NOTE = ("v=1&channel=node2-1795404928.7&entered=1795404928.120&ended=1795404961.905"
        "&dialled=040404040&caller=%2B38631000925&agent=&queue_status=TIMEOUT")


def test_a_note_as_the_dialplan_writes_it() -> None:
    call = parse_note(NOTE + "\n")
    assert call.channel_id == "node2-1795404928.7"
    assert call.entered_at == datetime.fromtimestamp(1795404928.12, UTC)
    assert (call.ended_at - call.entered_at).total_seconds() == pytest.approx(33.785)
    assert (call.dialled, call.caller, call.agent) == ("040404040", "+38631000925", None)
    assert call.missed_reason == "timeout"


def test_an_agent_who_answered_and_a_caller_who_left() -> None:
    call = parse_note(NOTE.replace("agent=", "agent=PJSIP%2Fagent1")
                      .replace("queue_status=TIMEOUT", "queue_status="))
    assert call.agent == "PJSIP/agent1" and call.missed_reason == "abandoned"


def test_hostile_caller_ids_are_kept_as_text() -> None:
    call = parse_note(NOTE.replace("caller=%2B38631000925",
                                   "caller=..%2F..%2Fetc%2Fpasswd%27%3B%20DROP%0A"))
    assert call.caller == "../../etc/passwd'; DROP\n"  # describe_caller makes it printable


@pytest.mark.parametrize("text", [
    "", NOTE + "\n" + NOTE, NOTE.replace("v=1", "v=2"), NOTE + "&extra=1",
    NOTE.replace("&agent=", "&channel=x&agent="), NOTE.replace("&queue_status=TIMEOUT", ""),
    NOTE.replace("channel=node2-1795404928.7", "channel=..%2Fx"),
    NOTE.replace("channel=node2-1795404928.7", "channel="),
    NOTE.replace("entered=1795404928.120", "entered=soon"),
    NOTE.replace("entered=1795404928.120", "entered=nan"),
    NOTE.replace("ended=1795404961.905", "ended=1e300"),
    NOTE.replace("ended=1795404961.905", "ended=1795404900"),
    NOTE.replace("queue_status=TIMEOUT", "queue_status=%0Arm"),
    "not a note at all", "&&&",
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_note(text)


def test_unreadable_notes_are_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "a.call").write_text(NOTE)
    (tmp_path / "b.call").write_text("v=9")
    (tmp_path / "c.call").write_bytes(b"x" * 5000)
    (tmp_path / "other.txt").write_text("not a note")
    assert read_notes(tmp_path) == []  # just written: Asterisk may still be at it
    notes = read_notes(tmp_path, now=time.time() + 60)
    assert [(p.name, c.channel_id) for p, c in notes] == [("a.call", "node2-1795404928.7")]
    assert sorted(p.name for p in (tmp_path / "rejected").iterdir()) == ["b.call", "c.call"]
    assert (tmp_path / "a.call").exists() and (tmp_path / "other.txt").exists()


async def test_a_note_that_cannot_be_recorded_stays_and_the_log_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database refuses one note (here as PostgreSQL refuses a call it does not have
    yet, its decision still in the outage journal): the note stays for the next sweep, the
    others are recorded, and the log line names the error and the journal."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.call").write_text(NOTE.replace(".7&", f".{ord(name)}&"))
        old = time.time() - 60
        os.utime(tmp_path / f"{name}.call", (old, old))
    recorded: list[str] = []

    async def record(call: object) -> None:
        channel = getattr(call, "channel_id", "")
        if channel.endswith(".97"):
            raise RuntimeError('insert or update on table "decisions" violates foreign key '
                               'constraint\nDETAIL: Key (call_id) is not present')
        recorded.append(channel)

    assert await notes.collect(tmp_path, ".call", parse_note, record) == 1
    assert recorded == ["node2-1795404928.98"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.call"]
    line = next(r.getMessage() for r in caplog.records if "a note" in r.getMessage())
    assert "DETAIL" not in line  # the first line of the error; the traceback has the rest
    assert "violates foreign key constraint" in line and "outage journal" in line


async def test_a_note_that_keeps_failing_is_tried_less_and_less_often(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A note PostgreSQL keeps refusing (its call is not there) is tried again after 1 s,
    then twice as long each time up to the most, not at every sweep; the others are
    recorded as they come. Once it can be recorded, it is, and it is forgotten."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.call").write_text(NOTE.replace(".7&", f".{ord(name)}&"))
        old = time.time() - 60
        os.utime(tmp_path / f"{name}.call", (old, old))
    clock = [100.0]
    retries = notes.Retries(first=1.0, most=4.0, clock=lambda: clock[0])
    tried: list[str] = []
    refusing = True

    async def record(call: object) -> None:
        channel = getattr(call, "channel_id", "")
        tried.append(channel)
        if channel.endswith(".97") and refusing:
            raise RuntimeError("violates foreign key constraint")

    async def sweep_at(when: float) -> int:
        clock[0] = when
        return await notes.collect(tmp_path, ".call", parse_note, record, retries=retries)

    assert await sweep_at(100.0) == 1  # b recorded, a refused: again in 1 s
    assert "tried again in 1 s" in caplog.text
    tries = []
    for when in (100.5, 101.0, 102.0, 103.0, 104.0, 106.0, 107.0, 110.0, 114.0):
        before = len(tried)
        assert await sweep_at(when) == 0
        tries.append(len(tried) - before)
    # due at 101 (then wait 2), 103 (then 4), 107 (then 4, the most), 111: not at 110
    assert tries == [0, 1, 0, 1, 0, 0, 1, 0, 1]
    refusing = False
    assert await sweep_at(118.0) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    retries.keep_only([])
    assert retries.due(tmp_path / "a.call")
