"""``make up`` / ``make down``: the test PBX, the database schema and ``ivr serve`` as a
stack that stays running, each part logging to a file; ``down`` stops what ``up`` started,
by the PIDs it recorded."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ivr.settings import Settings
from ivr.store.migrate import upgrade
from testpbx.__main__ import prepare
from testpbx.asterisk import Asterisk, pid_alive
from testpbx.config import write_settings
from testpbx.errors import SetupError
from testpbx.paths import REPO, Paths

USER_SETTINGS = REPO / "ivr.toml"
OURS = "# Written by the test PBX harness"


class Service:
    """``ivr serve`` running in the background under a supervisor that restarts it."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.pid_file = paths.state / "service.pid"
        self.log = paths.logs / "service.log"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, timeout: float = 20.0) -> int:
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "IVR_CONFIG": str(self.paths.settings_file)}
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            # Supervised like systemd's Restart=on-failure (deploy/ivr.service).
            proc = subprocess.Popen([sys.executable, "-m", "testpbx.supervise", "--",
                                     sys.executable, "-m", "ivr", "serve"], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SetupError(f"ivr serve exited (code {proc.returncode}); see {self.log}",
                                 "fix what the log names, then make up again")
            if any(e.get("message") == "ARI connected" for e in self.entries(offset)):
                return proc.pid
            time.sleep(0.2)
        raise SetupError(f"ivr serve did not connect to ARI in {timeout:.0f} s; see {self.log}",
                         "check the ARI settings and the Asterisk log")

    def entries(self, offset: int = 0) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        with self.log.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        result = []
        for line in lines:
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    result.append(entry)
        return result

    def stop(self, timeout: float = 15.0) -> bool:
        pid = self.running_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                if not pid_alive(pid):
                    return True
                time.sleep(0.1)
        raise SetupError(f"ivr serve (pid {pid}) would not stop", f"kill -9 {pid}")


def up(paths: Paths) -> tuple[Asterisk, Service]:
    pbx = prepare(paths)
    service = Service(paths)
    if service.running_pid() is not None:
        service.stop()
    upgrade(pbx.settings.database.url.get_secret_value())
    pbx.start()
    try:
        service.start()
    except SetupError:
        pbx.stop()
        raise
    if paths.node is None and (not USER_SETTINGS.exists()
                               or USER_SETTINGS.read_text().startswith(OURS)):
        shutil.copyfile(paths.settings_file, USER_SETTINGS)
    return pbx, service


def describe(pbx: Asterisk, service: Service, settings: Settings) -> str:
    node = pbx.paths.node
    if node is not None:
        option = f" --node {node.name.removeprefix('node')}"
        where = (f"  settings      {pbx.paths.settings_file} (IVR_CONFIG=... .venv/bin/ivr "
                 f"for this node; node = {node.name})")
    else:
        option = ""
        where = (f"  settings      {USER_SETTINGS} (so .venv/bin/ivr works from here with no "
                 "environment)")
    return "\n".join([
        "stack running:",
        f"  Asterisk 22   pid {pbx.running_pid()}  SIP udp {settings.pbx.bind_address}:"
        f"{settings.pbx.sip_port}, ARI {settings.ari.url}, AMI port {settings.ami.port}",
        f"                logs {pbx.messages_log} and {pbx.console_log}",
        f"  ivr serve     pid {service.running_pid()}  log {service.log} (JSON lines)",
        f"  PostgreSQL    {settings.database.url.get_secret_value().rsplit('@', 1)[-1]}",
        f"  console       http://{settings.web.bind_address}:{settings.web.port} (a user: "
        ".venv/bin/ivr users add NAME --role dpo --password-stdin)",
        where,
        f"  call it:      .venv/bin/python -m testpbx call 040404040{option} --press 1 "
        "--at 20000",
        f"  stop it:      {'make down' if node is None else '.venv/bin/python -m testpbx down'}"
        f"{option}",
    ])


def down(paths: Paths) -> list[str]:
    stopped = []
    if Service(paths).stop():
        stopped.append("ivr serve")
    if Asterisk(paths, write_settings(paths)).stop():
        stopped.append("Asterisk")
    marker = paths.state / "started-postgresql"
    if marker.exists():
        version = marker.read_text().strip()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop"],
                       check=False, capture_output=True, timeout=60)
        marker.unlink()
        stopped.append(f"PostgreSQL {version} (make up had started it)")
    if paths.node is None and USER_SETTINGS.exists() and \
            USER_SETTINGS.read_text().startswith(OURS):
        USER_SETTINGS.unlink()
    return stopped


def service_log_path(paths: Paths) -> Path:
    return Service(paths).log
