"""``python -m bench.by_start <service log> <database url>``: after a bench run of the
dialplan flow, how soon each recording started after its decision was stored, split by who
started it: the service over AMI (its log says "recording started over AMI" for the
call's file) or the dialplan (every other recording). Both groups met the same load in the
same steps, so they can be compared where two runs could not (the machine's speed drifts).

stored→MixMonitor is from the service's "decision stored" line to the recording's start
as stored; digit→MixMonitor from the later of the digit and the notice's end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from bench.measure import percentile
from bench.steps import decision_log_times, started_over_ami

STARTED = text("""
SELECT r.call_id::text, r.started_at, d.digit_at, d.notice_ended_at
FROM recordings r JOIN decisions d ON d.call_id = r.call_id
WHERE r.mixmonitor_id IS NOT NULL
""")


def quantile_ms(values: list[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found, 1)


def split(path: Path, url: str) -> dict[str, dict[str, float | int | None]]:
    stored, _, _ = decision_log_times(path, 0)
    by_ami = started_over_ami(path, 0)
    with create_engine(url).connect() as connection:
        rows = connection.execute(STARTED).all()
    groups: dict[str, tuple[list[float], list[float]]] = {"ami": ([], []),
                                                         "dialplan": ([], [])}
    for call_id, started, digit_at, notice_end in rows:
        if call_id not in stored:
            continue
        after_store, after_digit = groups["ami" if call_id in by_ami else "dialplan"]
        after_store.append((started - stored[call_id]).total_seconds() * 1000)
        if digit_at is not None and notice_end is not None:
            after_digit.append((started - max(digit_at, notice_end)).total_seconds() * 1000)
    return {name: {"recordings": len(after_store),
                   "stored_to_mixmonitor_ms_p50": quantile_ms(after_store, 0.5),
                   "stored_to_mixmonitor_ms_p90": quantile_ms(after_store, 0.9),
                   "stored_to_mixmonitor_ms_p99": quantile_ms(after_store, 0.99),
                   "digit_to_mixmonitor_ms_p50": quantile_ms(after_digit, 0.5),
                   "digit_to_mixmonitor_ms_p99": quantile_ms(after_digit, 0.99)}
            for name, (after_store, after_digit) in groups.items()}


USAGE = "usage: python -m bench.by_start <service log> <bench database URL>"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    if not Path(argv[0]).is_file():
        print(f"bench.by_start: no service log at {argv[0]}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        found = split(Path(argv[0]), argv[1])
    except (SQLAlchemyError, ValueError) as exc:  # not a URL, no such database, no tables
        print(f"bench.by_start: the bench database cannot be read: "
              f"{str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
