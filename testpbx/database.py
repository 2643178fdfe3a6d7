"""The test database: a role ``ivr`` (may create databases, for the tests) and a database
``ivr``, on the PostgreSQL at 127.0.0.1:5432. Created through the ``postgres`` superuser,
over the local socket as the ``postgres`` system user, or over TCP where trust allows it."""

from __future__ import annotations

import shutil
import subprocess

from testpbx.errors import SetupError

ROLE_SQL = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ivr') THEN
    CREATE ROLE ivr LOGIN CREATEDB PASSWORD 'ivr-test-db';
  ELSE
    ALTER ROLE ivr LOGIN CREATEDB PASSWORD 'ivr-test-db';
  END IF;
END $$;
"""


def _psql_commands() -> list[list[str]]:
    commands = []
    if shutil.which("runuser"):
        commands.append(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v",
                         "ON_ERROR_STOP=1", "-d", "postgres"])
    commands.append(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U",
                     "postgres", "-d", "postgres"])
    return commands


def _run_sql(sql: str) -> str:
    errors = []
    for command in _psql_commands():
        try:
            done = subprocess.run([*command, "-tAc", sql], capture_output=True, text=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
            continue
        if done.returncode == 0:
            return done.stdout.strip()
        errors.append(done.stderr.strip())
    raise SetupError(
        "cannot reach PostgreSQL on 127.0.0.1:5432 as its superuser to create the test "
        "role: " + " / ".join(e for e in errors if e)[:400],
        "start PostgreSQL (pg_ctlcluster 15 main start) or run scripts/install-system-deps.sh",
    )


def ensure_database() -> None:
    _run_sql(ROLE_SQL)
    if _run_sql("SELECT 1 FROM pg_database WHERE datname = 'ivr'") != "1":
        _run_sql("CREATE DATABASE ivr OWNER ivr")
