"""``python -m bench.by_start <service log> <database url>``: after a bench run of the
dialplan flow, how soon each recording started after its decision was stored, split by who
started it: the service over AMI (its log says "recording started over AMI" for the
channel) or the dialplan (every other recording). Both groups met the same load in the
same steps, so they can be compared where two runs could not (the machine's speed drifts).

stored→MixMonitor is from the service's "decision stored" line to the recording's start
as stored; digit→MixMonitor from the later of the digit and the notice's end.
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.measure import percentile

STARTED = text("""
SELECT r.call_id::text, r.started_at, d.digit_at, d.notice_ended_at
FROM recordings r JOIN decisions d ON d.call_id = r.call_id
WHERE r.mixmonitor_id IS NOT NULL
""")


def read_log(path: Path) -> tuple[dict[str, tuple[datetime, str]], set[str]]:
    """When each call's decision was stored (by call id, with its channel), and the
    channels whose recording the service started over AMI."""
    stored: dict[str, tuple[datetime, str]] = {}
    by_ami: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        with contextlib.suppress(KeyError, TypeError, ValueError):  # not the service's
            if entry.get("message") == "decision stored":
                stored[str(entry["call_id"])] = (datetime.fromisoformat(entry["time"]),
                                                 str(entry["call"]))
            elif entry.get("message") == "recording started over AMI":
                by_ami.add(str(entry["call"]))
    return stored, by_ami


def quantile_ms(values: list[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found, 1)


def split(path: Path, url: str) -> dict[str, dict[str, float | int | None]]:
    stored, by_ami = read_log(path)
    with create_engine(url).connect() as connection:
        rows = connection.execute(STARTED).all()
    groups: dict[str, tuple[list[float], list[float]]] = {"ami": ([], []),
                                                         "dialplan": ([], [])}
    for call_id, started, digit_at, notice_end in rows:
        if call_id not in stored:
            continue
        at, channel = stored[call_id]
        after_store, after_digit = groups["ami" if channel in by_ami else "dialplan"]
        after_store.append((started - at).total_seconds() * 1000)
        if digit_at is not None and notice_end is not None:
            after_digit.append((started - max(digit_at, notice_end)).total_seconds() * 1000)
    return {name: {"recordings": len(after_store),
                   "stored_to_mixmonitor_ms_p50": quantile_ms(after_store, 0.5),
                   "stored_to_mixmonitor_ms_p90": quantile_ms(after_store, 0.9),
                   "stored_to_mixmonitor_ms_p99": quantile_ms(after_store, 0.99),
                   "digit_to_mixmonitor_ms_p50": quantile_ms(after_digit, 0.5),
                   "digit_to_mixmonitor_ms_p99": quantile_ms(after_digit, 0.99)}
            for name, (after_store, after_digit) in groups.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not Path(argv[0]).is_file():
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    print(json.dumps(split(Path(argv[0]), argv[1]), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
