"""A PostgreSQL server of the test's own, to stop and start under load (the outage tests):
the machine's shared server is never stopped. Built with the machine's own PostgreSQL
binaries (the setup installs them), owned by the ``postgres`` user, trust authentication,
listening on 127.0.0.1 only, on a port of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from testpbx.errors import SetupError
from testpbx.ports import free_port


def binaries() -> Path:
    """The newest installed PostgreSQL server's ``bin`` directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if not found:
        raise SetupError("no PostgreSQL server binaries under /usr/lib/postgresql",
                         "install them: scripts/install-system-deps.sh (make deps)")
    return found[-1].parent


class ScratchPostgres:
    """``start()``, ``stop()`` (fast shutdown: every connection cut) and ``remove()``."""

    def __init__(self, user: str = "ivr") -> None:
        self.bin = binaries()
        self.port = free_port()
        self.user = user
        self.directory = Path(tempfile.mkdtemp(prefix="ivr-scratch-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        shutil.chown(self.directory, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-U", user, "--auth=trust",
                          "-E", "UTF8", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.user}"

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-k {self.directory} -c fsync=on")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "30", "start")

    def create_database(self) -> None:
        self._as_postgres("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                          self.user)

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30",
                          "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _as_postgres(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                check=False, cwd=self.directory)
        if result.returncode != 0:
            raise SetupError(f"{program} failed: {(result.stderr or result.stdout).strip()}",
                             f"see {self.log}")
