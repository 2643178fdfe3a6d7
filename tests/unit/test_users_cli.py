"""`ivr users add`: bad input is one clear line and nothing is stored (no database needed
to refuse it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def users_add(tmp_path: Path, *args: str, password: str = "a-long-enough-password"
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env |= {"IVR_MODE": "test", "IVR_DATABASE__URL":
            "postgresql+psycopg://ivr:secret@127.0.0.1:1/ivr"}
    return subprocess.run([sys.executable, "-m", "ivr", "users", "add", *args], cwd=tmp_path,
                          env=env, input=password + "\n", capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("args", "password", "says"), [
    (("Bad Name", "--role", "agent", "--password-stdin"), "a-long-enough-password",
     "user name"),
    (("okname", "--role", "root", "--password-stdin"), "a-long-enough-password", "role"),
    (("okname", "--role", "agent", "--password-stdin"), "short", "password"),
    (("okname", "--role", "agent", "--agent-endpoint", "x;y", "--password-stdin"),
     "a-long-enough-password", "endpoint"),
])
def test_bad_input_is_refused_with_one_clear_line(tmp_path: Path, args: tuple[str, ...],
                                                  password: str, says: str) -> None:
    done = users_add(tmp_path, *args, password=password)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert says in done.stderr.lower()
    assert "a-long-enough-password" not in done.stderr + done.stdout
