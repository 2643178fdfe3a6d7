"""ARI events: JSON frames from the events websocket parsed into frozen dataclasses.

Sans-I/O: :func:`parse_event` takes the text of one frame and returns an event, or raises
:class:`AriEventError` saying what is wrong. Event types the service does not use come back
as :class:`OtherEvent`, so a new Asterisk version never breaks the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_FRAME = 1 << 20


class AriEventError(ValueError):
    """A frame that is not a usable ARI event."""


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    state: str
    caller_number: str
    caller_name: str
    context: str
    exten: str
    linkedid: str
    variables: tuple[tuple[str, str], ...] = ()
    app_name: str = ""
    app_data: str = ""

    def in_application(self, app: str) -> bool:
        """Whether the channel sits in ``Stasis(app...)`` right now."""
        return self.app_name.lower() == "stasis" and self.app_data.split(",")[0] == app

    def variable(self, name: str) -> str | None:
        return dict(self.variables).get(name)


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    timestamp: datetime | None
    application: str


@dataclass(frozen=True, slots=True)
class StasisStart(Event):
    channel: Channel
    args: tuple[str, ...]
    replace_channel_id: str | None


@dataclass(frozen=True, slots=True)
class StasisEnd(Event):
    channel: Channel


@dataclass(frozen=True, slots=True)
class ChannelDtmfReceived(Event):
    channel: Channel
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ChannelHangupRequest(Event):
    channel: Channel
    cause: int | None


@dataclass(frozen=True, slots=True)
class ChannelDestroyed(Event):
    channel: Channel
    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True)
class ChannelStateChange(Event):
    channel: Channel


@dataclass(frozen=True, slots=True)
class PlaybackStarted(Event):
    playback_id: str
    media_uri: str
    target_uri: str


@dataclass(frozen=True, slots=True)
class PlaybackContinuing(Event):
    """A playback of a list of media ended one (``media_uri``) and goes on with the next,
    whose start comes as a PlaybackStarted of its own."""

    playback_id: str
    media_uri: str
    target_uri: str


@dataclass(frozen=True, slots=True)
class PlaybackFinished(Event):
    playback_id: str
    media_uri: str
    target_uri: str
    state: str


@dataclass(frozen=True, slots=True)
class ChannelUserevent(Event):
    """The dialplan's ``UserEvent(name,key: value,...)`` on a channel the application
    follows (e.g. ``ivr-queue`` with the QUEUESTATUS Queue() left: rule 4's reason). The
    body's text values, by key; the event's name is not among them."""

    channel: Channel
    eventname: str
    body: dict[str, str]


@dataclass(frozen=True, slots=True)
class OtherEvent(Event):
    """An event type the service does not act on; kept for logging."""


def _str(obj: dict[str, Any], key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise AriEventError(f"field {key!r} must be text, got {type(value).__name__}")
    return value


def _obj(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise AriEventError(f"field {key!r} must be an object")
    return value


def _optional_obj(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _timestamp(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        # ARI: 2026-11-22T21:55:53.280+0000 (fromisoformat: a tenth of strptime's cost)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def parse_channel(raw: dict[str, Any]) -> Channel:
    caller, dialplan, variables = (_optional_obj(raw, k) for k in
                                   ("caller", "dialplan", "channelvars"))
    channel_id = _str(raw, "id")
    if not channel_id or len(channel_id) > 128:
        raise AriEventError("channel id must be 1 to 128 characters")
    return Channel(
        id=channel_id,
        name=_str(raw, "name", ""),
        state=_str(raw, "state", ""),
        caller_number=_str(caller, "number", ""),
        caller_name=_str(caller, "name", ""),
        context=_str(dialplan, "context", ""),
        exten=_str(dialplan, "exten", ""),
        linkedid=_str(raw, "linkedid", channel_id) or channel_id,
        variables=tuple(sorted((str(k), str(v)) for k, v in variables.items())),
        app_name=_str(dialplan, "app_name", ""),
        app_data=_str(dialplan, "app_data", ""),
    )


def parse_event(text: str | bytes) -> Event:
    """Parse one websocket frame into an event."""
    if len(text) > MAX_FRAME:
        raise AriEventError(f"frame of {len(text)} bytes is larger than {MAX_FRAME}")
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, UnicodeDecodeError, and an integer of more than
        # 4300 digits; RecursionError: arrays or objects nested too deep.
        raise AriEventError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise AriEventError("an event must be a JSON object")
    kind = _str(raw, "type", "")
    if not kind:
        raise AriEventError("event without a type")
    base: tuple[str, datetime | None, str] = (
        kind, _timestamp(raw.get("timestamp")), _str(raw, "application", ""))
    if kind == "StasisStart":
        args = raw.get("args", [])
        if not isinstance(args, list):
            raise AriEventError("StasisStart args must be a list")
        replaced = raw.get("replace_channel")
        return StasisStart(
            *base, channel=parse_channel(_obj(raw, "channel")),
            args=tuple(str(a) for a in args),
            replace_channel_id=_str(replaced, "id") if isinstance(replaced, dict) else None,
        )
    if kind == "StasisEnd":
        return StasisEnd(*base, channel=parse_channel(_obj(raw, "channel")))
    if kind == "ChannelDtmfReceived":
        digit = _str(raw, "digit")
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise AriEventError(f"DTMF digit {digit[:8]!r} is not one of 0-9 * # A-D")
        duration = raw.get("duration_ms", 0)
        return ChannelDtmfReceived(
            *base, channel=parse_channel(_obj(raw, "channel")), digit=digit,
            duration_ms=duration if isinstance(duration, int) else 0,
        )
    if kind == "ChannelHangupRequest":
        cause = raw.get("cause")
        return ChannelHangupRequest(*base, channel=parse_channel(_obj(raw, "channel")),
                                    cause=cause if isinstance(cause, int) else None)
    if kind == "ChannelDestroyed":
        cause = raw.get("cause", 0)
        return ChannelDestroyed(*base, channel=parse_channel(_obj(raw, "channel")),
                                cause=cause if isinstance(cause, int) else 0,
                                cause_txt=str(raw.get("cause_txt", "")))
    if kind == "ChannelUserevent" and isinstance(raw.get("channel"), dict):
        body = _optional_obj(raw, "userevent")
        return ChannelUserevent(*base, channel=parse_channel(_obj(raw, "channel")),
                                eventname=_str(raw, "eventname", ""),
                                body={key: value for key, value in body.items()
                                      if isinstance(value, str) and key != "eventname"})
    if kind == "ChannelStateChange":
        return ChannelStateChange(*base, channel=parse_channel(_obj(raw, "channel")))
    if kind in ("PlaybackStarted", "PlaybackContinuing", "PlaybackFinished"):
        playback = _obj(raw, "playback")
        ids = (_str(playback, "id"), _str(playback, "media_uri", ""),
               _str(playback, "target_uri", ""))
        if kind == "PlaybackStarted":
            return PlaybackStarted(*base, *ids)
        if kind == "PlaybackContinuing":
            return PlaybackContinuing(*base, *ids)
        return PlaybackFinished(*base, *ids, state=_str(playback, "state", ""))
    return OtherEvent(*base)


def channel_of(event: Event) -> str | None:
    """The channel an event belongs to (playbacks: their target channel), if any."""
    channel = getattr(event, "channel", None)
    if isinstance(channel, Channel):
        return channel.id
    target = getattr(event, "target_uri", "")
    if isinstance(target, str) and target.startswith("channel:"):
        return target.removeprefix("channel:")
    return None
