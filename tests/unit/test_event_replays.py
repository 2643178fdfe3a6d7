"""Real calls replayed into the inbound shell, then mangled (issue 7, point 4).

The ARI frames of calls recorded on the test PBX (``transcripts/*.jsonl``, written by
``python -m testpbx transcripts``) go through the parser and the call router into
:class:`InboundCallRunner`, whose ARI, AMI and store are stand-ins writing one ordered log.
Whatever Asterisk does to the frames (each one twice, two swapped, a PlaybackFinished before
its PlaybackStarted, ChannelDestroyed before the hang-up request, a StasisStart replayed
after the call), POLICY.md holds: the decision is stored at most once; the recording starts
at most once and only after a stored decision that allows it (rules 1-3), never for a
refusal or no consent; the call is closed once and handed to its queue at most once; and
the call's task ends. Random event sequences (Hypothesis) are held to the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.asterisk.ami import AgentConnected, AmiError
from ivr.asterisk.ari_events import (
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    PlaybackContinuing,
    PlaybackFinished,
    PlaybackStarted,
    StasisStart,
    channel_of,
    parse_event,
)
from ivr.calls.inbound import CallDeps, InboundCallRunner
from ivr.calls.router import CallItem, CallRouter, ChannelVanished
from ivr.flow.commands import Decision, Receipt
from ivr.notices.catalogue import BuiltSegment, Manifest, Notice
from ivr.settings import Settings
from ivr.store.journal import DecisionEntry
from ivr.store.receipts import ClosedCall, OpenedCall

TRANSCRIPTS = Path(__file__).parent / "transcripts"
SOUND_PREFIX = "ivr-short"
Log = list[tuple[str, Any]]


# stand-ins ---------------------------------------------------------------------------------
class Store:
    """The call records and callbacks. ``open`` is True once per channel: a StasisStart
    replayed after the call was stored is refused, as the unique channel id does."""

    def __init__(self, log: Log, decisions_fail: bool = False) -> None:
        self.log = log
        self.decisions_fail = decisions_fail
        self.channels: set[str] = set()

    async def open(self, call: OpenedCall, direction: str = "inbound") -> bool:
        self.log.append(("open", call.channel_id))
        first = call.channel_id not in self.channels
        self.channels.add(call.channel_id)
        return first

    async def commit_decision(self, entry: DecisionEntry) -> bool:
        if self.decisions_fail:
            self.log.append(("decision_failed", entry.receipt))
            raise OSError("database unreachable")
        self.log.append(("store_decision", entry.receipt))
        return True

    async def recording_started(self, *args: Any) -> None:
        self.log.append(("recording_started", args))

    async def close(self, call_id: Any, closed: ClosedCall, recording_file: str | None,
                    missed: Any = None, started: Any = None) -> None:
        if started is not None:
            self.log.append(("recording_started", started))
        self.log.append(("close", closed))
        if missed is not None:
            self.log.append(("record_missed", missed))

    async def record_missed(self, missed: Any) -> None:
        self.log.append(("record_missed", missed))


class Ari:
    def __init__(self, log: Log) -> None:
        self.log = log

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def request(*args: Any) -> None:
            self.log.append((name, args))
        return request

    def playbacks(self) -> list[str]:
        return [args[2] for name, args in self.log if name == "play"]


class Ami:
    def __init__(self, log: Log, down: bool = False) -> None:
        self.log = log
        self.down = down

    async def mix_monitor(self, channel_id: str, path: PurePosixPath, name: str = "") -> str:
        self.log.append(("mix_monitor", path))
        if self.down:
            raise AmiError("AMI is not connected")
        return "0xMIX"

    async def queue_load(self, queue: str) -> tuple[int, int]:
        self.log.append(("queue_load", queue))
        return 0, 1


def assert_policy_kept(log: Log) -> None:
    names = [name for name, _ in log]
    stored = [i for i, name in enumerate(names) if name == "store_decision"]
    recordings = [i for i, name in enumerate(names) if name == "mix_monitor"]
    assert len(stored) <= 1, names
    assert len(recordings) <= 1, names
    if recordings:
        assert stored and stored[0] < recordings[0], names  # rule 1: decision first
        receipt: Receipt = log[stored[0]][1]
        assert receipt.record and receipt.decision in (Decision.CONSENT, Decision.LEGAL_BASIS)
    assert names.count("close") == 1, names
    assert names.count("continue_in_dialplan") <= 1, names


# the recorded calls ------------------------------------------------------------------------
def recorded_calls() -> dict[str, list[str]]:
    """Each recorded call's frames, named by transcript (and by order where a transcript
    holds more than one call)."""
    calls: dict[str, list[str]] = {}
    for path in sorted(TRANSCRIPTS.glob("*.jsonl")):
        by_channel: dict[str, list[str]] = {}
        for frame in path.read_text(encoding="utf-8").splitlines():
            channel = channel_of(parse_event(frame)) if frame else None
            if channel is not None:
                by_channel.setdefault(channel, []).append(frame)
        for n, frames in enumerate(by_channel.values()):
            calls[path.stem if len(by_channel) == 1 else f"{path.stem}-{n}"] = frames
    return calls


CALLS = recorded_calls()
# What each recorded call must come to: decision, recorded, handed to the queue.
OUTCOMES = {
    "ari_events-0": (Decision.LEGAL_BASIS, True, True),  # sales notice played to its end
    "ari_events-1": (Decision.NO_CONSENT, False, False),  # hung up during the notice
    "service-consent": (Decision.CONSENT, True, True),  # 1 during the question (RFC 4733)
    "service-refusal": (Decision.REFUSAL, False, True),
    "service-hangup-during-notice": (Decision.NO_CONSENT, False, False),
}


def playback_field(frame: str, key: str) -> str:
    value = json.loads(frame).get("playback", {}).get(key, "")
    return value if isinstance(value, str) else ""


def measured_durations() -> dict[str, int]:
    """How long each prompt played on the PBX (longest from its PlaybackStarted to the
    PlaybackContinuing or PlaybackFinished that names it)."""
    started: dict[str, datetime] = {}
    durations: dict[str, int] = {}
    for frames in CALLS.values():
        for event in map(parse_event, frames):
            if isinstance(event, PlaybackStarted) and event.timestamp:
                started[event.playback_id] = event.timestamp
            elif isinstance(event, (PlaybackContinuing, PlaybackFinished)) and \
                    event.timestamp and event.playback_id in started:
                segment = event.media_uri.rsplit("/", 1)[-1]
                ms = int((event.timestamp - started[event.playback_id]).total_seconds() * 1000)
                durations[segment] = max(durations.get(segment, 0), ms)
    return durations


def manifest(durations: dict[str, int]) -> Manifest:
    def segment(segment_id: str, question: bool = False) -> BuiltSegment:
        return BuiltSegment(id=segment_id, version=1, text="x", question=question,
                            file=f"{segment_id}.wav", sha256="a" * 64,
                            duration_ms=durations.get(segment_id, 1000))

    return Manifest(
        segments=[segment("sales-notice"), segment("service-information"),
                  segment("service-question", question=True), segment("service-closing")],
        notices={"sales": Notice(segments=["sales-notice"]),
                 "service": Notice(segments=["service-information", "service-question",
                                             "service-closing"])})


MANIFEST = manifest(measured_durations())


def call_settings() -> Settings:
    """The transcripts' sounds (testpbx/transcripts.py), so that the media their playback
    events name are the ones the runner asks for."""
    return Settings(mode="test", consent={"answer_timeout": 0.01, "question_repeats": 1},
                    prompts={"sound_prefix": SOUND_PREFIX})


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


# replaying ---------------------------------------------------------------------------------
def playback_order(frames: Sequence[str]) -> dict[str, int]:
    """Asterisk's playback ids in the order the recorded application issued them: the
    replay gives the n-th the id the runner chose for its n-th playback."""
    order: dict[str, int] = {}
    for frame in frames:
        playback = playback_field(frame, "id")
        if playback and playback not in order:
            order[playback] = len(order) + 1
    return order


class Replay:
    """One call's frames through the router into runners, with the stand-ins."""

    def __init__(self, order: dict[str, int]) -> None:
        self.log: Log = []
        self.store = Store(self.log)
        self.deps = CallDeps(call_settings(), Ari(self.log), Ami(self.log),  # type: ignore[arg-type]
                             self.store, MANIFEST, self.store)  # type: ignore[arg-type]
        self.order = order
        self.runners: list[InboundCallRunner] = []
        self.errors: list[BaseException] = []

    async def handle(self, start: StasisStart, items: asyncio.Queue[CallItem]) -> None:
        runner = InboundCallRunner(self.deps, start, items)
        self.runners.append(runner)
        try:
            await runner.run()
        except Exception as exc:
            self.errors.append(exc)
            raise

    def as_runner_sees_it(self, frame: str) -> CallItem:
        event = parse_event(frame)
        if isinstance(event, (PlaybackStarted, PlaybackContinuing, PlaybackFinished)) \
                and self.runners:
            n = self.order[event.playback_id]
            return dataclasses.replace(event, playback_id=f"{self.runners[-1].call_uuid}-{n}")
        return event

    async def run(self, frames: Sequence[str], after: Sequence[str] = ()) -> Log:
        channel = channel_of(parse_event(frames[0]))
        assert channel is not None
        async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
            router = CallRouter(tasks, self.handle)
            for frame in frames:
                router.dispatch(self.as_runner_sees_it(frame))
                await settle()
            if not any(isinstance(parse_event(f), ChannelDestroyed) for f in frames):
                router.dispatch(ChannelVanished(channel))  # recorded before its end
            while router.has(channel):
                await asyncio.sleep(0.001)
            for frame in after:
                router.dispatch(self.as_runner_sees_it(frame))
                await settle()
        assert self.errors == []
        return self.log


