"""Run SIPp scenarios from ``sipp/`` against the test PBX, output to files, bounded in time.

SIPp cannot take timeouts or message blocks from ``-key``: the caller scenario holds
``@@name@@`` places that are filled in here, the actions (pauses, DTMF by SIP INFO or RFC
4733) from the fragments in ``sipp/actions/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from testpbx import rfc4733
from testpbx.paths import REPO, Paths

SCENARIOS = REPO / "sipp"
_runs = itertools.count(0)


@dataclass(frozen=True)
class Pause:
    ms: int


@dataclass(frozen=True)
class Speak:
    """About nine seconds of G.711 speech (one RTP stream at a time: a later Press or
    Speak replaces it)."""


@dataclass(frozen=True)
class Press:
    """A DTMF digit, sent as SIP INFO (``info``) or as RFC 4733 RTP events (``rfc4733``)."""

    digit: str
    how: str = "info"


Action = Pause | Press | Speak


def _fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"@@([a-z_]+)@@", lambda m: values[m.group(1)], text)


def _fragment(name: str, values: dict[str, str]) -> str:
    return _fill((SCENARIOS / "actions" / f"{name}.xml").read_text().strip(), values)


def render_actions(actions: Sequence[Action], pcaps: Path) -> tuple[str, int]:
    """The XML of the actions, and the CSeq the caller's BYE must use after them. The RFC
    4733 presses are pcap files in ``pcaps``, each its own place in the call's stream."""
    parts = []
    cseq = 2
    presses = 0
    for action in actions:
        if isinstance(action, Pause):
            parts.append(_fragment("pause", {"ms": str(action.ms)}))
        elif isinstance(action, Speak):
            parts.append(_fragment("speak", {}))
        elif action.how == "info":
            parts.append(_fragment("info", {"digit": action.digit, "cseq": str(cseq)}))
            cseq += 1
        elif action.how == "rfc4733":
            pcap = rfc4733.pcap_file(pcaps, action.digit, presses)
            parts.append(_fragment("rfc4733", {"pcap": str(pcap)}))
            presses += 1
        else:
            raise ValueError(f"unknown DTMF method {action.how!r}")
    return "\n  ".join(parts), cseq


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

    def scenario(self, actions: Sequence[Action], hold_ms: int) -> Path:
        block, bye_cseq = render_actions(actions, self.dir / "dtmf")
        text = _fill((SCENARIOS / "caller.xml").read_text(),
                     {"actions": block, "hold_ms": str(hold_ms), "bye_cseq": str(bye_cseq)})
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"caller-{hashlib.sha256(text.encode()).hexdigest()[:12]}.xml"
        if not path.exists():
            path.write_text(text)
        return path

    def agent(self, port: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Be an agent's phone on ``port`` (see AGENT_PORTS) while the block runs."""
        return self.answering(SCENARIOS / "agent.xml", port)

    def customer(self, port: int, actions: Sequence[Action] = (Speak(),), hold_ms: int = 4000,
                 busy: bool = False) -> contextlib.AbstractAsyncContextManager[None]:
        """Be the customers reached through the carrier trunk while the block runs."""
        if busy:
            return self.answering(SCENARIOS / "customer-busy.xml", port)
        block, _ = render_actions(actions, self.dir / "dtmf")
        text = _fill((SCENARIOS / "customer.xml").read_text(),
                     {"actions": block, "hold_ms": str(hold_ms)})
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"customer-{hashlib.sha256(text.encode()).hexdigest()[:12]}.xml"
        path.write_text(text)
        return self.answering(path, port)

    @contextlib.asynccontextmanager
    async def answering(self, scenario: Path, port: int) -> AsyncIterator[None]:
        """Run a SIPp UAS ``scenario`` on ``port`` while the block runs."""
        self.dir.mkdir(parents=True, exist_ok=True)
        stem = self.dir / f"{scenario.stem}-{port}-{next(_runs)}"
        with open(f"{stem}.log", "wb") as out:  # noqa: ASYNC230 (a local file, opened once)
            proc = await asyncio.create_subprocess_exec(
                "sipp", "-sf", str(scenario), "-i", "127.0.0.1",
                "-p", str(port), "-mp", str(40000 + 4 * (port % 1000)), "-nostdin",
                "-trace_err", "-error_file", f"{stem}.errors.log",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd=self.dir)
        try:
            await asyncio.sleep(0.3)  # listening
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def agent_dials(self, number: str, password: str, hold_ms: int = 4000,
                          timeout_s: int = 60) -> SippResult:
        """An agent's desk phone (agent1) dials ``number`` and hangs up after ``hold_ms``."""
        text = _fill((SCENARIOS / "agent-dials.xml").read_text(), {"hold_ms": str(hold_ms)})
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"agent-dials-{hold_ms}.xml"
        path.write_text(text)
        n = next(_runs)
        return await self._run(["-sf", str(path), "-s", number, "-au", "agent1", "-ap", password,
                                "-m", "1", "-i", "127.0.0.1", "-p", str(6090 + 2 * (n % 200)),
                                "-mp", str(36000 + 4 * (n % 500)), self.pbx], timeout_s)

    async def call(self, number: str, caller: str = "031123456", hold_ms: int = 10000,
                   actions: Sequence[Action] = (), calls: int = 1, rate: float = 1.0,
                   limit: int = 1, timeout_s: int = 90) -> SippResult:
        """Place ``calls`` calls to ``number``; wait for SIPp to finish (bounded)."""
        n = next(_runs)
        sip_port = self.base_port + 2 * (n % 400)
        media_port = 30000 + 4 * (n % 2000)
        path = self.scenario(actions, hold_ms)
        return await self._run(["-sf", str(path), "-s", number, "-key", "caller", caller,
                                "-m", str(calls), "-r", str(rate), "-l", str(limit),
                                "-i", "127.0.0.1", "-p", str(sip_port), "-mp", str(media_port),
                                self.pbx], timeout_s)

    async def _run(self, args: list[str], timeout_s: int) -> SippResult:
        stem = self.dir / f"run-{next(_runs)}"
        self.dir.mkdir(parents=True, exist_ok=True)
        args = ["sipp", *args, "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
                "-trace_err", "-error_file", f"{stem}.errors.log"]
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
