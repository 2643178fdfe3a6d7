"""Data subject access (GDPR art. 15): everything stored about one caller, as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select

from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import (
    Base,
    Call,
    Callback,
    CallbackAttempt,
    Decision,
    DeletionCertificate,
    MissedCall,
    Recording,
    Revocation,
)


def _plain(row: Base) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for column in inspect(type(row)).columns:
        value = getattr(row, column.key)
        if isinstance(value, (datetime, date)):
            value = value.isoformat()
        elif isinstance(value, uuid.UUID):
            value = str(value)
        result[column.key] = value
    return result


async def subject_data(db: Database, caller: str) -> dict[str, list[dict[str, Any]]]:
    async with db.session() as session:
        calls = (await session.execute(select(Call).where(Call.caller == caller)
                                       .order_by(Call.started_at))).scalars().all()
        ids = [c.id for c in calls]
        callbacks = (await session.execute(select(Callback).where(
            Callback.caller == caller))).scalars().all()
        recordings = (await session.execute(select(Recording).where(
            Recording.call_id.in_(ids)))).scalars().all()

        async def rows(model: type[Base], where: Any) -> list[dict[str, Any]]:
            return [_plain(r) for r in (await session.execute(select(model).where(where)))
                    .scalars().all()]

        return {
            "calls": [_plain(c) for c in calls],
            "decisions": await rows(Decision, Decision.call_id.in_(ids)),
            "recordings": [_plain(r) for r in recordings],
            "deletion_certificates": await rows(
                DeletionCertificate,
                DeletionCertificate.recording_id.in_([r.id for r in recordings])),
            "missed_calls": await rows(MissedCall, MissedCall.caller == caller),
            "callbacks": [_plain(c) for c in callbacks],
            "callback_attempts": await rows(
                CallbackAttempt, CallbackAttempt.callback_id.in_([c.id for c in callbacks])),
            "revocations": await rows(Revocation, Revocation.caller == caller),
        }


def _write(data: dict[str, list[dict[str, Any]]], out: Path) -> None:
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, rows in data.items():
        fd = os.open(out / f"{name}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(rows, f, ensure_ascii=False, indent=2)


async def export_subject(db: Database, audit: AuditLog, caller: str, out: Path,
                         by: str) -> dict[str, int]:
    """Write one JSON file per kind of record into ``out`` (created, mode 0700)."""
    data = await subject_data(db, caller)
    await asyncio.to_thread(_write, data, out)
    counts = {name: len(rows) for name, rows in data.items()}
    await audit.record(by, "subject_exported", "caller", caller, counts)
    return counts
