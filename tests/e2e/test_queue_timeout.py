"""Rule 4's reason for a missed call the queue gave up on, on the real test PBX (ARI flow).

Queue() gives up on a caller still waiting after ``[dialplan] queue_max_wait`` seconds; the
queue's dialplan then raises the ``ivr-queue`` user event with QUEUESTATUS before it hangs
up. The service follows only the events it asks Asterisk for (no variable changes), and
the missed call it stores says ``timeout``, not ``abandoned``: the caller did not give up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testpbx.asterisk import Asterisk
from testpbx.sipp import Pause, Press, Sipp

from .conftest import ServiceRunner, settings_with

pytestmark = pytest.mark.pbx

CALLER = "031000911"
QUICK_QUEUE = {"IVR_DIALPLAN__QUEUE_MAX_WAIT": "2"}

MISSED_SQL = """
SELECT m.reason, m.caller, b.status, b.notice_required, d.decision, r.mixmonitor_id,
       r.stopped_at IS NOT NULL AS stopped
FROM calls c JOIN missed_calls m ON m.call_id = c.id JOIN callbacks b ON b.id = m.callback_id
LEFT JOIN decisions d ON d.call_id = c.id LEFT JOIN recordings r ON r.call_id = c.id
WHERE c.caller_raw = :caller
"""


async def test_a_caller_the_queue_gives_up_on_is_missed_for_a_timeout(
        pbx: Asterisk, sipp: Sipp, service_runner: ServiceRunner, tmp_path: Path) -> None:
    Asterisk(pbx.paths, settings_with(pbx.paths.settings_file, QUICK_QUEUE)).configure()
    pbx.cli("dialplan reload")
    try:
        assert "Queue(${EXTEN},,,,2)" in pbx.cli("dialplan show ivr-queues").stdout
        async with service_runner.database() as url, \
                service_runner.run(url, tmp_path / "service.log", env=QUICK_QUEUE) as service:
            # the notice takes 7 s; the PBX hangs up 2 s into the queue, long before 30 s
            result = await sipp.call("040404040", caller=CALLER,
                                     actions=(Pause(3800), Press("1")), hold_ms=30000)
            assert result.ok, result.errors()
            logged = await service.wait_for_log("missed call")
            rows = await service.query(MISSED_SQL, {"caller": CALLER})
    finally:
        pbx.configure()
        pbx.cli("dialplan reload")
    assert "Queue(${EXTEN},,,,300)" in pbx.cli("dialplan show ivr-queues").stdout
    assert logged["reason"] == "timeout"
    (row,) = rows
    # recorded with consent: MixMonitor's id stored with the close, the recording stopped
    assert row.pop("mixmonitor_id")
    assert row == {"reason": "timeout", "caller": "+38631000911", "status": "open",
                   "notice_required": False, "decision": "consent", "stopped": True}
