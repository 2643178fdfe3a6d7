"""The service's CPU priority (``[scheduling] realtime_priority``): 0 leaves the normal
scheduling; 1-99 runs the process's threads, and those they start later, at SCHED_RR;
a priority the process may not take is a clear error naming what it needs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from ivr.scheduling import SchedulingError, realtime
from ivr.settings import SchedulingSettings

PROBE = """
import os, threading
from ivr.scheduling import realtime
realtime(3)
seen = []
thread = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))
thread.start(); thread.join()
print(os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, seen[0])
"""


def test_zero_leaves_the_normal_scheduling() -> None:
    before = os.sched_getscheduler(0)
    realtime(0)
    assert os.sched_getscheduler(0) == before == os.SCHED_OTHER


@pytest.mark.parametrize("priority", [-1, 100, 1000])
def test_a_priority_out_of_range_is_refused(priority: int) -> None:
    with pytest.raises(SchedulingError, match="between 1 and 99"):
        realtime(priority)
    with pytest.raises(ValidationError, match="realtime_priority"):
        SchedulingSettings(realtime_priority=priority)


def test_the_threads_run_at_the_priority_and_so_do_those_started_later() -> None:
    """In a process of its own (the tests' own stays as it is)."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=60, check=False)
    if os.geteuid() != 0:  # no CAP_SYS_NICE: the error says what is needed
        assert "CAP_SYS_NICE" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(os.SCHED_RR), "3", str(os.SCHED_RR)]


def test_a_priority_not_allowed_says_what_the_service_needs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    with pytest.raises(SchedulingError) as refused:
        realtime(5)
    message = str(refused.value)
    assert "CAP_SYS_NICE" in message and "LimitRTPRIO=5" in message
    assert "realtime_priority = 0" in message


def test_serve_stops_at_once_when_the_priority_is_not_allowed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Before anything is connected or answered: exit status 2, the reason on stderr."""
    from ivr import cli, logs

    def refuse(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    monkeypatch.setattr(logs, "configure", lambda level: None)  # the tests' logging stays
    monkeypatch.setenv("IVR_MODE", "test")
    monkeypatch.setenv("IVR_SCHEDULING__REALTIME_PRIORITY", "7")
    assert cli.main(["serve"]) == 2
    assert "realtime priority 7 not allowed" in capsys.readouterr().err


def test_the_startup_heap_is_frozen_out_of_full_collections() -> None:
    """What start-up allocated goes to the permanent generation (a full collection does
    not scan it again); what is allocated afterwards is collected as before."""
    import gc

    from ivr.app import freeze_startup_heap

    try:
        frozen = freeze_startup_heap()
        assert frozen > 1000 and gc.get_freeze_count() == frozen
        cycle: list[object] = []
        cycle.append(cycle)
        assert gc.get_referrers(cycle)  # tracked, not frozen
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
