"""`edge-verifier log search --config hub.toml`: search the access log the edges uploaded.

Filters (all optional, all must match): --person, --door, --edge, --decision, --outcome,
--reason, --kind, and a time range (--since/--until: ISO 8601, or epoch seconds). One JSON
object per record on stdout, oldest first; --limit caps the count (default 100), and when more
match, the cursor to pass as --after for the next page is printed on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither ISO 8601 nor epoch seconds") from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()  # naive: this machine's zone


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="hub TOML (its [storage])")
    parser.add_argument("--appid", help="the tenant (default: the only one configured)")
    for flag, dest in (("--person", "person_id"), ("--door", "door"), ("--edge", "edge_id"), ("--decision", "decision"),
                       ("--outcome", "outcome"), ("--reason", "reason"), ("--kind", "kind")):
        parser.add_argument(flag, dest=dest)
    parser.add_argument("--since", type=_time, help="from this time (ISO 8601 or epoch seconds), inclusive")
    parser.add_argument("--until", type=_time, help="to this time, exclusive")
    parser.add_argument("--limit", type=int, default=100, help="records per page (1..10000)")
    parser.add_argument("--after", help="the cursor printed by the page before")


def run(args: argparse.Namespace) -> int:
    from edge.core.access_chain import decode_cursor, encode_cursor
    from edge.core.settings import ConfigError
    from edge.hub import config
    from edge.hub.store import open_store
    from edge.hub.store.access import FILTERS

    try:
        settings = config.load(args.config)
        appids = sorted({c.appid for c in settings.all_credentials()})
        appid = args.appid or (appids[0] if len(appids) == 1 else "")
        if not appid:
            raise ConfigError(f"name the tenant with --appid (configured: {', '.join(appids) or 'none'})")
        after = decode_cursor(args.after)
    except (ConfigError, ValueError) as exc:
        print(f"edge-verifier log search: error: {exc}", file=sys.stderr)
        return 2
    if not 1 <= args.limit <= 10000:
        print("edge-verifier log search: error: --limit must be within 1..10000", file=sys.stderr)
        return 2
    filters = {name: getattr(args, name) for name in FILTERS if getattr(args, name) is not None}
    store = open_store(settings.storage.url, settings.storage.path)
    try:
        records, nxt = store.search_access(appid, filters, args.since, args.until, after, args.limit)
    finally:
        store.close()
    for record in records:
        print(json.dumps(record, sort_keys=True))
    if nxt is not None:
        print(f"more: --after {encode_cursor(nxt)}", file=sys.stderr)
    return 0
