"""`edge-verifier log verify --config edge.toml`: check the edge's access log end to end.

Every record's hash, every link, the run of numbers, and the head and anchor signatures with
the log's own key (<storage>/log-key; a log no daemon has opened since it had one: the local
API's key, <storage>/api-key.toml). Exit 0 when the chain is sound, 1 when it is not
(the problems on stdout), 2 when the log or the key cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path

from edge.core.sqlitedb import open_read_only

LOG_FILE = "access-log.db"  # in the edge's [storage] path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the edge's TOML config ([storage] path holds the log)")
    parser.add_argument("--log", help=f"the log file (default: <storage>/{LOG_FILE})")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from edge.core.settings import ConfigError
    from edge.core.sqlitedb import DamagedDatabase
    from edge.daemon.api_key import FILE_NAME, own_credential
    from edge.daemon.config import load
    from edge.daemon.log_key import FILE_NAME as LOG_KEY_FILE
    from edge.daemon.log_key import own_log_key
    from edge.door.access_log import AccessLog

    try:
        settings = load(args.config)
        storage = Path(settings.storage.path)
        # never make a new key here: it would verify nothing. A log no daemon has opened since the
        # log had a key of its own is still signed under the local API's key.
        key = own_log_key(storage, make=False)
        if key is None:
            if not (storage / FILE_NAME).exists():
                raise ConfigError(f"{storage / LOG_KEY_FILE} does not exist: the log's key is gone")
            key = own_credential(storage, settings.hub.appid).secret_key.encode()
    except ConfigError as exc:
        print(f"edge-verifier log verify: error: {exc}", file=sys.stderr)
        return 2
    path = Path(args.log) if args.log else storage / LOG_FILE
    if not path.is_file():
        print(f"edge-verifier log verify: error: {path} does not exist", file=sys.stderr)
        return 2
    # Looked at read-only first: another SQLite file passed as a sound, empty log (and got the
    # log's tables added by opening it as one)
    try:
        with contextlib.closing(open_read_only(path)) as probe:
            tables = {name for (name,) in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        print(f"edge-verifier log verify: error: {path}: {exc}: damaged or not an SQLite database", file=sys.stderr)
        return 2
    if not {"records", "meta"} <= tables:
        print(f"edge-verifier log verify: error: {path} is not an access log (no records or meta table)",
              file=sys.stderr)
        return 2
    try:
        log = AccessLog(path, key)
    except DamagedDatabase as exc:
        print(f"edge-verifier log verify: error: {path}: {exc.cause}: damaged or not an SQLite database",
              file=sys.stderr)
        return 2
    try:
        report = log.verify()
    except sqlite3.DatabaseError as exc:  # a page damaged in the middle of the walk
        print(f"edge-verifier log verify: error: {path}: {exc}: damaged", file=sys.stderr)
        return 2
    finally:
        log.close()
    if args.json:
        print(json.dumps({"log": str(path), **report.as_dict()}))
    elif report.ok:
        print(f"{path}: chain sound, {report.records} record(s) {report.first}..{report.last}")
    else:
        print(f"{path}: chain BROKEN after {report.records} sound record(s)")
        for problem in report.problems:
            print(f"  {problem}")
    return 0 if report.ok else 1
