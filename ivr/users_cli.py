"""``ivr users add``: people who may log in to the web console, each with one role.

The password never appears on the command line (where ``ps`` and the shell's history
would keep it): it is typed at a terminal, twice, or read as one line from stdin with
``--password-stdin``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from ivr.settings import get_settings


class UsersCliError(Exception):
    """A bad argument or a password that cannot be read; the message says why."""


def read_password(from_stdin: bool) -> str:
    """One line from stdin with ``--password-stdin``; otherwise asked twice at a terminal."""
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not password:
            raise UsersCliError("--password-stdin: no password on stdin (one line expected)")
        return password
    if not sys.stdin.isatty():
        raise UsersCliError("stdin is not a terminal: pass --password-stdin to read the "
                            "password from it (one line)")
    try:
        first = getpass.getpass("password: ")
        second = getpass.getpass("password again: ")
    except EOFError:
        raise UsersCliError("no password given") from None
    if first != second:
        raise UsersCliError("the two passwords differ")
    return first


def _operator() -> str:
    """Who ran the command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


async def _add(args: argparse.Namespace) -> int:
    from ivr.store.database import Database
    from ivr.web.auth import Users, check_new_user, check_password

    check_new_user(args.username, args.role, args.agent_endpoint, args.language)
    password = read_password(args.password_stdin)
    check_password(password)
    settings = get_settings()
    db = Database(settings.database)
    try:
        await db.check_reachable()
        user = await Users(db).add(args.username, password, args.role, args.agent_endpoint,
                                   args.language, actor=_operator())
    finally:
        await db.dispose()
    print(f"user {user.username} added ({user.role})")
    return 0


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import ProgrammingError

    from ivr.web.auth import UserError

    handler = {"add": _add}[args.users_command]
    try:
        return asyncio.run(handler(args))
    except (UsersCliError, UserError) as exc:
        print(f"ivr: {exc}", file=sys.stderr)
        return 1
    except ProgrammingError as exc:
        if "console_users" not in str(exc.orig):
            raise
        print("ivr: the database has no console users table yet; run: ivr db upgrade",
              file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ivr.store.models import CONSOLE_LANGUAGES, CONSOLE_ROLES

    parser = sub.add_parser("users", help="web console users")
    actions = parser.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="add a user with one role", description="Add a web console user. The "
        "password is asked for at a terminal, or read as one line from stdin with "
        "--password-stdin; it is never an argument.")
    add.add_argument("username", metavar="USERNAME",
                     help="2-64 lower-case letters, digits, '.', '_' or '-'")
    add.add_argument("--role", required=True, metavar="ROLE",
                     help=f"one of {', '.join(CONSOLE_ROLES)}")
    add.add_argument("--agent-endpoint", metavar="ENDPOINT",
                     help="an agent's PJSIP endpoint, e.g. agent1")
    add.add_argument("--language", default="sl", metavar="LANG",
                     help=f"the console's language: {' or '.join(CONSOLE_LANGUAGES)} "
                     "(default sl)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password as one line from stdin")
    add.set_defaults(handler=run)
