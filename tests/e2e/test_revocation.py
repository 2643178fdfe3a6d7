"""Rule 8 end to end: a consented call is recorded on the test PBX; the caller revokes;
the deletion job removes the file and certifies it. A refused call has nothing to delete."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx


async def test_rule_8_revocation_deletes_the_consented_recording(service: Any,
                                                                 sipp: Sipp) -> None:
    consented, refused = await asyncio.gather(
        sipp.call("040404040", caller="031000951", actions=(Pause(3800), Press("1")),
                  hold_ms=5000),
        sipp.call("040404030", caller="031000952", actions=(Pause(3800), Press("2")),
                  hold_ms=5000))
    assert consented.ok and refused.ok
    recorded = await service.call_record("031000951")
    path = service.recording(recorded["file_name"])
    assert path.is_file()
    assert (await service.call_record("031000952"))["file_name"] is None

    added = await service.cli("revocations", "add", "--caller", "031 000 951", "--via",
                              "phone", "--received-at", "now", "--by", "agent1")
    assert added.returncode == 0, added.stderr
    assert "covers 1 consent-based recording" in added.stdout
    revocation_id = added.stdout.split()[1]
    nothing = await service.cli("revocations", "add", "--caller", "031000952", "--via",
                                "email", "--received-at", "now")
    assert "covers 0 consent-based recording" in nothing.stdout

    job = await service.cli("jobs", "run-once")
    assert job.returncode == 0, job.stdout + job.stderr
    report = json.loads(job.stdout)
    assert report["deleted"] >= 1 and report["revocations_fulfilled"] >= 2
    assert not path.exists()  # the file is gone

    shown = json.loads((await service.cli("revocations", "show", revocation_id,
                                          "--json")).stdout)
    assert shown["status"] == "fulfilled"
    (certificate,) = shown["certificates"]
    assert certificate["file"] == recorded["file_name"] and certificate["met"] is True
    assert certificate["file_existed"] is True and len(certificate["sha256"]) == 64

    verified = await service.cli("audit", "verify")
    assert verified.returncode == 0 and "intact" in verified.stdout
