"""``python -m testpbx.supervise -- COMMAND...``: keep COMMAND running, as systemd's
``Restart=on-failure`` does in production (deploy/ivr.service): a child that dies is
started again after a second; SIGTERM stops the child and the supervisor."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

RESTART_DELAY = 1.0


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m testpbx.supervise -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    command = argv[argv.index("--") + 1:]
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        child = subprocess.Popen(command)
        code = child.wait()
        if stopping:
            break
        print(f"supervise: {command[0]} exited with {code}; starting it again in "
              f"{RESTART_DELAY:.0f} s", file=sys.stderr, flush=True)
        time.sleep(RESTART_DELAY)
    if child is not None and child.poll() is None:
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
