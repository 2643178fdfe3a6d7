"""The ARI flow's closes committed together. Each call that ends writes its close: the
call's record, the recording that ran in it, and (nobody in the call centre answered) its
missed call and callback, in one transaction. Nobody waits on that write, so ``CloseQueue``
lets the closes of a moment gather (``LINGER_S``) and commits them in one transaction
(``DurableRecords.close_many``: eleven statements whatever their number, as many as one
close alone takes). A close the transaction refuses, or while the outage journal holds
entries, is written on its own, as before.

A service killed in that moment leaves those calls open: the restart's sweep closes them
(ivr/calls/recovery.py), as it does a call whose close was under way.
"""

from __future__ import annotations

import uuid

from ivr.store.journal import CloseEntry
from ivr.store.together import CommitQueue

# How long the first close of a moment waits for others to join it.
LINGER_S = 0.1


class CloseQueue(CommitQueue[CloseEntry]):
    """Closes committed by ``run`` (a task of the service's TaskGroup), together."""

    LINGER = LINGER_S

    async def close(self, entry: CloseEntry) -> uuid.UUID | None:
        """The callback the call's missed call opened or joined (``None``: none, withheld,
        or journalled); raises when nothing was stored."""
        callback: uuid.UUID | None = await self.submit(entry)
        return callback
