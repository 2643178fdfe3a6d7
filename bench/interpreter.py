"""How fast this interpreter runs the service's own Python work for one call of the
dialplan flow, with no I/O: the report parsed, the call described and named, the decision
and its proof, the row PostgreSQL takes, the end note parsed, the log line. Each step is
the service's own code (``ivr.calls.dialplan_notice``, ``ivr.store.receipts``, ``ivr.logs``).

    python -m bench.interpreter [--calls N] [--repeat R]

prints the microseconds one call took (the fastest repeat) and the interpreter, as JSON.
Run it under two interpreters on one machine, one after the other, to compare them: the
machine's speed drifts, so run each more than once."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
import uuid
from datetime import UTC, datetime

from bench.report import interpreter
from ivr.calls.dialplan_notice import DIALPLAN_CALLS, parse_end, parse_report
from ivr.calls.inbound import opened_call
from ivr.calls.notes import channel_of
from ivr.flow.dialplan_notice import receipt
from ivr.flow.inbound import Segment
from ivr.logs import JsonFormatter
from ivr.settings import Settings
from ivr.store.receipts import decision_row, json_value

PLAYED = ("service-information@1795404928.200@1795404940.310~"
          "service-question@1795404940.310@1795404943.020~")
REPORT = ("v=1&entered=1795404928.120&dialled=040404040&caller=%2B38631000925"
          f"&played={PLAYED}&digit=1&digit_at=1795404943.020&notice_end=1795404943.020")
NOTE = (f"{REPORT}&channel=node2-1795404928.7&ended=1795405001.905&decision=consent"
        "&recording=0b6f3f5e-8c2d-4f7a-b1e9-3d5a7c9e2f41.wav&recording_at=1795404943.110"
        "&mixmonitor=0x7f3a2c004b20&agent=PJSIP%2Fagent1&queue_status=&queued=1&cause=16"
        "&waiting=2&available=0")
NOTICE = [Segment("service-information"), Segment("service-question", question=True)]


def one_call(settings: Settings, formatter: logging.Formatter, n: int) -> int:
    """The service's Python work for one call; returns a size, so nothing is skipped."""
    channel = f"node2-1795404928.{n}"
    report = parse_report(REPORT)
    call_id = uuid.uuid5(DIALPLAN_CALLS, f"{settings.node}/{channel}")
    opened, line = opened_call(settings, call_id,
                               channel_of(channel, report.caller, report.dialled),
                               report.entered_at)
    assert line is not None
    decided = receipt(line.kind, NOTICE, report.heard, datetime.now(UTC))
    assert decided is not None
    row = decision_row(call_id, line.kind.value, decided, [], None, None, opened)
    size = len(json.dumps([row], default=json_value))
    record = logging.LogRecord("ivr.calls", logging.INFO, __file__, 0, "decision stored",
                               None, None)
    record.__dict__.update({"call": channel, "call_id": str(call_id),
                            "decision": decided.decision.value})
    size += len(formatter.format(record))
    ended = parse_end(NOTE)
    return size + len(ended.channel_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interpreter",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if args.calls < 1 or args.repeat < 1:
        parser.error("--calls and --repeat: at least 1")
    settings = Settings(mode="test")
    formatter = JsonFormatter()
    best = float("inf")
    for _ in range(args.repeat):
        began = time.perf_counter()
        for n in range(args.calls):
            one_call(settings, formatter, n)
        best = min(best, time.perf_counter() - began)
    print(json.dumps({"us_per_call": round(best / args.calls * 1e6, 1),
                      "python": platform.python_version(),
                      "interpreter": interpreter()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