async def replay(frames: Sequence[str], original: Sequence[str] | None = None,
                 after: Sequence[str] = ()) -> Log:
    log = await Replay(playback_order(original or frames)).run(frames, after)
    assert_policy_kept(log)
    return log


def outcome(log: Log) -> tuple[Decision | None, bool, bool]:
    stored = [receipt for name, receipt in log if name == "store_decision"]
    names = [name for name, _ in log]
    return (stored[0].decision if stored else None, "mix_monitor" in names,
            "continue_in_dialplan" in names)


def frame_type(frame: str) -> str:
    return str(json.loads(frame)["type"])


def finished_before_started(frames: Sequence[str]) -> list[str]:
    result = list(frames)
    for frame in frames:
        if frame_type(frame) == "PlaybackFinished":
            result.remove(frame)
            started = next(i for i, f in enumerate(result) if frame_type(f) == "PlaybackStarted"
                           and playback_field(f, "id") == playback_field(frame, "id"))
            result.insert(started, frame)
    return result


def destroyed_before_hangup(frames: Sequence[str]) -> list[str]:
    destroyed = [f for f in frames if frame_type(f) == "ChannelDestroyed"]
    result = [f for f in frames if f not in destroyed]
    hangups = [i for i, f in enumerate(result) if frame_type(f) == "ChannelHangupRequest"]
    at = hangups[0] if hangups else len(result)
    return result[:at] + destroyed + result[at:]


