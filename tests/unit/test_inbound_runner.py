"""The shell around the call flow, with stand-ins for ARI, AMI and the store: each command
is carried out once, in order, and events the flow does not use change nothing.
(The real thing is proved end to end in tests/e2e; this pins the loop's bookkeeping.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ivr.asterisk.ami import AgentConnected, AmiError, AmiNoReply
from ivr.asterisk.ari import AriError, ChannelGone
from ivr.asterisk.ari_events import (
    Channel,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelUserevent,
    OtherEvent,
    PlaybackContinuing,
    PlaybackFinished,
    PlaybackStarted,
    StasisEnd,
    StasisStart,
)
from ivr.calls.inbound import (
    FOUND_ON_DISK,
    QUEUE_EVENT,
    RESCUED,
    CallDeps,
    InboundCallRunner,
)
from ivr.calls.router import CallItem, ChannelVanished
from ivr.flow.inbound import Segment, new_inbound_call
from ivr.metrics.exposition import exposition
from ivr.notices.catalogue import BuiltSegment, Manifest, Notice
from ivr.policy.lines import LineKind
from ivr.settings import Settings
from ivr.store.callbacks import Missed
from ivr.store.receipts import StartedRecording

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
CHANNEL = Channel(id="1.1", name="PJSIP/trunk-1", state="Ring", caller_number="031123456",
                  caller_name="", context="from-trunk", exten="040404045", linkedid="1.1",
                  app_name="Stasis", app_data="ivr")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        async def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            if name == "mix_monitor":
                return "0xMIX"
            if name == "open":
                return True
            if name == "queue_load":
                return (0, 1)
            return None
        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def manifest() -> Manifest:
    def seg(segment_id: str, question: bool = False) -> BuiltSegment:
        return BuiltSegment(id=segment_id, version=1, text="x", question=question,
                            file=f"{segment_id}.wav", sha256="a" * 64, duration_ms=1000)

    service = ["service-information", "service-question", "service-closing"]
    return Manifest(segments=[seg("sales-notice"), seg(service[0]),
                              seg(service[1], question=True), seg(service[2])],
                    notices={"sales": Notice(segments=["sales-notice"]),
                             "service": Notice(segments=service)})


def runner(settings: Settings | None = None) -> tuple[InboundCallRunner, Recorder, Recorder,
                                                     Recorder, asyncio.Queue[CallItem]]:
    ari, ami, records = Recorder(), Recorder(), Recorder()
    settings = settings or Settings(mode="test")
    deps = CallDeps(settings, ari, ami, records, manifest(), records)  # type: ignore[arg-type]
    items: asyncio.Queue[CallItem] = asyncio.Queue()
    start = StasisStart("StasisStart", T0, "ivr", CHANNEL, (), None)
    return InboundCallRunner(deps, start, items), ari, ami, records, items


async def wait_for(recorder: Recorder, name: str) -> None:
    async with asyncio.timeout(5):
        while name not in recorder.names():
            await asyncio.sleep(0.01)


async def notice_heard(ari: Recorder, items: asyncio.Queue[CallItem]) -> None:
    """The sales notice plays from start to end."""
    await wait_for(ari, "play")
    playback_id = ari.calls[-1][1][2]
    items.put_nowait(PlaybackStarted("PlaybackStarted", T0, "ivr", playback_id, "",
                                     "channel:1.1"))
    items.put_nowait(PlaybackFinished("PlaybackFinished", T0 + timedelta(seconds=1), "ivr",
                                      playback_id, "", "channel:1.1", "done"))


SERVICE_CHANNEL = Channel(id="1.1", name="PJSIP/trunk-1", state="Ring",
                          caller_number="031123456", caller_name="", context="from-trunk",
                          exten="040404040", linkedid="1.1", app_name="Stasis", app_data="ivr")
SERVICE_MEDIA = ("sound:ivr/service-information", "sound:ivr/service-question",
                 "sound:ivr/service-closing")


def service_runner() -> tuple[InboundCallRunner, Recorder, Recorder, Recorder,
                              asyncio.Queue[CallItem]]:
    call, ari, ami, records, items = runner()
    call.start = StasisStart("StasisStart", T0, "ivr", SERVICE_CHANNEL, (), None)
    return call, ari, ami, records, items


def playback(kind: type, playback_id: str, media: str, seconds: float) -> CallItem:
    at = T0 + timedelta(seconds=seconds)
    if kind is PlaybackFinished:
        return PlaybackFinished("PlaybackFinished", at, "ivr", playback_id, media,
                                "channel:1.1", "done")
    return kind(kind.__name__, at, "ivr", playback_id, media, "channel:1.1")  # type: ignore[no-any-return]


async def test_the_service_notice_is_one_playback_its_segments_timed_by_asterisk() -> None:
    """The notice's three segments go to Asterisk in one request (a list of media); the
    receipt's segments are timed from the events Asterisk sends for each, and a 1 during
    the question is consent at the notice's end."""
    call, ari, ami, records, items = service_runner()
    task = asyncio.create_task(call.run())
    await wait_for(ari, "play")
    _channel, media, playback_id = ari.calls[-1][1]
    assert media == ",".join(SERVICE_MEDIA)
    info, question, closing = SERVICE_MEDIA
    for item in (playback(PlaybackStarted, playback_id, info, 0),
                 playback(PlaybackContinuing, playback_id, info, 1),
                 playback(PlaybackStarted, playback_id, question, 1),
                 playback(PlaybackStarted, playback_id, question, 1),  # repeated: nothing
                 ChannelDtmfReceived("ChannelDtmfReceived", T0 + timedelta(seconds=1.5),
                                     "ivr", SERVICE_CHANNEL, "1", 100),
                 playback(PlaybackContinuing, playback_id, question, 2),
                 playback(PlaybackContinuing, playback_id, question, 2),  # repeated: nothing
                 playback(PlaybackStarted, playback_id, closing, 2),
                 playback(PlaybackFinished, playback_id, closing, 3)):
        items.put_nowait(item)
    await wait_for(ari, "continue_in_dialplan")
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", SERVICE_CHANNEL,
                                          16))
    await asyncio.wait_for(task, 5)
    assert ari.names().count("play") == 1 and "stop_playback" not in ari.names()
    receipt = records.calls[1][1][0].receipt
    assert receipt.decision.value == "consent" and receipt.record
    assert [(p.segment_id, p.started_at, p.ended_at) for p in receipt.played] == [
        (s, T0 + timedelta(seconds=n), T0 + timedelta(seconds=n + 1))
        for n, s in enumerate(["service-information", "service-question", "service-closing"])]
    assert ami.names()[0] == "mix_monitor"


