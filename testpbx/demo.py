"""``make demo``: start the stack, place one SIPp call to each kind of number, print what
happened to each call, stop everything (also when a call fails)."""

from __future__ import annotations

import asyncio
import time

from testpbx.paths import Paths
from testpbx.sipp import Sipp
from testpbx.stack import Service, describe, down, up

CALLS = (
    ("sales line, national form", "040404045", "031123456"),
    ("service line, E.164 form", "+38640404040", "+38641234567"),
    ("service line, 00386 form, caller withheld", "0038640404030", "anonymous"),
    ("a number no line has", "040999999", "031123456"),
)


def demo(paths: Paths) -> int:
    pbx, service = up(paths)
    print(describe(pbx, service, pbx.settings), flush=True)
    failures = 0
    try:
        sipp = Sipp(paths, pbx=f"127.0.0.1:{pbx.settings.pbx.sip_port}")
        for title, number, caller in CALLS:
            offset = service.log.stat().st_size
            result = asyncio.run(sipp.call(number, caller=caller, hold_ms=3000))
            time.sleep(0.5)
            print(f"\n{title}: dialled {number} from {caller}")
            print(f"  SIP: {'completed' if result.ok else 'FAILED, see ' + str(result.log)}")
            failures += not result.ok
            _print_service_view(service, offset)
    finally:
        stopped = down(paths)
        print(f"\nstopped {', '.join(stopped)}")
    return 1 if failures else 0


def _print_service_view(service: Service, offset: int) -> None:
    entries = [e for e in service.entries(offset) if e.get("call")]
    if not entries:
        print("  service: the call never reached the application (dialplan sent it elsewhere)")
    for entry in entries:
        fields = ", ".join(f"{k}={entry[k]}" for k in ("dialled", "caller", "line") if k in entry)
        print(f"  service: {entry['message']} ({fields})")
