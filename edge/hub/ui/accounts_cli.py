"""`edge-verifier hub user add|passwd|list|del --config hub.toml`: the console's accounts.

The password is read from a prompt (twice, not echoed) or, when standard input is not a
terminal, from its first line (for scripts: `printf '%s\\n' "$PW" | ...`); never from an argument,
which other local users could read in the process list. `passwd` is the way back in after a lost
password (no mail server needed) and ends every session of the account.
"""

from __future__ import annotations

import getpass
import json
import sys


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="user_action", required=True, metavar="add|passwd|list|del")
    add = actions.add_parser("add", help="create an account (password from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    add.add_argument("--appid", help="the appid the account acts as (default: the only one configured)")
    passwd = actions.add_parser("passwd", help="set a new password and end the account's sessions")
    passwd.add_argument("name")
    actions.add_parser("list", help="the accounts, as JSON lines (no hashes)")
    delete = actions.add_parser("del", help="delete an account (its sessions end)")
    delete.add_argument("name")
    for sub in (add, passwd, delete, actions.choices["list"]):
        sub.add_argument("--config", required=True, help="hub TOML (its [storage] holds the accounts)")


def read_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def run(args) -> int:
    from edge.core.settings import ConfigError
    from edge.hub import config
    from edge.hub.store import open_store
    from edge.hub.ui import accounts

    def fail(message: str, code: int = 2) -> int:
        print(f"edge-verifier hub user {args.user_action}: {message}", file=sys.stderr)
        return code

    try:
        settings = config.load(args.config)
        appids = sorted({c.appid for c in settings.all_credentials()})
    except ConfigError as exc:
        return fail(str(exc))
    store = open_store(settings.storage.url, settings.storage.path)
    try:
        if args.user_action == "list":
            for a in store.accounts():
                print(json.dumps({"username": a.username, "appid": a.appid, "role": a.role}))
            return 0
        if args.user_action == "del":
            if not store.delete_account(args.name):
                return fail(f"no account {args.name!r}", 1)
            print(f"deleted {args.name}; its sessions ended", file=sys.stderr)
            return 0
        if args.user_action == "add":
            appid = args.appid or (appids[0] if len(appids) == 1 else "")
            if not appid:
                return fail(f"name the account's appid with --appid (configured: {', '.join(appids) or 'none'})")
            if appid not in appids:
                return fail(f"appid {appid} has no [[credentials]] in this hub's configuration")
            accounts.add(store, args.name, appid, args.role, read_password())
            print(f"added {args.name} ({args.role}, appid {appid})", file=sys.stderr)
            return 0
        accounts.reset_password(store, args.name, read_password())
        print(f"new password set for {args.name}; every session of it has ended", file=sys.stderr)
        return 0
    except ValueError as exc:  # AccountError, PasswordError, differing passwords
        return fail(str(exc), 1)
    finally:
        store.close()
