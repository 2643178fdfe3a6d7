"""Bad setup gives one clear message with the fix, not a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testpbx.errors import SetupError
from testpbx.paths import REPO, Paths
from testpbx.ports import ensure_free
from testpbx.root import MARKER, RECIPE, ensure_root, is_usable


def test_missing_debootstrap_is_one_message_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(SetupError) as caught:
        ensure_root(Paths(cache=tmp_path / "cache", state=tmp_path / "state"),
                    tmp_path / "build.log")
    assert "debootstrap is not installed" in caught.value.problem
    assert "apt-get install debootstrap" in caught.value.fix


def test_a_root_without_marker_or_asterisk_is_not_reused(tmp_path: Path) -> None:
    """A half-built or foreign root is rebuilt, never used."""
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    assert not is_usable(root)
    (root / MARKER).write_text(RECIPE + "\n")
    assert not is_usable(root)  # the marker alone is not enough: Asterisk must run


def test_a_taken_port_names_the_port_and_the_fix() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        with pytest.raises(SetupError) as caught:
            ensure_free("127.0.0.1", [(port, "udp")])
    assert f"port {port}/udp on 127.0.0.1 is already taken" in caught.value.problem
    assert "make down" in caught.value.fix


def test_a_taken_tcp_port_is_found_too() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(SetupError):
            ensure_free("127.0.0.1", [(port, "tcp")])


def test_unreachable_database_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env |= {"IVR_MODE": "test",
            "IVR_DATABASE__URL": "postgresql+psycopg://ivr:secret@127.0.0.1:1/ivr"}
    done = subprocess.run([sys.executable, "-m", "ivr", "db", "upgrade"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot reach PostgreSQL at 127.0.0.1:1/ivr" in done.stderr
    assert "secret" not in done.stderr


def test_bad_settings_are_named_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env |= {"IVR_MODE": "test", "IVR_CONSENT__ANSWER_TIMEOUT": "soon"}
    done = subprocess.run([sys.executable, "-m", "ivr", "settings", "show"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "consent.answer_timeout" in done.stderr


def test_setup_script_refuses_without_root_with_the_fix() -> None:
    if os.geteuid() != 0:
        pytest.fail("the test suite runs as root (make test), like the test PBX")
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash",
         str(REPO / "scripts/install-system-deps.sh")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "needs root" in done.stderr and "fix:" in done.stderr


def test_asterisk_runs_at_realtime_priority_only_when_asked(tmp_path: Path) -> None:
    """``make bench --asterisk-realtime`` starts Asterisk with ``-p``, as Debian's
    asterisk.service does; the test PBX otherwise runs at normal scheduling."""
    from ivr.settings import Settings
    from testpbx.asterisk import Asterisk

    paths = Paths(cache=tmp_path / "cache", state=tmp_path / "state")
    assert "-p" not in Asterisk(paths, Settings(mode="test")).start_command()
    command = Asterisk(paths, Settings(mode="test"), realtime=True).start_command()
    assert command[:3] == ["chroot", str(paths.root), "/usr/sbin/asterisk"]
    assert command[3:] == ["-f", "-n", "-q", "-p"]


def test_the_baseline_names_its_recordings_as_the_bench_reads_them() -> None:
    """The baseline's MixMonitor file name carries the caller, the digit's time and
    MixMonitor's, in the order bench/steps.py reads them back."""
    import re

    from bench.steps import baseline_stamps

    text = (REPO / "asterisk-conf/baseline/extensions_baseline.conf").read_text()
    name = re.search(r"MixMonitor\(@@recordings_dir@@/(.+\.@@recording_format@@)\)", text)
    assert name is not None
    assert name.group(1) == ("baseline-${UNIQUEID}-${CALLERID(num)}-${DIGIT_AT}-"
                             "${RECORDING_AT}.@@recording_format@@")
    filled = (name.group(1).replace("${UNIQUEID}", "vm-1795447941.3")
              .replace("${CALLERID(num)}", "031022001").replace("${DIGIT_AT}", "100.250")
              .replace("${RECORDING_AT}", "100.262").replace("@@recording_format@@", "wav"))
    assert baseline_stamps(Path(filled)) == ("031022001", 12.0)
    assert "Set(DIGIT_AT=${STRFTIME(,UTC,%s.%3q)})" in text
    assert "Set(RECORDING_AT=${STRFTIME(,UTC,%s.%3q)})" in text