async def test_a_segment_cut_short_in_the_list_stops_the_rest_of_the_notice() -> None:
    """A segment that ends long before its audio's length (Asterisk found no file, say)
    was not heard: what is left of the notice is stopped (the list would go on, holding
    the caller here), and the caller goes on unrecorded with no consent (rule 1)."""
    call, ari, ami, records, items = service_runner()
    task = asyncio.create_task(call.run())
    await wait_for(ari, "play")
    playback_id = ari.calls[-1][1][2]
    items.put_nowait(playback(PlaybackStarted, playback_id, SERVICE_MEDIA[0], 0))
    items.put_nowait(playback(PlaybackContinuing, playback_id, SERVICE_MEDIA[0], 0.05))
    await wait_for(ari, "continue_in_dialplan")
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", SERVICE_CHANNEL,
                                          16))
    await asyncio.wait_for(task, 5)
    assert ari.names()[:3] == ["answer", "play", "stop_playback"]
    assert ari.calls[2][1] == (playback_id,)
    assert records.calls[1][1][0].receipt.decision.value == "no_consent"
    assert "mix_monitor" not in ami.names()


async def test_a_playback_already_over_when_stopped_changes_nothing() -> None:
    """Stopping a playback that has ended (404) is no error: the call goes on."""
    call, ari, ami, records, items = service_runner()
    stop = ari.__getattr__("stop_playback")

    async def stop_playback(*args: Any) -> None:
        await stop(*args)
        raise AriError("ARI DELETE /playbacks/x: 404 Playback not found", 404)

    ari.__dict__["stop_playback"] = stop_playback
    task = asyncio.create_task(call.run())
    await wait_for(ari, "play")
    playback_id = ari.calls[-1][1][2]
    items.put_nowait(playback(PlaybackStarted, playback_id, SERVICE_MEDIA[0], 0))
    items.put_nowait(PlaybackFinished("PlaybackFinished", T0, "ivr", playback_id,
                                      SERVICE_MEDIA[0], "channel:1.1", "failed"))
    await wait_for(ari, "continue_in_dialplan")
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", SERVICE_CHANNEL,
                                          16))
    await asyncio.wait_for(task, 5)
    assert "stop_playback" in ari.names()
    assert records.calls[1][1][0].receipt.decision.value == "no_consent"
    assert "mix_monitor" not in ami.names()


