"""SIPp in the dockerised test PBX: ``docker compose run sipp FLOW``.

The calls are the native harness's (``testpbx.sipp``: the scenarios of ``sipp/``, filled in
the same way), timed from the prompts manifest the pbx-config one-shot built (the press
during the question and the hang-up after the notice as ``make bench`` times them), to the
numbers of the lines in the settings:

  sales              a call to the sales line that hears the notice to its end
  service-1-info     a service-line caller who presses 1 during the question (SIP INFO)
  service-1-rfc4733  the same, 1 by RFC 4733 (what real trunks send)
  service-2          a service-line caller who presses 2 (refusal)
  silence            a service-line caller who presses nothing
  callbacks          the agents' phones and the customers behind the carrier trunk,
                     answering until stopped (Ctrl-C), for ``ivr callbacks dial``
  load               service-line calls at --rate for --calls calls, half pressing 1 by SIP
                     INFO during the question, half by RFC 4733 after the notice (as bench/)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from bench.steps import Timing
from ivr.cli import explain_settings_error
from ivr.notices.audio import verify
from ivr.notices.catalogue import CatalogueError, Manifest
from ivr.policy.lines import LineKind
from ivr.settings import Settings, get_settings
from testpbx.asterisk import AGENT_PORTS, CUSTOMER_PORT
from testpbx.paths import default_paths
from testpbx.sipp import Action, Pause, Press, Sipp, SippResult, Speak

CALLER = "031555100"
SILENT_HOLD_MS = 60000  # as make demo's silent caller: past the question and its repeats


@dataclass(frozen=True)
class Call:
    number: str
    actions: tuple[Action, ...]
    hold_ms: int


def first_number(settings: Settings, kind: LineKind) -> str:
    for line in settings.lines:
        if line.kind == kind:
            return line.numbers[0]
    raise SystemExit(f"sipp: no {kind} line in the settings")


def calls(settings: Settings, manifest: Manifest) -> dict[str, Call]:
    """Each single-call flow, timed from the notices as they were built."""
    timing = Timing.of([s.duration_ms for s in manifest.notice_segments("service")])
    sales_ms = sum(s.duration_ms for s in manifest.notice_segments("sales"))
    service = first_number(settings, LineKind.SERVICE)
    during = Pause(timing.question_ms)
    rest = timing.call_ms - timing.question_ms
    return {
        "sales": Call(first_number(settings, LineKind.SALES), (), sales_ms + 4000),
        "service-1-info": Call(service, (during, Press("1", "info")), rest),
        "service-1-rfc4733": Call(service, (during, Press("1", "rfc4733")), rest),
        "service-2": Call(service, (during, Press("2", "info")), rest),
        "silence": Call(service, (), SILENT_HOLD_MS),
    }


def report(name: str, result: SippResult) -> bool:
    print(f"sipp: {name} {'completed' if result.ok else 'FAILED'} (exit {result.returncode}; "
          f"log {result.log})", flush=True)
    if not result.ok:
        print(result.errors()[-2000:], file=sys.stderr)
    return result.ok


async def until_stopped(seconds: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if seconds is None:
        await stop.wait()
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def answer_callbacks(sipp: Sipp, hold_ms: int, seconds: float | None) -> bool:
    """Be agent1's and agent2's phones and the customers until stopped."""
    async with sipp.agent(AGENT_PORTS["agent1"]), sipp.agent(AGENT_PORTS["agent2"]), \
            sipp.customer(CUSTOMER_PORT, (Speak(),), hold_ms=hold_ms):
        print(f"sipp: agents' phones on 127.0.0.1:{AGENT_PORTS['agent1']} and "
              f":{AGENT_PORTS['agent2']}, customers on :{CUSTOMER_PORT}, answering; place a "
              "callback with: docker compose exec service ivr callbacks dial ID --agent agent1"
              f" (logs in {sipp.dir}; Ctrl-C stops)", flush=True)
        await until_stopped(seconds)
    return True


async def load(sipp: Sipp, settings: Settings, manifest: Manifest, rate: float,
               count: int) -> bool:
    timing = Timing.of([s.duration_ms for s in manifest.notice_segments("service")])
    service = first_number(settings, LineKind.SERVICE)
    halves = [half for half in (("info", timing.question_ms, (count + 1) // 2),
                                ("rfc4733", timing.after_notice_ms, count // 2)) if half[2]]
    limit = max(50, int(rate * (timing.call_ms / 1000 + 10)))
    timeout = int(count / rate + timing.call_ms / 1000 + 60)
    print(f"sipp: {count} calls to {service} at {rate:g} calls/s (at most {limit} at once)",
          flush=True)
    results = await asyncio.gather(*(
        sipp.call(service, caller=f"03190000{i}", actions=(Pause(at), Press("1", how)),
                  hold_ms=max(500, timing.call_ms - at), calls=n, rate=rate / 2,
                  limit=limit, timeout_s=timeout)
        for i, (how, at, n) in enumerate(halves)))
    return all([report(f"load, 1 by {how}", r)
                for (how, _, _), r in zip(halves, results, strict=True)])


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="docker compose run sipp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flow", choices=["sales", "service-1-info", "service-1-rfc4733",
                                         "service-2", "silence", "callbacks", "load"])
    parser.add_argument("--caller", default=CALLER, help="the caller ID sent")
    parser.add_argument("--rate", type=float, default=5.0, help="load: calls per second")
    parser.add_argument("--calls", type=int, default=100, help="load: how many calls")
    parser.add_argument("--hold", type=int, default=20000, metavar="MS",
                        help="callbacks: how long a customer stays on the line")
    parser.add_argument("--seconds", type=float, default=None,
                        help="callbacks: stop answering after this long")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.calls < 1:
        parser.error("--rate must be above 0 and --calls at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = arguments(argv)
    try:
        settings = get_settings()
        manifest = verify(settings.prompts.local_dir)
    except ValidationError as exc:
        print(explain_settings_error(exc), file=sys.stderr)
        return 2
    except CatalogueError as exc:
        print(f"sipp: the prompts are not built ({exc}); the pbx-config one-shot builds them",
              file=sys.stderr)
        return 1
    sipp = Sipp(default_paths(), pbx=f"{settings.pbx.bind_address}:{settings.pbx.sip_port}")
    if args.flow == "callbacks":
        ok = asyncio.run(answer_callbacks(sipp, args.hold, args.seconds))
    elif args.flow == "load":
        ok = asyncio.run(load(sipp, settings, manifest, args.rate, args.calls))
    else:
        call = calls(settings, manifest)[args.flow]
        timeout = (sum(a.ms for a in call.actions if isinstance(a, Pause)) + call.hold_ms)
        result = asyncio.run(sipp.call(call.number, caller=args.caller, actions=call.actions,
                                       hold_ms=call.hold_ms, timeout_s=timeout // 1000 + 60))
        ok = report(f"{args.flow} to {call.number}", result)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
