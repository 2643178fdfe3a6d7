"""``python -m testpbx transcripts``: record the ARI frames of real calls on the test PBX
into ``tests/unit/transcripts/NAME.jsonl``, for the unit tests that replay them (issue 7).

The recorder is a minimal Stasis application itself, with no ``ivr serve`` and no
database: it answers, plays the line's short stand-in notice as one playback of its
segments (as the service does), follows the channel and continues it to its queue in the
dialplan. SIPp places the calls one at a time; every frame of the call's channel is
written as Asterisk sent it (one line each), until the channel is destroyed. Asterisk is
started for the recording and stopped after.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from ivr.asterisk.ari import AriClient, AriError
from ivr.asterisk.ari_events import (
    AriEventError,
    ChannelDestroyed,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
    channel_of,
    parse_event,
)
from ivr.calls.caller import describe_caller
from ivr.notices.audio import build
from ivr.notices.catalogue import Manifest, load_catalogue
from ivr.settings import Settings
from testpbx.asterisk import Asterisk
from testpbx.config import write_settings
from testpbx.paths import REPO, Paths
from testpbx.root import ensure_root
from testpbx.sipp import Action, Pause, Press, Sipp

OUT = REPO / "tests" / "unit" / "transcripts"
SHORT_CATALOGUE = REPO / "tests" / "e2e" / "short_notices.toml"
SOUND_PREFIX = "ivr-short"
SERVICE = "040404040"
# Short service notice: information 0-2.7 s, question 2.7-5.0 s, closing 5.0-7.0 s.
DURING_QUESTION = Pause(3800)


@dataclass(frozen=True)
class RecordedCall:
    number: str
    caller: str
    actions: tuple[Action, ...]
    hold_ms: int


CALLS = {
    "service-consent": RecordedCall(SERVICE, "031000401",
                                    (DURING_QUESTION, Press("1", "rfc4733")), 7000),
    "service-refusal": RecordedCall(SERVICE, "031000402",
                                    (DURING_QUESTION, Press("2", "rfc4733")), 7000),
    "service-hangup-during-notice": RecordedCall(SERVICE, "031000403", (), 1200),
}


class StasisApp:
    """Answers each call, plays its line's notice, continues it to the queue; keeps the
    frames of the channel being recorded."""

    def __init__(self, settings: Settings, manifest: Manifest, ari: AriClient,
                 tasks: asyncio.TaskGroup) -> None:
        self.settings = settings
        self.manifest = manifest
        self.ari = ari
        self.tasks = tasks
        self.frames: list[str] = []
        self.channel: str | None = None
        self.continued = False
        self.destroyed = asyncio.Event()
        self.finished: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def expect_call(self) -> None:
        self.frames, self.channel, self.continued = [], None, False
        self.destroyed = asyncio.Event()

    async def read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            text = frame if isinstance(frame, str) else frame.decode()
            try:
                event = parse_event(text)
            except AriEventError:
                continue
            if isinstance(event, StasisStart) and self.channel is None:
                self.channel = event.channel.id
                self.tasks.create_task(self.handle(event))
            if self.channel is None or channel_of(event) != self.channel:
                continue
            self.frames.append(json.dumps(json.loads(text), ensure_ascii=False,
                                          separators=(",", ":")))
            if isinstance(event, PlaybackFinished):
                self.finished[event.playback_id].set()
            elif isinstance(event, ChannelDestroyed) or (
                    isinstance(event, StasisEnd) and not self.continued):
                # A channel that leaves the application without being continued is no
                # longer the application's: its StasisEnd is the last frame.
                self.destroyed.set()

    async def handle(self, start: StasisStart) -> None:
        channel = start.channel.id
        dialled = describe_caller(start.channel.exten, self.settings.region).e164
        line = self.settings.line_for(dialled) if dialled else None
        if line is None:
            return
        try:
            await self.ari.answer(channel)
            playback = str(uuid.uuid4())
            await self.ari.play(channel, ",".join(
                f"sound:{SOUND_PREFIX}/{segment.id}"
                for segment in self.manifest.notice_segments(line.notice)), playback)
            await asyncio.wait_for(self.finished[playback].wait(), 30)
            await self.ari.subscribe_channel(channel)
            self.continued = True
            await self.ari.continue_in_dialplan(channel, self.settings.dialplan.queue_context,
                                                line.queue)
        except (AriError, TimeoutError):
            return  # the caller hung up: what happened is in the frames


async def record_calls(settings: Settings, manifest: Manifest, sipp: Sipp,
                       out: Path) -> list[Path]:
    ari = AriClient(settings.ari)
    token = base64.b64encode(
        f"{settings.ari.username}:{settings.ari.password.get_secret_value()}".encode()).decode()
    written = []
    try:
        async with connect(ari.events_url(), additional_headers={
                "Authorization": f"Basic {token}"}) as ws, asyncio.TaskGroup() as tasks:
            app = StasisApp(settings, manifest, ari, tasks)
            reader = tasks.create_task(app.read(ws))
            for name, call in CALLS.items():
                app.expect_call()
                result = await sipp.call(call.number, caller=call.caller,
                                         actions=call.actions, hold_ms=call.hold_ms,
                                         timeout_s=60)
                await asyncio.wait_for(app.destroyed.wait(), 15)
                path = out / f"{name}.jsonl"
                path.write_text("".join(f"{frame}\n" for frame in app.frames))
                print(f"testpbx: {name}: {len(app.frames)} frames -> {path} "
                      f"(SIPp {'ok' if result.ok else 'FAILED, log ' + str(result.log)})",
                      flush=True)
                written.append(path)
            reader.cancel()
    finally:
        await ari.aclose()
    return written


def record(paths: Paths, out: Path = OUT) -> list[Path]:
    """Start Asterisk, record every call of ``CALLS``, stop Asterisk."""
    ensure_root(paths, paths.logs / "debootstrap.log")
    settings = write_settings(paths)
    manifest = build(load_catalogue(SHORT_CATALOGUE),
                     paths.in_root(f"/usr/share/asterisk/sounds/{SOUND_PREFIX}"))
    pbx = Asterisk(paths, settings)
    pbx.start()
    try:
        sipp = Sipp(paths, pbx=f"127.0.0.1:{settings.pbx.sip_port}")
        return asyncio.run(record_calls(settings, manifest, sipp, out))
    finally:
        pbx.stop()
