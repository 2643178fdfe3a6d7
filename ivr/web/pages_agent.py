"""The agent's pages: the callback queue (rule 4) with the decision in plain words, the
"call back" button, and the form for a revocation made by phone (rule 8)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from ivr.policy.numbers import InvalidNumber, to_e164
from ivr.store.callbacks import CallbackView
from ivr.store.revocations import Revocations
from ivr.web.app import check_csrf, console_of, role
from ivr.web.auth import SessionInfo
from ivr.web.i18n import texts

router = APIRouter(prefix="/agent")
Agent = Annotated[SessionInfo, role("agent")]


def plain_words(view: CallbackView, t: dict[str, str], local: Callable[..., str]) -> str:
    """The decision as the agent needs it before dialling, in the console's language, e.g.
    "notice given at 10:42, consent yes: this call WILL be recorded, ..."."""
    inheritance = view.inheritance
    if inheritance.notice_required:
        return t["d_notice"]
    if inheritance.record:
        words = t["d_consent"] if inheritance.basis == "consent" else t["d_sales"]
    elif inheritance.revoked:
        words = t["d_revoked"]
    else:
        words = t["d_not"].format(decision=inheritance.refused_decision)
    if inheritance.notice_at is not None:
        words = t["notice_at"].format(time=local(inheritance.notice_at, "%H:%M")) + ", " + words
    return words


@router.get("")
async def queue(request: Request, me: Agent) -> Response:
    console = console_of(request)
    t = texts(request.query_params.get("lang") or me.language)
    now = datetime.now(UTC)
    rows = []
    for view in await console.callbacks.listing(now):
        rows.append({
            "id": str(view.id), "caller": view.caller, "lines": view.lines,
            "due_local": console.local(view.due_at), "overload": view.overload,
            "minutes_left": int((view.due_at - now).total_seconds() // 60),
            "record": view.record, "words": plain_words(view, t, console.local),
            "attempts": view.attempts, "outcome": view.outcome})
    placed = request.query_params.get("placed", "")
    return console.render(request, "agent.html", me, callbacks=rows,
                          progress=console.progress.get(placed),
                          flash=request.query_params.get("flash"))


@router.post("/callbacks/{callback_id}/dial")
async def dial(request: Request, callback_id: uuid.UUID, me: Agent,
               csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    check_csrf(me, csrf)
    console = console_of(request)
    if not me.agent_endpoint or console.dial is None or console.spawn is None:
        raise HTTPException(409, "this user has no phone endpoint to call from")
    key = str(callback_id)
    lines = console.progress.setdefault(key, [])
    lines.clear()
    await console.audit.record(me.username, "callback_placed", "callback", key,
                               {"agent": me.agent_endpoint})
    console.spawn(console.dial(key, me.agent_endpoint, lines.append), f"dial-{key}")
    return RedirectResponse(f"/agent?placed={key}", status_code=303)


@router.post("/revocations")
async def revocation_by_phone(request: Request, me: Agent,
                              caller: Annotated[str, Form(max_length=40)],
                              note: Annotated[str, Form(max_length=500)] = "",
                              csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    check_csrf(me, csrf)
    console = console_of(request)
    try:
        number = to_e164(caller, console.settings.region)
    except InvalidNumber as exc:
        return console.render(request, "agent.html", me, callbacks=[], error=str(exc))
    received = await Revocations(console.db, console.settings, console.audit).add(
        number, "phone", datetime.now(UTC), me.username, note or None)
    flash = (f"revocation {received.revocation.id}: deadline "
             f"{received.revocation.deadline.isoformat()}")
    return RedirectResponse(f"/agent?flash={flash}", status_code=303)
