"""`edge-verifier hub edgekey --config hub.toml --edge-id ID`: a hub key for one edge.

A door's Pi hangs by the door, and whoever takes its card has the key it syncs with. A key of
the whole appid would let them enrol their own face and walk through every door of the site.
A key bound to the edge (`[[credentials]] edge_id`, edge.api.ops.EDGE_OPS) does only what an edge
does: sync, the cloud fallback, uploads and reports for that edge, model packs; with `groups`
(`--group`), for the persons of the groups that edge serves only.

This adds such a key to the hub's secrets_file (a new random SecretId and SecretKey) and prints
the edge's `[hub]` lines to put in its config. The hub reads its keys at start: restart it.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
from pathlib import Path

import tomli_w

from edge.core.settings import append_private
from edge.core.signature import Credential


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="hub TOML whose secrets_file receives the key")
    parser.add_argument("--edge-id", required=True,
                        help="the edge's id: `edge-verifier edge-id --config edge.toml` prints it on the edge")
    parser.add_argument("--appid", help="the appid of the key (default: the hub's one appid)")
    parser.add_argument("--group", action="append", default=[], dest="groups", metavar="GROUP",
                        help="a group the edge serves (its [identify] groups; repeat for each): the key then "
                        "syncs and verifies those groups' persons only (default: every group)")


def add_edge_key(secrets_file: Path, appid: str, edge_id: str, groups: tuple[str, ...] = ()) -> Credential:
    """A new key of `appid` bound to `edge_id` (and `groups`), appended to the private `secrets_file`."""
    cred = Credential(appid, "AKIDdoor" + secrets.token_hex(14), secrets.token_urlsafe(32), edge_id,
                      tuple(dict.fromkeys(groups)))
    # tomli_w quotes the values: an id may hold a quote, which written as is would break the file
    # (and the hub, which reads every key from it at start)
    entry = {k: v for k, v in dataclasses.asdict(cred).items() if v or k != "groups"}
    append_private(secrets_file, "# a hub key bound to one edge (edge-verifier hub edgekey)\n"
                                 + tomli_w.dumps({"credentials": [entry]}))
    return cred


def run(args: argparse.Namespace) -> int:
    from edge.core.settings import ConfigError
    from edge.hub import config

    try:
        settings = config.load(args.config)
        if not settings.secrets_file:
            raise ConfigError("the config names no secrets_file: set secrets_file = \"/etc/edge-verifier/"
                              "hub-secrets.toml\" (mode 0600), then run this again")
        config.CredentialSection(appid="-", secret_id="-", secret_key=secrets.token_urlsafe(32),
                                 edge_id=args.edge_id, groups=args.groups)  # checked as the hub will
        # a new secrets_file is made here, as keygen makes it
        keys = settings.all_credentials() if Path(settings.secrets_file).exists() else settings.credentials
        appids = sorted({c.appid for c in keys})
        appid = args.appid or (appids[0] if len(appids) == 1 else "")
        if not appid or appid not in appids:
            raise ConfigError(f"say which appid with --appid (this hub's: {', '.join(appids) or 'none'})")
        cred = add_edge_key(Path(settings.secrets_file), appid, args.edge_id, tuple(args.groups))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"edge-verifier hub edgekey: {exc}", file=sys.stderr)
        return 2
    scope = f"the groups {', '.join(cred.groups)}" if cred.groups else "every group"
    print(f"edge-verifier hub edgekey: a key of appid {appid} for edge {args.edge_id} ({scope}) was added to "
          f"{settings.secrets_file}; restart the hub, then give the edge these lines (its config, mode 0600):",
          file=sys.stderr)
    print(tomli_w.dumps({"hub": {"appid": cred.appid, "secret_id": cred.secret_id, "secret_key": cred.secret_key}}),
          end="")
    return 0
