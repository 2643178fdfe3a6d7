"""One ``ivr serve`` a node (ivr/node_lock.py): the lock is held by a live process only, a
second holder is refused with who holds it, and ``ivr serve`` and ``ivr jobs retire-node``
refuse to run while the other does. Whether Asterisk counts as stopped for a retirement:
only when nothing listens at ARI's address."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.asterisk.ari import AriClient, AriError
from ivr.cli import main
from ivr.jobs.node_retirement import NodeInUse, calls_on_asterisk
from ivr.node_lock import LOCK_NAME, NodeBusy, node_held

HOLD = ("import sys, time; from pathlib import Path; from ivr.node_lock import node_held\n"
        "with node_held(Path(sys.argv[1]), 'ivr serve'):\n"
        "    print('held', flush=True); time.sleep(60)\n")


def holder(directory: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_the_node_is_held_by_one_process_and_let_go_however_it_ends(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    process = holder(journal)
    try:
        busy = rf"ivr serve, pid {process.pid} holds this node \(lock {journal / LOCK_NAME}\)"
        with pytest.raises(NodeBusy, match=busy + ": stop it first"), \
                node_held(journal, "ivr jobs retire-node"):
            pass
    finally:
        process.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel lets go
        process.wait()
    with node_held(journal, "ivr jobs retire-node"):
        assert (journal / LOCK_NAME).read_text() == f"ivr jobs retire-node, pid {os.getpid()}\n"
        assert journal.stat().st_mode & 0o777 == 0o700
        with pytest.raises(NodeBusy), node_held(journal, "ivr serve"):  # the same process too
            pass
    with node_held(journal, "ivr serve"):
        pass
    blocked = tmp_path / "a file"
    blocked.write_text("")
    with pytest.raises(NodeBusy, match=f"the node's lock {blocked / 'journal' / LOCK_NAME} "
                                       "cannot be made: "), \
            node_held(blocked / "journal", "ivr serve"):
        pass


def test_ivr_serve_refuses_to_start_on_a_node_held_by_another_process(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    process = holder(journal)
    try:
        serve = subprocess.run(
            [sys.executable, "-m", "ivr", "serve"], capture_output=True, text=True, timeout=60,
            env={**os.environ, "IVR_JOURNAL__DIRECTORY": str(journal), "IVR_MODE": "test"},
            check=False)
    finally:
        process.kill()
        process.wait()
    assert (serve.returncode, serve.stderr) == (
        1, f"ivr serve: ivr serve, pid {process.pid} holds this node "
           f"(lock {journal / LOCK_NAME}): stop it first\n")


def test_ivr_jobs_retire_node_refuses_while_the_nodes_service_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "journal"
    monkeypatch.setenv("IVR_JOURNAL__DIRECTORY", str(journal))
    monkeypatch.setenv("IVR_MODE", "test")
    monkeypatch.setenv("IVR_DATABASE__URL", "postgresql+psycopg://x@127.0.0.1:1/x")
    process = holder(journal)
    try:
        assert main(["jobs", "retire-node"]) == 1
    finally:
        process.kill()
        process.wait()
    assert f"ivr serve, pid {process.pid} holds this node" in capsys.readouterr().err


class Ari:
    def __init__(self, failure: AriError | None) -> None:
        self.failure = failure

    async def channels(self) -> list[object]:
        if self.failure is not None:
            raise self.failure
        return [object(), object()]


async def test_asterisk_counts_as_stopped_only_when_its_ari_address_refuses() -> None:
    def ari(failure: AriError | None) -> AriClient:
        stand_in: object = Ari(failure)
        return stand_in  # type: ignore[return-value]

    assert await calls_on_asterisk(ari(None)) == 2
    refused = AriError("ARI GET /channels: cannot connect", refused=True)
    assert await calls_on_asterisk(ari(refused)) is None
    for unknown in (AriError("ARI GET /channels: TimeoutError"),
                    AriError("ARI GET /channels: 503 busy", 503)):
        with pytest.raises(NodeInUse, match="cannot tell whether this node's Asterisk has"):
            await calls_on_asterisk(ari(unknown))
