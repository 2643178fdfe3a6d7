"""What happens to a call, as the flow sees it. Every event carries the time it happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Answered:
    at: datetime


@dataclass(frozen=True, slots=True)
class PlaybackStarted:
    """A segment of the playback started: ``segment_id``, where the shell knows which."""

    playback_id: str
    at: datetime
    segment_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    playback_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PlaybackContinued:
    """A playback of several segments ended one (``segment_id``, where the shell knows
    which) and goes on with the next."""

    playback_id: str
    at: datetime
    segment_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlaybackFailed:
    """The prompt could not be played (missing audio, ARI refused): the caller is not told."""

    playback_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Digit:
    digit: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TimerFired:
    at: datetime


@dataclass(frozen=True, slots=True)
class DecisionStored:
    at: datetime


@dataclass(frozen=True, slots=True)
class DecisionNotStored:
    """The receipt could not be committed: nothing may be recorded."""

    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    mixmonitor_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Continued:
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentAnswered:
    agent: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HungUp:
    at: datetime
    cause: str = "caller hung up"


FlowEvent = (Answered | PlaybackStarted | PlaybackContinued | PlaybackFinished | PlaybackFailed
             | Digit | TimerFired | DecisionStored | DecisionNotStored | RecordingStarted
             | RecordingFailed | Continued | AgentAnswered | HungUp)
