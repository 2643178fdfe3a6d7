"""The DPO's commands (rules 6-8): revocations, deletion jobs, the audit chain, purpose-bound
access to recordings, and data subject exports."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.policy.numbers import InvalidNumber, to_e164
from ivr.policy.purposes import PURPOSES
from ivr.settings import Settings, get_settings

WHO = re.compile(r"^[\w .@+-]{1,80}$")


class DpoCliError(Exception):
    """A bad argument; the message says what is expected."""


def parse_time(raw: str, settings: Settings) -> datetime:
    """ISO 8601; without a zone it is the call centre's local time; ``now`` is now."""
    if raw.strip().lower() == "now":
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise DpoCliError(f"--received-at {raw[:40]!r}: expected a time like "
                          "2026-11-20T17:45 (local time) or 2026-11-20T16:45+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(settings.timezone))
    try:  # the deadline is counted in the centre's days, UTC stored
        moment.astimezone(ZoneInfo(settings.timezone)).astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before the year 1 there
        raise DpoCliError(f"--received-at {raw[:40]!r} is out of range") from None
    if moment > datetime.now(UTC):
        raise DpoCliError(f"--received-at {raw[:40]!r} is in the future")
    return moment


def parse_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise DpoCliError(f"{raw[:60]!r} is not a {what} id (a UUID)") from None


def parse_who(raw: str) -> str:
    if not WHO.fullmatch(raw):
        raise DpoCliError(f"--by {raw[:40]!r}: a name or e-mail of at most 80 characters")
    return raw


def parse_caller(raw: str, settings: Settings) -> str:
    try:
        return to_e164(raw, settings.region)
    except InvalidNumber as exc:
        raise DpoCliError(str(exc)) from None


class Services:
    """The stores the commands use, built from the settings and disposed at the end."""

    def __init__(self, settings: Settings) -> None:
        from ivr.store.audit import AuditLog
        from ivr.store.database import Database

        self.settings = settings
        self.db = Database(settings.database)
        self.audit = AuditLog(self.db)


async def _with_services(body: Callable[[Services], Awaitable[int]]) -> int:
    services = Services(get_settings())
    try:
        return await body(services)
    finally:
        await services.db.dispose()


def revocations_add(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.store.revocations import Revocations

        caller = parse_caller(args.caller, s.settings)
        received = parse_time(args.received_at, s.settings)
        by = parse_who(args.by)
        note = (args.note or "")[:500] or None
        result = await Revocations(s.db, s.settings, s.audit).add(caller, args.via, received,
                                                                  by, note)
        r = result.revocation
        print(f"revocation {r.id}")
        print(f"  caller {caller}, received {received.isoformat()} by {args.via}")
        print(f"  deadline {r.deadline.isoformat()} ({s.settings.revocations.working_days} "
              f"working days, {s.settings.revocations.calendar_country} calendar)")
        print(f"  covers {result.consent_recordings} consent-based recording(s)")
        if result.legal_basis_recordings:
            print(f"  does NOT cover {result.legal_basis_recordings} sales recording(s): they "
                  "are kept as evidence of a transaction, not on consent (rule 8)")
        if result.callbacks_no_longer_recorded:
            print(f"  {result.callbacks_no_longer_recorded} open callback(s) will no longer "
                  "be recorded")
        return 0
    return body


def revocations_show(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.policy.deadlines import deadline_end
        from ivr.store.revocations import Revocations

        revocation, certificates = await Revocations(s.db, s.settings, s.audit).get(
            parse_uuid(args.id, "revocation"))
        end = deadline_end(revocation.deadline, s.settings.timezone)
        data: dict[str, Any] = {
            "id": str(revocation.id), "caller": revocation.caller, "via": revocation.via,
            "received_at": revocation.received_at.isoformat(),
            "recorded_by": revocation.recorded_by, "note": revocation.note,
            "deadline": revocation.deadline.isoformat(),
            "fulfilled_at": revocation.fulfilled_at.isoformat() if revocation.fulfilled_at
            else None,
            "status": ("fulfilled" if revocation.fulfilled_at else
                       "overdue" if datetime.now(UTC) > end else "pending"),
            "certificates": [{
                "recording": str(c.recording_id), "file": c.file_name,
                "sha256": c.file_sha256, "file_existed": c.file_existed,
                "location": c.location,
                "deleted_at": c.deleted_at.isoformat(), "deadline": c.deadline.isoformat(),
                "met": c.met} for c in certificates],
        }
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        print(f"revocation {data['id']} ({data['status']})")
        print(f"  caller {data['caller']} by {data['via']}, received {data['received_at']}, "
              f"recorded by {data['recorded_by']}")
        print(f"  deadline {data['deadline']}; fulfilled {data['fulfilled_at'] or 'not yet'}")
        for c in data["certificates"]:
            print(f"  deleted {c['location'] or c['file']} at {c['deleted_at']} "
                  f"sha256 {c['sha256'] or '-'} "
                  f"({'deadline met' if c['met'] else 'DEADLINE MISSED'})")
        return 0
    return body


def jobs_run_once(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.jobs.deletion import DeletionJob

        report = await DeletionJob(s.db, s.settings, s.audit).run_once()
        print(json.dumps(report.as_json()))
        return 1 if report.failed else 0
    return body


def jobs_move_recordings(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.jobs.recording_moves import RecordingMoveJob
        from ivr.recordings.files import RecordingFiles

        files = RecordingFiles.from_settings(s.settings.recordings)
        report = await RecordingMoveJob(s.db, s.settings, s.audit, files).run_once()
        print(json.dumps(report.as_json()))
        return 1 if report.failed else 0
    return body


def jobs_retire_node(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.asterisk.ari import AriClient
        from ivr.calls.inbound import CallDeps
        from ivr.jobs.node_retirement import calls_on_asterisk, retire
        from ivr.jobs.recording_moves import RecordingMoveJob
        from ivr.node_lock import node_held
        from ivr.notices.audio import verify
        from ivr.recordings.files import RecordingFiles
        from ivr.store.durable import DurableRecords

        settings = s.settings
        with node_held(settings.journal.directory, "ivr jobs retire-node"):
            await s.db.check_reachable()
            records = DurableRecords.for_node(settings, s.db, s.audit)
            ari = AriClient(settings.ari)
            unused: Any = None  # nothing here talks to AMI
            deps = CallDeps(settings, ari, unused, records, verify(settings.prompts.local_dir),
                            records.callbacks)
            moves = RecordingMoveJob(s.db, settings, s.audit,
                                     RecordingFiles.from_settings(settings.recordings))
            try:
                report = await retire(deps, moves, lambda: calls_on_asterisk(ari))
            finally:
                await ari.aclose()
        print(json.dumps(report.as_json(), indent=2))
        return 0 if not report.left else 1
    return body


def audit_verify(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        result = await s.audit.verify()
        if result.ok:
            print(f"audit chain intact: {result.checked} entries")
            return 0
        print(f"audit chain BROKEN at entry {result.entry_id}: {result.problem} "
              f"({result.checked} entries checked)")
        return 1
    return body


def recordings_get(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.store.recordings import RecordingAccess

        recording = await RecordingAccess(s.db, s.settings, s.audit).get(
            parse_uuid(args.id, "recording"), args.purpose, parse_who(args.by), args.out,
            datetime.now(UTC))
        print(f"wrote {args.out} ({recording.basis} recording, purpose {args.purpose}; "
              "the access is in the audit log)")
        return 0
    return body


def subject_export(args: argparse.Namespace) -> Callable[[Services], Awaitable[int]]:
    async def body(s: Services) -> int:
        from ivr.store.subject import export_subject

        counts = await export_subject(s.db, s.audit, parse_caller(args.number, s.settings),
                                      args.out, parse_who(args.by))
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0
    return body


def run(args: argparse.Namespace) -> int:
    from ivr.jobs.node_retirement import NodeInUse
    from ivr.node_lock import NodeBusy
    from ivr.store.recordings import AccessRefused
    from ivr.store.revocations import RevocationError

    try:
        return asyncio.run(_with_services(args.command_body(args)))
    except (DpoCliError, AccessRefused, RevocationError, NodeInUse, NodeBusy) as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def leaf(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             body: Callable[[argparse.Namespace], Callable[[Services], Awaitable[int]]],
             help_: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=run, command_body=body)
        return p

    rev = sub.add_parser("revocations", help="revocations of consent (rule 8)").add_subparsers(
        dest="revocations_command", required=True, metavar="ACTION")
    add = leaf(rev, "add", revocations_add, "record a revocation; prints its id and deadline")
    add.add_argument("--caller", required=True, help="the caller's number, any form")
    add.add_argument("--via", required=True, choices=["phone", "email"])
    add.add_argument("--received-at", required=True, metavar="TIME",
                     help="when it was received (ISO 8601, local time if no zone; or now)")
    add.add_argument("--by", default="dpo", help="who recorded it")
    add.add_argument("--note")
    show = leaf(rev, "show", revocations_show, "a revocation, its deadline and certificates")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")

    jobs = sub.add_parser("jobs", help="deadline jobs").add_subparsers(
        dest="jobs_command", required=True, metavar="ACTION")
    leaf(jobs, "run-once", jobs_run_once, "delete what retention and revocations require "
         "(for cron; ivr serve runs it too)")
    leaf(jobs, "move-recordings", jobs_move_recordings, "move this node's finished "
         "recordings from its spool into the recording store, hash verified (for cron; "
         "ivr serve runs it too)")
    leaf(jobs, "retire-node", jobs_retire_node, "before this node goes for good (its "
         "ivr serve stopped, its Asterisk idle or stopped): record its journal and notes, "
         "close its calls left open, move its recordings into the store")

    audit = sub.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit_command", required=True, metavar="ACTION")
    leaf(audit, "verify", audit_verify, "check the hash chain; says where it breaks")

    recs = sub.add_parser("recordings", help="recordings (rule 7)").add_subparsers(
        dest="recordings_command", required=True, metavar="ACTION")
    get = leaf(recs, "get", recordings_get, "hand out a recording for an allowed purpose")
    get.add_argument("id")
    get.add_argument("--purpose", required=True, choices=PURPOSES)
    get.add_argument("--by", required=True, help="who asks")
    get.add_argument("--out", required=True, type=Path)

    subject = sub.add_parser("subject", help="data subject access").add_subparsers(
        dest="subject_command", required=True, metavar="ACTION")
    export = leaf(subject, "export", subject_export, "everything stored about one caller")
    export.add_argument("number")
    export.add_argument("--out", required=True, type=Path)
    export.add_argument("--by", default="dpo")
