"""``python -m testpbx COMMAND``: prepare, start, stop the native test PBX.

  prepare   build (or reuse) the Asterisk root, the test database and the prompts
  start     prepare, then start Asterisk on 127.0.0.1 and wait until it has booted
  stop      stop the Asterisk this harness started
  status    say what runs
  up        start Asterisk, migrate the database, start `ivr serve`; leave them running
  down      stop what `up` started
  demo      up, one call to each kind of number, what happened to each, down
  call      place one SIPp call to the running stack:
            call NUMBER [--caller ID] [--press DIGIT --at MS [--dtmf info|rfc4733]]
                        [--hold MS]
  --node N  (with start, stop, status, up, down, call) a further node, 2 to 5, beside the
            first: the same root, its own ports, directories and state (testpbx/node.py);
            `up --node 2` after `up` gives two nodes sharing one PostgreSQL
  transcripts  start Asterisk, record the ARI frames of three service-line calls into
            tests/unit/transcripts/ (testpbx/transcripts.py), stop Asterisk
"""

from __future__ import annotations

import argparse
import sys

from ivr.notices.audio import build
from ivr.notices.catalogue import CatalogueError, load_catalogue
from ivr.store.database import DatabaseUnreachable
from testpbx.asterisk import Asterisk
from testpbx.config import write_settings
from testpbx.database import ensure_database
from testpbx.errors import SetupError
from testpbx.node import FURTHER, further_node
from testpbx.paths import Paths, default_paths
from testpbx.root import ensure_root


def prepare(paths: Paths) -> Asterisk:
    root, built = ensure_root(paths, paths.logs / "debootstrap.log")
    print(f"testpbx: Asterisk root {'built' if built else 'reused'}: {root}", flush=True)
    settings = write_settings(paths)
    ensure_database()
    build(load_catalogue(), settings.prompts.local_dir)
    return Asterisk(paths, settings)


def place_call(paths: Paths, args: argparse.Namespace) -> int:
    import asyncio

    from testpbx.sipp import Action, Pause, Press, Sipp

    settings = write_settings(paths)
    actions: tuple[Action, ...] = ()
    if args.press:
        actions = (Pause(args.at), Press(args.press, args.dtmf))
    sipp = Sipp(paths, pbx=f"127.0.0.1:{settings.pbx.sip_port}")
    result = asyncio.run(sipp.call(args.number, caller=args.caller, actions=actions,
                                   hold_ms=args.hold))
    print(f"testpbx: call to {args.number} {'completed' if result.ok else 'FAILED'} "
          f"(SIPp log {result.log})")
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testpbx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "start", "stop", "status", "up", "down",
                                            "demo", "call", "transcripts"])
    parser.add_argument("number", nargs="?", help="for call: the number to dial")
    parser.add_argument("--caller", default="031123456")
    parser.add_argument("--press", choices=list("0123456789*#"))
    parser.add_argument("--at", type=int, default=20000, metavar="MS",
                        help="when to press, after the answer (default 20000)")
    parser.add_argument("--dtmf", choices=["info", "rfc4733"], default="info")
    parser.add_argument("--hold", type=int, default=10000, metavar="MS",
                        help="how long to stay after the actions unless the PBX hangs up")
    parser.add_argument("--node", type=int, choices=list(FURTHER), metavar="N",
                        help="a further node (2 to 5) beside the first, on its own ports")
    args = parser.parse_args(argv)
    if args.command == "call" and not args.number:
        parser.error("call needs a NUMBER")
    if args.node and args.command in ("prepare", "demo", "transcripts"):
        parser.error(f"{args.command} is for the first node only")
    paths = default_paths(further_node(args.node) if args.node else None)
    try:
        if args.command == "prepare":
            prepare(paths)
        elif args.command == "start":
            pbx = prepare(paths)
            pid = pbx.start()
            print(f"testpbx: Asterisk running (pid {pid}); console log {pbx.console_log}, "
                  f"messages {pbx.messages_log}")
        elif args.command == "stop":
            pbx = Asterisk(paths, write_settings(paths))
            stopped = pbx.stop()
            print(f"testpbx: Asterisk {'stopped' if stopped else 'was not running'}")
        elif args.command == "up":
            from testpbx.stack import describe, up

            pbx, service = up(paths)
            print(describe(pbx, service, pbx.settings))
        elif args.command == "down":
            from testpbx.stack import down

            parts = down(paths)
            print(f"testpbx: stopped {', '.join(parts)}" if parts
                  else "testpbx: nothing was running")
        elif args.command == "call":
            return place_call(paths, args)
        elif args.command == "transcripts":
            from testpbx.transcripts import record

            record(Paths(cache=paths.cache, state=paths.state.with_name("transcripts")))
        elif args.command == "demo":
            from testpbx.demo import demo

            return demo(paths)
        else:
            pbx = Asterisk(paths, write_settings(paths))
            running = pbx.running_pid()
            print(f"testpbx: Asterisk {f'running, pid {running}' if running else 'not running'}")
    except (SetupError, CatalogueError, DatabaseUnreachable) as exc:
        print(f"\ntestpbx: {exc}\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
