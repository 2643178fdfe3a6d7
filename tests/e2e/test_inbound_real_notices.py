"""Each line once with the real notices of POLICY.md (about 15 s for sales, 37 s for the
service line), both calls at once: the receipt names exactly the audio that was played."""

from __future__ import annotations

import asyncio
import wave
from typing import Any

import pytest

from ivr.notices.audio import verify
from testpbx.asterisk import Asterisk
from testpbx.sipp import Pause, Press, Sipp

pytestmark = pytest.mark.pbx


async def test_rules_1_to_3_with_the_real_notices(real_service: Any, sipp: Sipp,
                                                 pbx: Asterisk) -> None:
    manifest = verify(pbx.settings.prompts.local_dir)
    question = manifest.segment("service-question")
    information = manifest.segment("service-information")
    # press 1 two seconds into the question segment
    press_at = information.duration_ms + 2000
    sales, service = await asyncio.gather(
        sipp.call("040404045", caller="031000901", hold_ms=manifest.segment(
            "sales-notice").duration_ms + 4000),
        sipp.call("040404040", caller="031000902", actions=(Pause(press_at), Press("1")),
                  hold_ms=question.duration_ms + manifest.segment(
                      "service-closing").duration_ms + 4000))
    assert sales.ok, sales.errors()
    assert service.ok, service.errors()

    for caller, decision, notice in (("031000901", "legal_basis", "sales"),
                                     ("031000902", "consent", "service")):
        record = await real_service.call_record(caller)
        assert record["decision"] == decision
        assert record["notice_completed"] is True
        played = record["prompts_played"]
        assert [p["id"] for p in played] == [s.id for s in manifest.notice_segments(notice)]
        for p in played:  # rule 3: exactly which audio, which version, when
            built = manifest.segment(p["id"])
            assert (p["version"], p["sha256"]) == (built.version, built.sha256)
            assert p["started_at"] and p["ended_at"]
        path = real_service.recording(record["file_name"])
        with wave.open(str(path)) as audio:
            assert audio.getnframes() > 8000
