"""Run SIPp scenarios from ``sipp/`` against the test PBX, output to files, bounded in time.

Scenarios may hold ``@@name@@`` values SIPp cannot take from ``-key`` (timeouts); they are
filled in here into a copy under the run's state directory.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from testpbx.paths import REPO, Paths

SCENARIOS = REPO / "sipp"
_ports = itertools.count(0)


@dataclass
class SippResult:
    returncode: int
    log: Path
    error_log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""


class Sipp:
    """Places calls from 127.0.0.1 with SIPp. Each run gets its own SIP and media port."""

    def __init__(self, paths: Paths, pbx: str = "127.0.0.1:5060", base_port: int = 5090) -> None:
        self.paths = paths
        self.pbx = pbx
        self.base_port = base_port
        self.dir = paths.state / "sipp"

    def scenario(self, name: str, values: dict[str, str]) -> Path:
        text = (SCENARIOS / f"{name}.xml").read_text()
        text = re.sub(r"@@([a-z_]+)@@", lambda m: values[m.group(1)], text)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{name}-{'-'.join(values.values()) or 'plain'}.xml"
        path.write_text(text)
        return path

    async def call(self, number: str, caller: str = "031123456", hold_ms: int = 10000,
                   scenario: str = "caller", calls: int = 1, rate: float = 1.0,
                   limit: int = 1, timeout_s: int = 60,
                   keys: dict[str, str] | None = None) -> SippResult:
        """Place ``calls`` calls to ``number``; wait for SIPp to finish (bounded)."""
        n = next(_ports)
        sip_port = self.base_port + 2 * (n % 200)
        media_port = 30000 + 4 * (n % 1000)
        path = self.scenario(scenario, {"hold_ms": str(hold_ms)})
        stem = self.dir / f"run-{n}"
        args = ["sipp", "-sf", str(path), "-s", number, "-key", "caller", caller,
                "-m", str(calls), "-r", str(rate), "-l", str(limit),
                "-i", "127.0.0.1", "-p", str(sip_port), "-mp", str(media_port),
                "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
                "-trace_err", "-error_file", f"{stem}.errors.log",
                "-trace_stat", "-stf", f"{stem}.stat.csv"]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        args.append(self.pbx)
        log = Path(f"{stem}.log")
        with open(log, "wb") as out:  # noqa: ASYNC230 (a local file, opened once)
            proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=self.dir)
            try:
                code = await asyncio.wait_for(proc.wait(), timeout_s + 15)
            except TimeoutError:
                proc.kill()
                code = await proc.wait()
        return SippResult(code, log, Path(f"{stem}.errors.log"))
