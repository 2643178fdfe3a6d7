"""The ``ivr`` command.

Every failure a user can cause (bad settings, unreachable database, bad arguments) ends in
one clear message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import SettingsError

from ivr import __version__

EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(Exception):
    """A failure to report in one line."""


def explain_settings_error(exc: ValidationError) -> str:
    lines = ["configuration error:"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


# commands -----------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from ivr import logs
    from ivr.app import serve
    from ivr.node_lock import NodeBusy
    from ivr.scheduling import SchedulingError, realtime
    from ivr.settings import get_settings
    from ivr.stopping import dump_threads_unless_ended, ended

    settings = get_settings()
    logs.configure(args.log_level)
    try:
        realtime(settings.scheduling.realtime_priority)
    except SchedulingError as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()

        def stopping() -> None:
            if not stop.is_set():  # a second signal does not put the dump off
                dump_threads_unless_ended()
            stop.set()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping)
        await serve(settings, stop)

    # uvloop: the same asyncio API, a quarter less CPU per call under load (make bench).
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except NodeBusy as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        ended()  # the runner has closed: the loop's tasks, generators and threads
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    from ivr.settings import get_settings
    from ivr.store.migrate import current_revision, upgrade

    url = get_settings().database.url.get_secret_value()
    try:
        upgrade(url, args.revision)
    except CommandError as exc:  # a revision alembic cannot go to (e.g. a range "a:b")
        raise CliError(f"db upgrade {args.revision[:40]!r}: {exc}") from None
    print(f"database at revision {current_revision(url)}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from ivr.settings import get_settings
    from ivr.store.migrate import current_revision, head_revision

    current = current_revision(get_settings().database.url.get_secret_value())
    head = head_revision()
    state = "up to date" if current == head else f"behind: head is {head}; run ivr db upgrade"
    print(f"{current or 'empty (no migrations run)'} ({state})")
    return 0


def cmd_conf_render(args: argparse.Namespace) -> int:
    from ivr.asterisk.conf import render
    from ivr.settings import get_settings

    extra: dict[str, str] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set {item!r}: expected NAME=VALUE")
        extra[key] = value
    written = render(get_settings(), args.out, args.site, extra)
    print(f"wrote {len(written)} files into {args.out}")
    return 0


def cmd_prompts_build(args: argparse.Namespace) -> int:
    from ivr.notices.audio import build
    from ivr.notices.catalogue import DEFAULT_CATALOGUE, load_catalogue
    from ivr.settings import get_settings

    out = args.out or get_settings().prompts.local_dir
    manifest = build(load_catalogue(args.catalogue or DEFAULT_CATALOGUE), out, args.keep_audio)
    for s in manifest.segments:
        print(f"{s.id} v{s.version} {s.duration_ms / 1000:.1f} s sha256 {s.sha256[:16]}...")
    return 0


def cmd_prompts_verify(args: argparse.Namespace) -> int:
    from ivr.notices.audio import verify
    from ivr.settings import get_settings

    directory = args.dir or get_settings().prompts.local_dir
    manifest = verify(directory)
    print(f"{len(manifest.segments)} prompts match {directory}/manifest.json")
    return 0


def cmd_settings_show(args: argparse.Namespace) -> int:
    from ivr.settings import config_file, get_settings

    settings = get_settings()
    print(f"# settings file: {config_file() or 'none (environment and defaults)'}")
    print(settings.model_dump_json(indent=2))
    return 0


# parser -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr", description="Call-recording policy service for Asterisk.")
    parser.add_argument("--version", action="version", version=f"ivr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str,
            parent: argparse._SubParsersAction[argparse.ArgumentParser] = sub,
            ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    serve = add("serve", cmd_serve, "run the ARI application (and, later, jobs and web)")
    serve.add_argument("--log-level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION")
    up = add("upgrade", cmd_db_upgrade, "run the migrations up to REVISION", db)
    up.add_argument("revision", nargs="?", default="head")
    add("current", cmd_db_current, "show the schema revision", db)

    conf = sub.add_parser("asterisk-conf", help="Asterisk configuration").add_subparsers(
        dest="conf_command", required=True, metavar="ACTION")
    render = add("render", cmd_conf_render,
                 "render asterisk-conf/ with a site directory into OUT", conf)
    render.add_argument("--out", type=Path, required=True)
    render.add_argument("--site", type=Path, required=True,
                        help="the site's trunk, agents and queue members")
    render.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="a value for a site placeholder (repeatable)")

    prompts = sub.add_parser("prompts", help="notice audio").add_subparsers(
        dest="prompts_command", required=True, metavar="ACTION")
    build = add("build", cmd_prompts_build, "speak the notices into WAV and write the manifest",
                prompts)
    build.add_argument("--out", type=Path)
    build.add_argument("--catalogue", type=Path)
    build.add_argument("--keep-audio", action="store_true",
                       help="hash existing files (studio recordings) instead of regenerating")
    verify = add("verify", cmd_prompts_verify, "check the audio against the manifest", prompts)
    verify.add_argument("--dir", type=Path)

    from ivr.callbacks_cli import add_parser as add_callbacks

    add_callbacks(sub)
    from ivr.dpo_cli import add_parsers as add_dpo

    add_dpo(sub)
    from ivr.users_cli import add_parser as add_users

    add_users(sub)

    settings = sub.add_parser("settings", help="settings").add_subparsers(
        dest="settings_command", required=True, metavar="ACTION")
    add("show", cmd_settings_show, "print the effective settings (secrets hidden)", settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from sqlalchemy.exc import OperationalError

    from ivr.asterisk.conf import ConfigError
    from ivr.asterisk.listener import ListenerUnavailable
    from ivr.notices.catalogue import CatalogueError
    from ivr.store.database import DatabaseUnreachable
    from ivr.store.migrate import MigrationsNotFound

    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ValidationError as exc:
        print(explain_settings_error(exc), file=sys.stderr)
        return EXIT_USAGE
    except SettingsError as exc:  # an environment variable that should hold JSON does not
        print(f"configuration error:\n  {exc}: a list or a table is written as JSON in the "
              "environment, e.g. IVR_FASTAGI__ASTERISK_ADDRESSES='[\"10.0.0.8\"]'",
              file=sys.stderr)
        return EXIT_USAGE
    except (CliError, ConfigError, CatalogueError, DatabaseUnreachable, MigrationsNotFound,
            FileNotFoundError, ListenerUnavailable) as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OperationalError as exc:
        # A command that queries without checking first (the DPO's, callbacks list/show):
        # the database is down or went away; said in one line, as the others say it.
        from ivr.settings import get_settings

        url = get_settings().database.url.get_secret_value()
        print(f"ivr: {DatabaseUnreachable.from_error(url, exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
