"""``python -m testpbx.reliability``: the table of docs/reliability.md from the figures the
fault tests wrote to ``var/reliability/*.json`` (``make reliability`` runs them first).
The table sits between two markers in the page; the prose around it is kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from testpbx.paths import REPO

FIGURES = REPO / "var" / "reliability"
PAGE = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- table: written by python -m testpbx.reliability -->", "<!-- end of table -->"
ORDER = ("kill_during_notice", "kill_during_question", "kill_before_recording", "kill_in_queue",
         "kill_under_burst", "kill_during_callback", "database_outage", "asterisk_restart",
         "hostile_sip")
HEADER = ("| Fault injected | Calls placed | Completed | Recordings without basis "
          "| Decisions lost | Recovered in (s) | Test |\n|---|---:|---:|---:|---:|---:|---|")


def rows(directory: Path) -> list[dict[str, object]]:
    found = {p.stem: json.loads(p.read_text()) for p in directory.glob("*.json")}
    known = [found.pop(name) for name in ORDER if name in found]
    return known + [found[name] for name in sorted(found)]


def table(figures: list[dict[str, object]]) -> str:
    lines = [HEADER]
    for row in figures:
        recovered = "n/a" if row["recover_seconds"] is None else f"{row['recover_seconds']}"
        lines.append(f"| {row['fault']} | {row['calls_placed']} | {row['calls_completed']} "
                     f"| {row['recordings_without_basis']} | {row['decisions_lost']} "
                     f"| {recovered} | `{row['test']}` |")
    return "\n".join(lines)


def write(page: Path, figures: list[dict[str, object]]) -> None:
    text = page.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    page.write_text(f"{head}{BEGIN}\n{table(figures)}\n{END}{tail}")


def main() -> int:
    figures = rows(FIGURES)
    if not figures:
        print(f"no figures in {FIGURES}: run the fault tests first (make reliability)",
              file=sys.stderr)
        return 1
    write(PAGE, figures)
    print(f"{PAGE.relative_to(REPO)}: {len(figures)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
