"""``ivr callbacks list | show | dial``: the callback queue for agents (rule 4)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ivr.settings import Settings, get_settings

AGENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CallbackCliError(Exception):
    """A bad argument or a callback that cannot be placed; the message says why."""


def parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise CallbackCliError(f"{raw[:60]!r} is not a callback id (a UUID, as listed by "
                               "`ivr callbacks list`)") from None


def _local(moment: datetime | None, settings: Settings) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")


async def _list(args: argparse.Namespace) -> int:
    from ivr.store.callbacks import Callbacks
    from ivr.store.database import Database

    settings = get_settings()
    db = Database(settings.database)
    try:
        views = await Callbacks(db, settings.callbacks.window_minutes).listing(
            datetime.now(UTC), overdue_only=args.overdue, include_closed=args.all)
    finally:
        await db.dispose()
    if args.json:
        print(json.dumps([v.as_json() for v in views], indent=2))
        return 0
    if not views:
        print("no callbacks" + (" overdue" if args.overdue else " open"))
    for v in views:
        flags = ("RECORD" if v.record else "no recording") + (
            ", NOTICE FIRST" if v.notice_required else "") + (", overload" if v.overload
                                                              else "")
        print(f"{v.id}  {v.caller}  due {_local(v.due_at, settings)}  {v.status}  "
              f"calls {len(v.calls)}  attempts {v.attempts}  {flags}")
    return 0


async def _show(args: argparse.Namespace) -> int:
    from ivr.store.callbacks import Callbacks
    from ivr.store.database import Database

    settings = get_settings()
    db = Database(settings.database)
    try:
        store = Callbacks(db, settings.callbacks.window_minutes)
        view = await store.get(parse_id(args.id))
        attempts = await store.attempts(view.id)
    finally:
        await db.dispose()
    data = view.as_json()
    data["attempts_made"] = [
        {"agent": a.agent, "started_at": a.started_at.isoformat(),
         "ended_at": a.ended_at.isoformat() if a.ended_at else None, "outcome": a.outcome,
         "call": str(a.call_id) if a.call_id else None} for a in attempts]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"callback {view.id} for {view.caller} ({', '.join(view.lines)})")
    print(f"  status {view.status}, due {_local(view.due_at, settings)}"
          + (" (overloaded centre: SLA reported apart)" if view.overload else ""))
    print(f"  {view.inheritance.reason}")
    print(f"  returns calls: {', '.join(str(c) for c in view.calls)}")
    for a in data["attempts_made"]:  # type: ignore[attr-defined]
        print(f"  attempt by {a['agent']} at {a['started_at']}: {a['outcome'] or 'under way'}")
    return 0


async def _dial(args: argparse.Namespace) -> int:
    from ivr import logs
    from ivr.asterisk.ami import AmiClient
    from ivr.asterisk.ari import AriClient
    from ivr.calls.callback import CallbackDialer
    from ivr.calls.inbound import CallDeps
    from ivr.notices.audio import verify
    from ivr.store.audit import AuditLog
    from ivr.store.callbacks import Callbacks
    from ivr.store.database import Database
    from ivr.store.durable import DurableRecords
    from ivr.store.receipts import CallRecords

    if not AGENT.fullmatch(args.agent):
        raise CallbackCliError(f"--agent {args.agent[:60]!r}: an agent's endpoint name "
                               "(letters, digits, - and _), e.g. agent1")
    callback_id = parse_id(args.id)
    settings = get_settings()
    logs.configure("WARNING")
    app = f"{settings.ari.app}-dial-{uuid.uuid4().hex[:8]}"
    db = Database(settings.database)
    ari = AriClient(settings.ari.model_copy(update={"app": app}))
    ami = AmiClient(settings.ami)
    await ami.connect()
    callbacks = Callbacks(db, settings.callbacks.window_minutes)
    deps = CallDeps(settings, ari, ami,
                    DurableRecords(CallRecords(db, AuditLog(db)), callbacks),
                    verify(settings.prompts.local_dir), callbacks)
    try:
        result = await CallbackDialer(deps, lambda line: print(line, flush=True)).dial(
            callback_id, args.agent)
    finally:
        ami.close()
        await ari.aclose()
        await db.dispose()
    print(json.dumps({"callback": str(callback_id), "reached": result.reached,
                      "outcome": result.outcome, "status": result.status,
                      "call": str(result.call_id), "recorded": result.recorded}))
    return 0 if result.reached else 1


def run(args: argparse.Namespace) -> int:
    from ivr.store.callbacks import CallbackError

    handler = {"list": _list, "show": _show, "dial": _dial}[args.callbacks_command]
    try:
        return asyncio.run(handler(args))
    except (CallbackCliError, CallbackError) as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("callbacks", help="missed calls to return (rule 4)")
    actions = parser.add_subparsers(dest="callbacks_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="open callbacks, by due time")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--overdue", action="store_true", help="only those past due")
    listing.add_argument("--all", action="store_true", help="closed ones too")
    show = actions.add_parser("show", help="one callback, its calls and attempts")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    dial = actions.add_parser("dial", help="place the callback from an agent's phone")
    dial.add_argument("id")
    dial.add_argument("--agent", required=True, help="the agent's endpoint, e.g. agent1")
    for p in (listing, show, dial):
        p.set_defaults(handler=run)
