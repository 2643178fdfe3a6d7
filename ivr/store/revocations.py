"""Revocations of consent (rule 8): intake, and what the DPO needs to see of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from ivr.policy.deadlines import working_days_after
from ivr.settings import Settings
from ivr.store.audit import AuditLog
from ivr.store.database import Database
from ivr.store.models import Call, Callback, DeletionCertificate, Recording, Revocation


@dataclass(frozen=True)
class RevocationReceived:
    revocation: Revocation
    consent_recordings: int  # covered: deleted by the deadline
    legal_basis_recordings: int  # not consent-based: not covered (rule 8)
    callbacks_no_longer_recorded: int


class RevocationError(Exception):
    """An unknown revocation id."""


class Revocations:
    def __init__(self, db: Database, settings: Settings, audit: AuditLog) -> None:
        self.db = db
        self.settings = settings
        self.audit = audit

    async def add(self, caller: str, via: str, received_at: datetime, by: str,
                  note: str | None) -> RevocationReceived:
        """Store the revocation with its deadline; open callbacks of the caller lose
        their permission to record; audited in the same transaction."""
        revocations = self.settings.revocations
        deadline = working_days_after(received_at, revocations.working_days,
                                      revocations.calendar_country, self.settings.timezone)
        async with self.db.session() as session, session.begin():
            revocation = Revocation(caller=caller, via=via, received_at=received_at,
                                    recorded_by=by, note=note, deadline=deadline)
            session.add(revocation)
            counts = dict((await session.execute(
                select(Recording.basis, func.count()).join(Call, Call.id == Recording.call_id)
                .where(Call.caller == caller, Recording.deleted_at.is_(None),
                       # as the deletion job counts them: made up to the receipt
                       Recording.started_at <= received_at)
                .group_by(Recording.basis))).all())
            changed = await session.execute(update(Callback).where(
                Callback.caller == caller, Callback.status == "open", Callback.record.is_(True))
                .values(record=False))
            await session.flush()
            await self.audit.append(session, by, "revocation_received", "revocation",
                                    str(revocation.id), {"via": via,
                                                         "deadline": deadline.isoformat()})
        return RevocationReceived(revocation, int(counts.get("consent", 0)),
                                  int(counts.get("legal_basis", 0)),
                                  int(getattr(changed, "rowcount", 0) or 0))

    async def get(self, revocation_id: uuid.UUID) -> tuple[Revocation,
                                                           list[DeletionCertificate]]:
        async with self.db.session() as session:
            revocation = await session.get(Revocation, revocation_id)
            if revocation is None:
                raise RevocationError(f"no revocation {revocation_id}")
            certificates = list((await session.execute(select(DeletionCertificate).where(
                DeletionCertificate.revocation_id == revocation_id)
                .order_by(DeletionCertificate.deleted_at))).scalars())
            return revocation, certificates
