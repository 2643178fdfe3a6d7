"""The settings file the test PBX writes for the service (test mode, paths into the root).
A further node's file also names the node, its ports and its own spool."""

from __future__ import annotations

import os
from pathlib import Path

from ivr.settings import CONFIG_ENV, Settings, get_settings
from testpbx.paths import Paths

TEST_DATABASE_URL = "postgresql+psycopg://ivr:ivr-test-db@127.0.0.1:5432/ivr"
RECORDINGS_IN_ROOT = "/var/spool/asterisk/ivr-recordings"
UNATTENDED_IN_ROOT = "/var/spool/asterisk/ivr-unattended"
PROMPTS_IN_ROOT = "/usr/share/asterisk/sounds/ivr"


def settings_text(paths: Paths) -> str:
    node = paths.node
    recordings = RECORDINGS_IN_ROOT.replace("/var/spool/asterisk",
                                            paths.asterisk_dir("/var/spool/asterisk"))
    unattended = UNATTENDED_IN_ROOT.replace("/var/spool/asterisk",
                                            paths.asterisk_dir("/var/spool/asterisk"))
    text = f"""# Written by the test PBX harness (make up / make test): test mode, so the test
# secrets are accepted. Environment variables (IVR_...) still override each value.
mode = "test"
{f'node = "{node.name}"' if node else ""}
[database]
url = "{TEST_DATABASE_URL}"

[recordings]
asterisk_dir = "{recordings}"
local_dir = "{paths.in_root(recordings)}"

[recordings.store]
# One store for every node of the test PBX, beside their state directories (never the
# host's /var/lib/ivr).
path = "{paths.state.parent / "recording-store"}"

[unattended]
asterisk_dir = "{unattended}"
local_dir = "{paths.in_root(unattended)}"

[prompts]
local_dir = "{paths.in_root(PROMPTS_IN_ROOT)}"

[journal]
directory = "{paths.state / "journal"}"
"""
    if node is None:
        return text
    return text + f"""
[pbx]
sip_port = {node.sip_port}
rtp_start = {node.rtp_start}
rtp_end = {node.rtp_end}

[ari]
url = "http://127.0.0.1:{node.http_port}"

[ami]
port = {node.ami_port}

[fastagi]
port = {node.fastagi_port}
report_port = {node.report_port}

[web]
port = {node.web_port}
"""


def write_settings(paths: Paths) -> Settings:
    """Write the test settings file and return the settings it gives. The first node's
    file also becomes this process's (``IVR_CONFIG``); a further node's is only read, so
    that the first node stays the one ``ivr`` commands of this process talk to."""
    paths.state.mkdir(parents=True, exist_ok=True)
    paths.settings_file.write_text(settings_text(paths))
    if paths.node is None:
        os.environ[CONFIG_ENV] = str(paths.settings_file)
        return get_settings()
    return settings_of(paths.settings_file)


def settings_of(path: Path) -> Settings:
    """The settings a service started with ``IVR_CONFIG=path`` reads."""
    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(path)
    try:
        return get_settings()
    finally:
        if before is None:
            del os.environ[CONFIG_ENV]
        else:
            os.environ[CONFIG_ENV] = before