async def test_a_sales_call_runs_each_command_once_in_order() -> None:
    call, ari, ami, records, items = runner()
    task = asyncio.create_task(call.run())
    await notice_heard(ari, items)
    await wait_for(ari, "continue_in_dialplan")
    for ignored in (StasisEnd("StasisEnd", T0, "ivr", CHANNEL),
                    OtherEvent("ChannelVarset", T0, "ivr"),
                    OtherEvent("ChannelDialplan", T0, "ivr")):
        items.put_nowait(ignored)
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", CHANNEL, 16))
    await asyncio.wait_for(task, 5)

    assert ari.names() == ["answer", "play", "set_variable", "set_variable",
                           "subscribe_channel", "continue_in_dialplan"]
    assert ami.names() == ["mix_monitor", "queue_load"]
    assert ami.calls[0][1] == ("1.1", PurePosixPath(
        f"/var/spool/asterisk/ivr-recordings/{call.call_uuid}.wav"), "PJSIP/trunk-1")
    # nobody answered (rule 4): the missed call and the recording's start (MixMonitor's id)
    # are written with the close, in one write
    assert records.names() == ["open", "commit_decision", "close"]
    assert isinstance(missed := records.calls[-1][1][3], Missed)
    started = records.calls[-1][1][4]
    assert isinstance(started, StartedRecording)
    assert (started.file_name, started.mixmonitor_id) == (f"{call.call_uuid}.wav", "0xMIX")
    assert missed.call_id == call.call_uuid and missed.reason == "abandoned"


async def test_a_call_whose_decision_was_stored_before_is_not_recorded() -> None:
    """The store finds a decision of this call already (``False``): this one is not what
    is stored, so it allows nothing; the caller still reaches the queue (rule 1)."""
    call, ari, ami, records, items = runner()

    async def decided_before(*args: Any) -> bool:
        records.calls.append(("commit_decision", args))
        return False

    records.__dict__["commit_decision"] = decided_before
    task = asyncio.create_task(call.run())
    await notice_heard(ari, items)
    await wait_for(ari, "continue_in_dialplan")
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", CHANNEL, 16))
    await asyncio.wait_for(task, 5)
    assert ami.names() == ["queue_load"]
    assert ("set_variable", ("1.1", "IVR_RECORDED", "no")) in ari.calls
    assert records.names() == ["open", "commit_decision", "close"]
    assert records.calls[-1][1][2] is None and records.calls[-1][1][4] is None


async def test_a_sales_call_is_timed_from_the_notice_end_to_its_recording() -> None:
    call, ari, _ami, _records, items = runner()
    task = asyncio.create_task(call.run())
    await notice_heard(ari, items)
    await wait_for(ari, "continue_in_dialplan")
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", CHANNEL, 16))
    await asyncio.wait_for(task, 5)

    text = exposition(call.deps.metrics, None).decode()
    assert 'ivr_step_seconds_count{step="answer"} 1.0' in text
    assert 'ivr_step_seconds_count{step="notice_end_to_recording"} 1.0' in text
    assert 'ivr_step_seconds_count{step="digit_to_recording"} 0.0' in text


@pytest.mark.parametrize("late", [False, True])
async def test_a_channel_gone_while_disconnected_closes_the_call(late: bool) -> None:
    """A hang-up lost with the events connection: after the reconnect the call is told its
    channel vanished, and it closes instead of waiting forever."""
    call, ari, _, records, items = runner()
    task = asyncio.create_task(call.run())
    await wait_for(ari, "play")
    if late:
        items.put_nowait(OtherEvent("ChannelVarset", T0, "ivr"))
    items.put_nowait(ChannelVanished("1.1"))
    await asyncio.wait_for(task, 5)
    assert records.names() == ["open", "close"]
    assert isinstance(records.calls[-1][1][3], Missed)
    assert ari.names().count("play") == 1