# the tests ---------------------------------------------------------------------------------
def test_the_recorded_calls_are_all_there() -> None:
    assert set(CALLS) == set(OUTCOMES)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_a_recorded_call_comes_to_its_decision(name: str) -> None:
    """Rules 1-3 on the frames as Asterisk sent them."""
    log = await replay(CALLS[name])
    assert outcome(log) == OUTCOMES[name]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_every_frame_twice_changes_nothing(name: str) -> None:
    frames = CALLS[name]
    log = await replay([f for frame in frames for f in (frame, frame)], frames)
    assert outcome(log) == OUTCOMES[name]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_any_two_adjacent_frames_swapped(name: str) -> None:
    frames = CALLS[name]
    for i in range(len(frames) - 1):
        swapped = list(frames)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        await replay(swapped, frames)


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_a_playback_finished_before_it_started_is_not_heard(name: str) -> None:
    """Rule 3: a segment whose start was not reported cannot prove the caller heard it,
    so nothing is recorded."""
    frames = CALLS[name]
    log = await replay(finished_before_started(frames), frames)
    if any(frame_type(f) == "PlaybackFinished" for f in frames):
        assert "mix_monitor" not in [n for n, _ in log]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_channel_destroyed_before_the_hangup_request(name: str) -> None:
    frames = CALLS[name]
    log = await replay(destroyed_before_hangup(frames), frames)
    decision, recorded, _ = outcome(log)
    assert (decision, recorded) == OUTCOMES[name][:2]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_a_stasis_start_replayed_after_the_call_is_not_a_second_call(name: str) -> None:
    """Asterisk may send a channel's StasisStart again: the router, which remembers the
    channels whose calls ended, starts nothing for it, so nothing is opened, answered,
    played, decided or recorded again."""
    frames = CALLS[name]
    log = await replay(frames, after=[frames[0]])
    names = [n for n, _ in log]
    assert names.count("open") == 1
    assert names.count("answer") == 1
    assert outcome(log) == OUTCOMES[name]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
async def test_a_channel_the_store_holds_already_is_neither_decided_nor_recorded(
        name: str) -> None:
    """The call's opening is written while the call goes on. If the store refuses it (its
    channel is stored already: a StasisStart sent again that the router did not know),
    nothing of the call is stored or recorded; a caller who is handed on still is."""
    frames = CALLS[name]
    run = Replay(playback_order(frames))
    channel = channel_of(parse_event(frames[0]))
    assert channel is not None
    run.store.channels.add(channel)
    log = await run.run(frames)
    names = [n for n, _ in log]
    assert names.count("open") == 1
    assert not {"store_decision", "mix_monitor", "close", "record_missed"} & set(names)
    assert ("continue_in_dialplan" in names) == OUTCOMES[name][2]


