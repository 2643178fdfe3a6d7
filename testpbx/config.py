"""The settings file the test PBX writes for the service (test mode, paths into the root)."""

from __future__ import annotations

import os

from ivr.settings import Settings, get_settings
from testpbx.paths import Paths

TEST_DATABASE_URL = "postgresql+psycopg://ivr:ivr-test-db@127.0.0.1:5432/ivr"
RECORDINGS_IN_ROOT = "/var/spool/asterisk/ivr-recordings"
PROMPTS_IN_ROOT = "/usr/share/asterisk/sounds/ivr"


def settings_text(paths: Paths) -> str:
    return f"""# Written by the test PBX harness (make up / make test): test mode, so the test
# secrets are accepted. Environment variables (IVR_...) still override each value.
mode = "test"

[database]
url = "{TEST_DATABASE_URL}"

[recordings]
asterisk_dir = "{RECORDINGS_IN_ROOT}"
local_dir = "{paths.in_root(RECORDINGS_IN_ROOT)}"

[prompts]
local_dir = "{paths.in_root(PROMPTS_IN_ROOT)}"

[journal]
directory = "{paths.state / "journal"}"
"""


def write_settings(paths: Paths) -> Settings:
    """Write the test settings file and make this process use it."""
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.settings_file.write_text(settings_text(paths))
    os.environ["IVR_CONFIG"] = str(paths.settings_file)
    return get_settings()
