"""What the flow asks the shell to do. The shell reports each outcome back as an event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Decision(StrEnum):
    """The basis on which a call is (or is not) recorded (POLICY.md rules 1-3)."""

    LEGAL_BASIS = "legal_basis"  # sales: evidence of a transaction, always recorded
    CONSENT = "consent"  # service: the caller pressed 1
    REFUSAL = "refusal"  # service: the caller pressed 2
    NO_CONSENT = "no_consent"  # service: anything else, silence, or a hang-up

    @property
    def records(self) -> bool:
        return self in (Decision.LEGAL_BASIS, Decision.CONSENT)


@dataclass(frozen=True, slots=True)
class PlayedSegment:
    segment_id: str
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """Everything rule 3 asks to keep about one decision."""

    decision: Decision
    digit: str | None
    digit_at: datetime | None
    notice_started_at: datetime | None
    notice_ended_at: datetime | None
    question_started_at: datetime | None
    decided_at: datetime
    played: tuple[PlayedSegment, ...]
    record: bool


@dataclass(frozen=True, slots=True)
class Answer:
    pass


@dataclass(frozen=True, slots=True)
class Play:
    """One playback: ``segment_id``, then each of ``following`` in order, with no pause
    between them (Asterisk plays the list; the shell waits for no segment's end)."""

    segment_id: str
    playback_id: str
    following: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """What is left of a playback is not played (its list goes on otherwise, and holds
    the caller in the application until it ends)."""

    playback_id: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    seconds: float


@dataclass(frozen=True, slots=True)
class StoreDecision:
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class StartRecording:
    pass


@dataclass(frozen=True, slots=True)
class ContinueToQueue:
    queue: str
    decision: Decision | None
    recorded: bool


@dataclass(frozen=True, slots=True)
class CloseCall:
    ended_at: datetime
    end_reason: str
    notice_completed: bool
    agent_answered: bool


Command = (Answer | Play | StopPlayback | StartTimer | StoreDecision | StartRecording
           | ContinueToQueue | CloseCall)