async def test_a_playback_that_never_finishes_counts_as_not_heard(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Lost playback events must not leave a caller in the application: after the audio's
    length and a grace period the notice counts as not heard (rule 1: nothing recorded)
    and the call goes on to its queue."""
    import ivr.calls.inbound as shell

    monkeypatch.setattr(shell, "PLAYBACK_GRACE_S", 0.05)
    call, ari, ami, records, items = runner()
    task = asyncio.create_task(call.run())
    await wait_for(ari, "continue_in_dialplan")  # audio 1 s + grace, no events at all
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", CHANNEL, 16))
    await asyncio.wait_for(task, 5)
    assert ami.names() == ["queue_load"]
    assert "commit_decision" not in records.names()


async def test_an_unexpected_ari_error_hands_the_caller_to_the_queue_and_closes() -> None:
    """ARI failing mid-call with an error the flow does not expect (a dropped connection,
    once): the caller is not left in the application; the call is closed, recorded only
    as its stored decision allowed, and counts as missed."""
    call, ari, ami, records, items = runner()
    failing = ari.__getattr__("set_variable")

    async def set_variable(*args: Any) -> None:
        await failing(*args)
        raise AriError("ARI POST /channels/1.1/variable: IncompleteReadError")

    ari.set_variable = set_variable  # type: ignore[attr-defined]
    task = asyncio.create_task(call.run())
    await notice_heard(ari, items)
    await asyncio.wait_for(task, 5)
    assert ari.names()[-1] == "continue_in_dialplan"
    assert ari.calls[-1][1] == ("1.1", "ivr-queues", "sales")
    assert records.names() == ["open", "commit_decision", "close"]
    assert isinstance(records.calls[-1][1][3], Missed)
    assert ami.names() == ["mix_monitor", "queue_load"]


@pytest.mark.parametrize("kind", list(LineKind), ids=str)
async def test_a_call_whose_answer_failed_is_decided_as_a_hang_up_would_be(
        kind: LineKind) -> None:
    """ARI never answered the answer (Asterisk past its limit: the client's timeout): the
    caller goes on to the queue, never told, so nothing is recorded; a service caller
    gets no consent stored, as at a hang-up (rule 2), so that no call of a service line
    is left without its receipt. A sales call has no decision without its notice."""
    call, ari, ami, records, _items = service_runner() if kind is LineKind.SERVICE \
        else runner()
    answer = ari.__getattr__("answer")

    async def timed_out(*args: Any) -> None:
        await answer(*args)
        raise AriError("ARI POST /channels/1.1/answer: TimeoutError: ")

    ari.__dict__["answer"] = timed_out
    await asyncio.wait_for(call.run(), 5)
    assert ari.names() == ["answer", "continue_in_dialplan"]
    assert "mix_monitor" not in ami.names()
    closed = records.calls[-1][1][1]
    assert (closed.end_reason, closed.notice_completed) == (RESCUED, False)
    if kind is LineKind.SERVICE:
        assert records.names() == ["open", "commit_decision", "close"]
        receipt = records.calls[1][1][0].receipt
        assert (receipt.decision.value, receipt.record) == ("no_consent", False)
    else:
        assert records.names() == ["open", "close"]


async def test_a_caller_who_left_as_the_call_was_handed_on_is_a_hang_up() -> None:
    """The caller hangs up as the flow hands the call on: Asterisk answers 409, the
    channel no longer in the application. That is the caller's hang-up, not a failure:
    the call closes as hung up (a missed call, as the IVR's), with no rescue."""
    call, ari, _, records, items = runner()
    failing = ari.__getattr__("set_variable")

    async def set_variable(*args: Any) -> None:
        await failing(*args)
        raise ChannelGone("ARI POST /channels/1.1/variable: channel left the application",
                          409)

    ari.set_variable = set_variable  # type: ignore[attr-defined]
    task = asyncio.create_task(call.run())
    await notice_heard(ari, items)
    await asyncio.wait_for(task, 5)
    assert "continue_in_dialplan" not in ari.names()
    assert records.names() == ["open", "commit_decision", "close"]
    closed, missed = records.calls[-1][1][1], records.calls[-1][1][3]
    assert closed.end_reason == "channel gone"
    assert isinstance(missed, Missed) and missed.reason == "ivr_hangup"


@pytest.mark.parametrize(("failure", "on_disk", "row"), [
    (AmiError("MixMonitor refused"), False, "recording_not_started"),
    (AmiNoReply("no answer in 5 s"), False, "recording_not_started"),
    (AmiNoReply("no answer in 5 s"), True, None),
])
async def test_a_recording_ami_did_not_start_is_settled_when_the_call_ends(
        failure: AmiError, on_disk: bool, row: str | None, tmp_path: Path) -> None:
    """The stored decision allows a recording, and AMI refuses MixMonitor, or takes it and
    never answers (it may still start). The caller goes on to the queue either way. A
    refusal: the row says it never started. No answer: when the call ends, its file says
    whether it started; the row says which, so the DPO's record names no recording that
    does not exist and misses none that does."""
    settings = Settings(mode="test", recordings={"local_dir": tmp_path})
    call, ari, ami, records, items = runner(settings)

    async def mix_monitor(*args: Any) -> str:
        ami.calls.append(("mix_monitor", args))
        if on_disk:  # it started after all: MixMonitor's file
            (tmp_path / f"{call.call_uuid}.wav").write_bytes(b"RIFF")
        raise failure

    ami.mix_monitor = mix_monitor  # type: ignore[attr-defined]
    task = asyncio.create_task(call.run())
    await notice_heard(ari, items)
    await wait_for(ari, "continue_in_dialplan")
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", CHANNEL, 16))
    await asyncio.wait_for(task, 5)

    file_name = f"{call.call_uuid}.wav"
    if row is not None:
        assert records.names() == ["open", "commit_decision", row, "close"]
        assert records.calls[2][1][0] == file_name
    else:  # found started: stored with the close, in one write
        assert records.names() == ["open", "commit_decision", "close"]
        started = records.calls[-1][1][4]
        assert (started.file_name, started.mixmonitor_id) == (file_name, FOUND_ON_DISK)
    # the close stops the recording only if it started
    assert records.calls[-1][1][2] == (file_name if on_disk else None)


async def test_a_caller_handed_on_after_a_restart_who_gives_up_is_a_missed_call() -> None:
    """Rule 4 for a caller the restarted instance found in the application and handed to
    the queue: the queue timed out on them, so their missed call is stored on its own
    (their record was closed at the hand-off), with the queue's reason."""
    call, _, ami, records, items = runner()
    task = asyncio.create_task(call.follow_handed_on())
    items.put_nowait(ChannelUserevent("ChannelUserevent", T0, "ivr", CHANNEL, QUEUE_EVENT,
                                      {"status": "TIMEOUT"}))
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0 + timedelta(seconds=9),
                                          "ivr", CHANNEL, 16))
    await asyncio.wait_for(task, 5)
    assert ami.names() == ["queue_load"]
    [(name, (missed,))] = records.calls
    assert name == "record_missed"
    assert (missed.call_id, missed.reason, missed.missed_at) == (
        call.call_uuid, "timeout", T0 + timedelta(seconds=9))
    assert missed.caller == "+38631123456"


async def test_a_caller_handed_on_after_a_restart_whom_an_agent_answered_is_not_missed(
        ) -> None:
    call, _, _, records, items = runner()
    task = asyncio.create_task(call.follow_handed_on())
    items.put_nowait(AgentConnected("1.1", "agent-1"))
    await asyncio.wait_for(task, 5)
    assert records.calls == []


async def test_the_service_s_stop_is_not_lost_to_an_event_that_comes_with_it() -> None:
    """The stop cancels each call's task. An event that arrives in the same moment must
    not swallow the cancellation (Python 3.11's ``asyncio.wait_for`` returned the event and
    dropped it): the call would go on waiting for events that no longer come, and the
    service's stop with it."""
    call, _, _, _, items = runner()
    flow, _ = new_inbound_call("c", LineKind.SALES, "sales", (Segment("sales-notice"),))
    call.deadline = asyncio.get_running_loop().time() + 30  # a timer runs: a timeout is set
    waiting = asyncio.create_task(call.receive(flow))
    await asyncio.sleep(0)  # waiting for the next event
    items.put_nowait(ChannelHangupRequest("ChannelHangupRequest", T0, "ivr", CHANNEL, 16))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
