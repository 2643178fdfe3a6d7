"""Start, check and stop the test PBX's Asterisk, run under chroot in the cached root.
A further node (testpbx/node.py) runs its own Asterisk from the same root, with its own
``asterisk.conf`` (``asterisk -C``) naming its own directories and system name."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from ivr.asterisk.conf import render
from ivr.settings import Settings
from testpbx.errors import SetupError
from testpbx.node import OWN_DIRECTORIES, Node
from testpbx.paths import REPO, Paths
from testpbx.ports import ensure_free
from testpbx.root import hosts_file

SITE = REPO / "asterisk-conf" / "testpbx"
BASELINE = REPO / "asterisk-conf" / "baseline"
AGENT_PASSWORD = "ivr-test-agent"
# SIPp instances acting as the agents' phones listen here.
AGENT_PORTS = {"agent1": 5071, "agent2": 5072}
# The SIPp instance acting as the customers reached through the carrier trunk.
CUSTOMER_PORT = 5080


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            return False
    return True


class Asterisk:
    """The test PBX's Asterisk in ``paths.root``, configured from ``settings``."""

    def __init__(self, paths: Paths, settings: Settings, baseline: bool = False,
                 realtime: bool = False) -> None:
        self.paths = paths
        self.settings = settings
        self.baseline = baseline  # the benchmark's dialplan-only flow (make bench)
        # Asterisk at SCHED_RR 10 (``-p``), as Debian's asterisk.service starts it
        self.realtime = realtime
        self.pid_file = paths.state / "asterisk.pid"
        self.console_log = paths.logs / "asterisk-console.log"
        self.etc = paths.asterisk_dir("/etc/asterisk")
        self.messages_log = paths.in_root(f"{paths.asterisk_dir('/var/log/asterisk')}"
                                          "/messages.log")

    # configuration ------------------------------------------------------------------------
    def configure(self) -> None:
        """Render asterisk-conf/ with the test site into the root, replacing what was there."""
        etc = self.paths.in_root(self.etc)
        if etc.exists():
            shutil.rmtree(etc)
        extra = {f"{name}_port": str(port) for name, port in AGENT_PORTS.items()}
        extra["agent_password"] = AGENT_PASSWORD
        extra["customer_port"] = str(CUSTOMER_PORT)
        render(self.settings, etc, SITE, extra,
               also=(BASELINE,) if self.baseline else ())
        if self.paths.node is not None:
            core = etc / "asterisk.conf"
            core.write_text(own_directories(core.read_text(), self.paths.node))
        self.paths.in_root("/etc/hosts").write_text(hosts_file())
        for inside in ("/var/log/asterisk", "/var/run/asterisk", "/var/lib/asterisk",
                       "/var/spool/asterisk", "/var/cache/asterisk"):
            self.paths.in_root(self.paths.asterisk_dir(inside)).mkdir(parents=True,
                                                                      exist_ok=True)
        for spool in (self.settings.recordings.asterisk_dir,
                      self.settings.unattended.asterisk_dir):
            self.paths.in_root(spool).mkdir(parents=True, exist_ok=True)
            os.chmod(self.paths.in_root(spool), 0o750)

    # life ---------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        if not self.pid_file.is_file():
            return None
        try:
            pid = int(self.pid_file.read_text().strip())
        except ValueError:
            return None
        return pid if pid_alive(pid) else None

    def ports(self) -> list[tuple[int, str]]:
        http_port = urlsplit(self.settings.ari.url).port or 8088
        return [(self.settings.pbx.sip_port, "udp"), (http_port, "tcp"),
                (self.settings.ami.port, "tcp")]

    def command(self) -> list[str]:
        """``asterisk`` in the root; a further node's with its own asterisk.conf (its
        directories, so also its control socket for ``-rx``)."""
        command = ["chroot", str(self.paths.root), "/usr/sbin/asterisk"]
        if self.paths.node is not None:
            command += ["-C", f"{self.etc}/asterisk.conf"]
        return command

    def start_command(self) -> list[str]:
        """In the foreground, no colour, quiet; ``-p`` (``SCHED_RR`` 10) if realtime."""
        return [*self.command(), "-f", "-n", "-q", *(["-p"] if self.realtime else [])]

    def start(self, timeout: float = 90.0) -> int:
        """Start Asterisk in the foreground of its own session; return its PID when booted."""
        if self.running_pid() is not None:
            self.stop()
        self._wait_ports_free()
        self.configure()
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("ab") as log:
            proc = subprocess.Popen(
                self.start_command(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, umask=0o027,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        self.wait_booted(proc, timeout)
        return proc.pid

    def _wait_ports_free(self, seconds: float = 10.0) -> None:
        """A PBX stopped a moment ago may hold its sockets a little longer."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                ensure_free(str(self.settings.pbx.bind_address), self.ports())
                return
            except SetupError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def cli(self, command: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command(), "-rx", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def wait_booted(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise SetupError(
                    f"Asterisk exited during start (code {proc.returncode}); see "
                    f"{self.console_log} and {self.messages_log}:\n{self._log_tail()}",
                    "fix the configuration named in the log; a broken root is rebuilt by "
                    f"deleting {self.paths.root}",
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.cli("core waitfullybooted", timeout=5).returncode == 0:
                    return
            time.sleep(0.2)
        self.stop()
        raise SetupError(
            f"Asterisk did not finish booting within {timeout:.0f} s; see {self.console_log}",
            "look for module load errors in the log",
        )

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the Asterisk this harness started (by its recorded PID). True if one ran."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cli("core stop now", timeout=5)
        deadline = time.monotonic() + timeout
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if not pid_alive(pid):
                    self.pid_file.unlink(missing_ok=True)
                    return True
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
        raise SetupError(f"Asterisk (pid {pid}) would not stop", f"kill -9 {pid}")

    def _log_tail(self, lines: int = 15) -> str:
        texts = []
        for log in (self.console_log, self.messages_log):
            if log.is_file():
                texts.extend(log.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(texts)


def own_directories(core: str, node: Node) -> str:
    """A further node's ``asterisk.conf``: its own copy of each directory Asterisk writes
    to. (Its name as the system name comes from the settings' ``node``, as on every node.)"""
    # "[directories](!)" is a template Asterisk skips (its compiled-in paths apply).
    core, found = re.subn(r"^\[directories\](\(!\))?", "[directories]", core,
                          flags=re.MULTILINE)
    if found != 1:
        raise SetupError("asterisk.conf: no [directories] section to give node "
                         f"{node.name} its own directories",
                         "keep a [directories] section in asterisk-conf/asterisk.conf")
    for key in OWN_DIRECTORIES:
        core, found = re.subn(rf"^({key}\s*=>\s*)(\S+?)/?$",
                              lambda m: m.group(1) + node.inside(m.group(2)), core,
                              flags=re.MULTILINE)
        if found != 1:
            raise SetupError(f"asterisk.conf: no single {key} line to give node "
                             f"{node.name} its own directory",
                             "keep every directory of asterisk-conf/asterisk.conf on a "
                             "line of its own")
    return core
