"""The service's CPU priority (``[scheduling] realtime_priority``).

On a PBX whose CPU is saturated, the decision a caller waits for queues behind hundreds of
Asterisk threads: measured with the short notices at 40 calls/s on two cores, the p99
from digit to decision stored fell from 785 ms to 93 ms once the service and PostgreSQL
ran at ``SCHED_RR`` priority 5 (docs/operations.md, "CPU priority"). The service uses a
small share of the CPU (README "Capacity"), so the priority costs the PBX little.
"""

from __future__ import annotations

import os


class SchedulingError(RuntimeError):
    """The priority asked for could not be had."""


def realtime(priority: int) -> None:
    """Run this process's threads (and the threads they start) at ``SCHED_RR``
    ``priority``; 0 leaves the normal scheduling. Raises ``SchedulingError`` when the
    process may not (it needs CAP_SYS_NICE, or an RLIMIT_RTPRIO as high)."""
    if priority == 0:
        return
    if not 1 <= priority <= 99:
        raise SchedulingError(f"realtime priority {priority} is not between 1 and 99")
    try:
        for task in os.listdir("/proc/self/task"):
            os.sched_setscheduler(int(task), os.SCHED_RR, os.sched_param(priority))
    except PermissionError:
        raise SchedulingError(
            f"realtime priority {priority} not allowed: the service needs CAP_SYS_NICE "
            "(systemd: AmbientCapabilities=CAP_SYS_NICE) or LimitRTPRIO="
            f"{priority}; or set [scheduling] realtime_priority = 0") from None
