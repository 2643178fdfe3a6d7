"""The DPO's page: revocations with deadlines, e-mail revocations, deletion certificates,
upcoming retention expiries, the audit chain, consent receipts and the subject export."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from ivr.policy.deadlines import deadline_end, is_working_day
from ivr.policy.numbers import InvalidNumber, to_e164
from ivr.store.models import Call, Decision, DeletionCertificate, Recording, Revocation
from ivr.store.revocations import Revocations
from ivr.store.subject import subject_data
from ivr.web.app import check_csrf, console_of, role
from ivr.web.auth import SessionInfo

router = APIRouter(prefix="/dpo")
Dpo = Annotated[SessionInfo, role("dpo")]


def working_days_between(start: date, end: date, country: str) -> int:
    days, day = 0, start
    while day < end:
        day += timedelta(days=1)
        days += is_working_day(day, country)
    return days


@router.get("")
async def overview(request: Request, me: Dpo, number: str | None = None) -> Response:
    console = console_of(request)
    settings = console.settings
    now = datetime.now(UTC)
    today = now.astimezone(ZoneInfo(settings.timezone)).date()
    async with console.db.session() as session:
        revocations = (await session.execute(select(Revocation).order_by(
            Revocation.received_at.desc()).limit(100))).scalars().all()
        counts = dict((await session.execute(select(
            DeletionCertificate.revocation_id, func.count()).group_by(
            DeletionCertificate.revocation_id))).all())
        certificates = (await session.execute(select(DeletionCertificate).order_by(
            DeletionCertificate.deleted_at.desc()).limit(20))).scalars().all()
        expiries = (await session.execute(select(Recording).where(
            Recording.deleted_at.is_(None), Recording.expires_at <= now + timedelta(days=30))
            .order_by(Recording.expires_at).limit(50))).scalars().all()
        receipts = None
        error = None
        if number:
            try:
                caller = to_e164(number, settings.region)
                receipts = [{
                    "started_local": console.local(c.started_at), "line": c.line_name,
                    "decision": d, "digit": digit, "recording": f}
                    for c, d, digit, f in (await session.execute(
                        select(Call, Decision.decision, Decision.digit, Recording.file_name)
                        .outerjoin(Decision, Decision.call_id == Call.id)
                        .outerjoin(Recording, Recording.call_id == Call.id)
                        .where(Call.caller == caller).order_by(Call.started_at.desc())
                        .limit(100))).all()]
            except InvalidNumber as exc:
                error = str(exc)
    rows = [{
        "id": str(r.id), "caller": r.caller, "via": r.via,
        "received_local": console.local(r.received_at), "deadline": r.deadline.isoformat(),
        "fulfilled": r.fulfilled_at is not None,
        "overdue": r.fulfilled_at is None and now > deadline_end(r.deadline, settings.timezone),
        "working_days_left": working_days_between(today, r.deadline,
                                                  settings.revocations.calendar_country),
        "certificates": counts.get(r.id, 0)} for r in revocations]
    audit = await console.audit.verify()
    return console.render(
        request, "dpo.html", me, revocations=rows, error=error, number=number,
        certificates=[{"deleted_local": console.local(c.deleted_at), "reason": c.reason,
                       "file_name": c.file_name, "file_sha256": c.file_sha256, "met": c.met}
                      for c in certificates],
        expiries=[{"expires_local": console.local(r.expires_at), "basis": r.basis,
                   "file_name": r.file_name} for r in expiries],
        audit=audit, receipts=receipts, flash=request.query_params.get("flash"))


@router.post("/revocations")
async def revocation_by_email(request: Request, me: Dpo,
                              caller: Annotated[str, Form(max_length=40)],
                              received_at: Annotated[str, Form(max_length=40)],
                              note: Annotated[str, Form(max_length=500)] = "",
                              csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    check_csrf(me, csrf)
    console = console_of(request)
    try:
        number = to_e164(caller, console.settings.region)
        received = datetime.fromisoformat(received_at)
        if received.tzinfo is None:
            received = received.replace(tzinfo=ZoneInfo(console.settings.timezone))
        if received > datetime.now(UTC):
            raise ValueError("the time of receipt is in the future")
    except (InvalidNumber, ValueError) as exc:
        return RedirectResponse(f"/dpo?flash=refused: {exc}", status_code=303)
    result = await Revocations(console.db, console.settings, console.audit).add(
        number, "email", received, me.username, note or None)
    return RedirectResponse(
        f"/dpo?flash=revocation {result.revocation.id}: deadline "
        f"{result.revocation.deadline.isoformat()}", status_code=303)


@router.get("/export")
async def export(request: Request, me: Dpo, number: str) -> Response:
    console = console_of(request)
    try:
        caller = to_e164(number, console.settings.region)
    except InvalidNumber as exc:
        return Response(str(exc), status_code=400)
    data = await subject_data(console.db, caller)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in data.items():
            archive.writestr(f"{name}.json", json.dumps(rows, ensure_ascii=False, indent=2))
    await console.audit.record(me.username, "subject_exported", "caller", caller,
                               {name: len(rows) for name, rows in data.items()})
    return Response(buffer.getvalue(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="subject-{caller[1:]}.zip"'})