# random event sequences --------------------------------------------------------------------
CHANNEL = Channel(id="9.1", name="PJSIP/trunk-9", state="Ring", caller_number="031123456",
                  caller_name="", context="from-trunk", exten="040404040", linkedid="9.1",
                  app_name="Stasis", app_data="ivr")
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HEARD = st.tuples(st.just("heard"), st.just("current"))  # a whole segment played
STEP = st.one_of(
    st.tuples(st.just("digit"), st.sampled_from(list("0123456789*#"))),
    HEARD,
    st.tuples(st.sampled_from(["started", "finished", "failed"]),
              st.sampled_from(["current", "previous", "foreign"])),
    st.tuples(st.just("gone"), st.sampled_from(["hangup", "destroyed", "vanished"])),
    st.tuples(st.just("wait"), st.sampled_from(["timer"])),
    st.tuples(st.just("agent"), st.just("agent1")),
)
# A call that mostly goes as calls go (segments heard, 1 or 2 pressed), then anything.
STEPS = st.builds(lambda usual, anything: usual + anything,
                  st.lists(HEARD | st.tuples(st.just("digit"), st.sampled_from("12")),
                           min_size=2, max_size=7),
                  st.lists(STEP, max_size=14))


def sequence_items(kind: str, arg: str, at: datetime, played: list[str]) -> list[CallItem]:
    """One random step as the router would hand it to the call; none: just wait."""
    if kind == "heard":
        return [*sequence_items("started", arg, at, played),
                *sequence_items("finished", arg, at + timedelta(seconds=30), played)]
    item = sequence_item(kind, arg, at, played)
    return [] if item is None else [item]


def sequence_item(kind: str, arg: str, at: datetime, played: list[str]) -> CallItem | None:
    if kind == "digit":
        return ChannelDtmfReceived("ChannelDtmfReceived", at, "ivr", CHANNEL, arg, 100)
    if kind in ("started", "finished", "failed"):
        ids = {"current": played[-1:], "previous": played[-2:-1], "foreign": []}[arg]
        playback = ids[0] if ids else "foreign-playback"
        if kind == "started":
            return PlaybackStarted("PlaybackStarted", at, "ivr", playback, "", "channel:9.1")
        return PlaybackFinished("PlaybackFinished", at, "ivr", playback, "", "channel:9.1",
                                "done" if kind == "finished" else "failed")
    if kind == "gone":
        gone: dict[str, CallItem] = {
            "hangup": ChannelHangupRequest("ChannelHangupRequest", at, "ivr", CHANNEL, 16),
            "destroyed": ChannelDestroyed("ChannelDestroyed", at, "ivr", CHANNEL, 16, ""),
            "vanished": ChannelVanished(CHANNEL.id)}
        return gone[arg]
    if kind == "agent":
        return AgentConnected(CHANNEL.id, arg)
    return None


async def random_call(exten: str, steps: list[tuple[str, str]], decisions_fail: bool,
                      ami_down: bool) -> Log:
    log: Log = []
    store, ari = Store(log, decisions_fail), Ari(log)
    deps = CallDeps(call_settings(), ari, Ami(log, ami_down), store,  # type: ignore[arg-type]
                    MANIFEST, store)  # type: ignore[arg-type]
    items: asyncio.Queue[CallItem] = asyncio.Queue()
    start = StasisStart("StasisStart", T0, "ivr", dataclasses.replace(CHANNEL, exten=exten),
                        (), None)
    task = asyncio.create_task(InboundCallRunner(deps, start, items).run())
    await settle()
    gone = False
    for n, (kind, arg) in enumerate(steps):
        at = T0 + timedelta(minutes=n + 1)
        step_items = sequence_items(kind, arg, at, ari.playbacks())
        if not step_items:
            await asyncio.sleep(0.02)  # the answer timeout (0.01 s) fires
        for item in step_items:
            items.put_nowait(item)
            await settle()
        gone = gone or kind == "gone"
        if gone:
            break
    if not gone:
        items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0 + timedelta(hours=1),
                                              "ivr", CHANNEL, 16))
    async with asyncio.timeout(2):  # the channel is gone: the call must end
        await task
    return log


@settings(max_examples=150, deadline=None)
@given(exten=st.sampled_from(["040404040", "040404045"]), steps=STEPS,
       decisions_fail=st.booleans(), ami_down=st.booleans())
def test_random_event_sequences_keep_the_policy(exten: str, steps: list[tuple[str, str]],
                                                decisions_fail: bool, ami_down: bool) -> None:
    log = asyncio.run(random_call(exten, steps, decisions_fail, ami_down))
    assert_policy_kept(log)
    if decisions_fail:
        assert "mix_monitor" not in [name for name, _ in log]  # no stored decision
