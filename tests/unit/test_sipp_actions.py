"""The callers' SIP INFO presses as SIPp is given them (``sipp/actions/info.xml``)."""

from __future__ import annotations

import re
from pathlib import Path

from testpbx.sipp import Pause, Press, render_actions


def test_each_info_is_a_transaction_of_its_own(tmp_path: Path) -> None:
    """A 200 OK again to an INFO sent again (the PBX slow to answer the first) belongs to
    the INFO's transaction, which SIPp then takes no notice of, as a phone would: each
    INFO starts one, named by its CSeq, and its 200 OK is awaited in it."""
    xml, bye_cseq = render_actions((Press("1", "info"), Pause(500), Press("2", "info")),
                                   tmp_path)
    assert re.findall(r'start_txn="(\w+)"', xml) == ["info2", "info3"]
    assert re.findall(r'<recv response="200" response_txn="(\w+)"/>', xml) == \
        ["info2", "info3"]
    assert re.findall(r"CSeq: (\d+) INFO", xml) == ["2", "3"] and bye_cseq == 4
