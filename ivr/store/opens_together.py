"""The ARI flow's calls opened together. A call is stored as it enters the application,
before anything of it is decided; the caller need not wait for that write, so the call is
answered at once and ``OpenQueue`` lets the openings of a moment gather (``LINGER_S``) and
commits them in one statement (``DurableRecords.open_many``). The call's decision, seconds
later, waits for its opening first (the decision's row refers to the call's).

A service killed in that moment leaves those calls unstored: the restart finds the callers
still in the application and stores them as it hands them on (ivr/calls/recovery.py).
"""

from __future__ import annotations

from ivr.store.journal import OpenEntry
from ivr.store.together import CommitQueue

# How long the first opening of a moment waits for others to join it.
LINGER_S = 0.1


class OpenQueue(CommitQueue[OpenEntry]):
    """Openings committed by ``run`` (a task of the service's TaskGroup), together."""

    LINGER = LINGER_S

    async def open(self, entry: OpenEntry) -> bool:
        """``False`` when the channel was stored already (a replayed StasisStart); raises
        when nothing was stored."""
        opened: bool = await self.submit(entry)
        return opened
