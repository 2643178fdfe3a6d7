"""``make demo``: start the stack, place SIPp calls to each kind of number at once (with the
real notices), print what happened to each call from the stored receipts, stop everything
(also when a call fails)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import create_engine, pool, text

from ivr.notices.audio import verify
from testpbx.paths import Paths
from testpbx.sipp import Action, Pause, Press, Sipp
from testpbx.stack import describe, down, up


@dataclass(frozen=True)
class DemoCall:
    title: str
    number: str
    caller: str
    actions: tuple[Action, ...] = ()
    hold_ms: int = 4000
    answered: bool = True  # False: the PBX is expected to refuse the call


RECEIPT = text("""
SELECT c.line_name, c.caller, c.caller_withheld, c.notice_completed, c.end_reason,
       d.decision, d.digit, d.notice_started_at, d.notice_ended_at, d.digit_at,
       r.file_name, r.expires_at
FROM calls c LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r
  ON r.call_id = c.id
WHERE c.caller_raw = :raw ORDER BY c.started_at DESC LIMIT 1""")


def demo(paths: Paths) -> int:
    pbx, service = up(paths)
    print(describe(pbx, service, pbx.settings), flush=True)
    manifest = verify(pbx.settings.prompts.local_dir)
    question_at = manifest.segment("service-information").duration_ms + 1500
    rest = sum(s.duration_ms for s in manifest.notice_segments("service")) - question_at
    calls = [
        DemoCall("sales line (national form)", "040404045", "031555001",
                 hold_ms=manifest.segment("sales-notice").duration_ms + 4000),
        DemoCall("service line (E.164 form), presses 1 by SIP INFO", "+38640404040",
                 "041555002", (Pause(question_at), Press("1")), rest + 4000),
        DemoCall("service line (00386 form), presses 2 by RFC 4733", "0038640404030",
                 "041555003", (Pause(question_at), Press("2", "rfc4733")), rest + 3000),
        DemoCall("service line, caller silent", "040404085", "041555004", (), 60000),
        DemoCall("sales line, caller hangs up during the notice", "040404045", "031555005",
                 hold_ms=3000),
        DemoCall("a number no line has", "040999999", "031555006", hold_ms=2000,
                 answered=False),
    ]
    failures = 0
    try:
        sipp = Sipp(paths, pbx=f"127.0.0.1:{pbx.settings.pbx.sip_port}")
        print(f"\nplacing {len(calls)} calls at once (the service notice lasts "
              f"{sum(s.duration_ms for s in manifest.notice_segments('service')) / 1000:.0f} s)"
              "...", flush=True)
        results = asyncio.run(_place(sipp, calls))
        time.sleep(1.0)
        engine = create_engine(pbx.settings.database.url.get_secret_value(),
                               poolclass=pool.NullPool)
        with engine.connect() as conn:
            for call, ok in zip(calls, results, strict=True):
                failures += ok is not call.answered
                row = conn.execute(RECEIPT, {"raw": call.caller}).mappings().first()
                print(f"\n{call.title}: dialled {call.number} from {call.caller}")
                outcome = {(True, True): "answered, completed",
                           (False, False): "refused by the PBX, as configured"}
                print(f"  SIP call: {outcome.get((ok, call.answered), 'FAILED')}")
                print("  " + _explain(row))
        engine.dispose()
    finally:
        stopped = down(paths)
        print(f"\nstopped {', '.join(stopped)}")
    return 1 if failures else 0


async def _place(sipp: Sipp, calls: list[DemoCall]) -> list[bool]:
    results = await asyncio.gather(*(
        sipp.call(c.number, caller=c.caller, actions=c.actions, hold_ms=c.hold_ms)
        for c in calls))
    return [r.ok for r in results]


def _explain(row: object) -> str:
    if row is None:
        return "the service stored nothing: the call never reached the application"
    r = dict(row)  # type: ignore[call-overload]
    if r["line_name"] is None:
        return "number on no line: handed to the unconfigured context, never recorded"
    heard = "heard the whole notice" if r["notice_completed"] else "left during the notice"
    decision = r["decision"] or "no decision (the caller was never told)"
    digit = f", pressed {r['digit']}" if r["digit"] else ""
    recording = (f"RECORDED to {r['file_name']} (deleted by {r['expires_at']:%Y-%m-%d})"
                 if r["file_name"] else "NOT recorded")
    return f"line {r['line_name']}: {heard}{digit}; decision {decision}; {recording}"
