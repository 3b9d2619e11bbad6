"""`edge-verifier hub edgekey --config hub.toml --edge-id ID`: a hub key for one edge.

A door's Pi hangs by the door, and whoever takes its card has the key it syncs with. A key of
the whole appid would let them enrol their own face and walk through every door of the site.
A key bound to the edge (`[[credentials]] edge_id`, edge.api.ops.EDGE_OPS) does only what an edge
does: sync, the cloud fallback, uploads and reports for that edge, model packs; with `groups`
(`--group`), for the persons of the groups that edge serves only.

This adds such a key to the hub's secrets_file (a new random SecretId and SecretKey) and prints
the edge's `[hub]` lines to put in its config; `--list` shows the hub's keys (never a secret);
`--revoke` removes every key bound to a door that was taken or replaced. The hub reads its keys
at start (systemd hands it a copy of the file): restart it after either change.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
from pathlib import Path

import tomli_w

from edge.core.settings import append_private, read_toml, require_private, write_private
from edge.core.signature import Credential


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="hub TOML whose secrets_file receives the key")
    parser.add_argument("--edge-id",
                        help="the edge's id: `edge-verifier edge-id --config edge.toml` prints it on the edge")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true",
                        help="list the hub's keys: each one's edge, appid, groups and SecretId (no secret)")
    action.add_argument("--revoke", action="store_true",
                        help="remove every key of secrets_file bound to --edge-id (a door taken or replaced)")
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
    # the fields a hub key has: `calls` limits the edge's local API keys only (written empty
    # before, which the hub's check of unknown keys then refused)
    from edge.hub.config import CredentialSection

    entry = {k: v for k, v in dataclasses.asdict(cred).items() if k in CredentialSection.model_fields
             and (v or k != "groups")}
    append_private(secrets_file, "# a hub key bound to one edge (edge-verifier hub edgekey)\n"
                                 + tomli_w.dumps({"credentials": [entry]}))
    return cred


def revoke_edge_keys(secrets_file: Path, edge_id: str) -> list[Credential]:
    """Remove every [[credentials]] of the private `secrets_file` bound to `edge_id`, the rest
    (other keys, [face_crops]) kept; the removed ones ([] when none: the file is left as it was).
    The file is written anew by tomli_w, so its comments are not kept."""
    from edge.hub.config import read_secrets_file

    require_private(secrets_file, "secrets file")
    removed = [c for c in read_secrets_file(secrets_file) if c.edge_id == edge_id]  # checked whole first
    if removed:
        data = read_toml(secrets_file)
        data["credentials"] = [c for c in data.get("credentials", []) if c.get("edge_id", "") != edge_id]
        write_private(secrets_file, "# the hub's keys (edge-verifier hub edgekey --revoke wrote this file anew)\n"
                      + tomli_w.dumps(data))
    return removed


def key_rows(settings) -> list[str]:
    """One line a key: its edge, appid, groups, SecretId and where it is written (no id holds a
    space, so the words in parentheses are no id). Never the SecretKey: this goes to a terminal."""
    in_config = {c.secret_id for c in settings.credentials}
    rows = ["edge\tappid\tgroups\tsecret_id\tin"]
    for c in settings.all_credentials():
        where = "config" if c.secret_id in in_config else "secrets_file"
        rows.append("\t".join((c.edge_id or "(whole appid)", c.appid, ",".join(c.groups) or "(every group)",
                               c.secret_id, where)))
    return rows


def run(args: argparse.Namespace) -> int:
    from edge.core.settings import ConfigError
    from edge.hub import config

    try:
        settings = config.load(args.config)
        if (args.list or args.revoke) and (args.groups or args.appid):
            raise ConfigError("--group and --appid describe a key to add: --list shows every key, --revoke "
                              "removes all of --edge-id's")
        if args.list:
            print("\n".join(key_rows(settings)))
            return 0
        if not args.edge_id:
            raise ConfigError("say which edge with --edge-id (`edge-verifier edge-id` prints it on the edge)")
        if args.revoke:
            return _revoke(settings, args.config, args.edge_id)
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


def _revoke(settings, config_path: str, edge_id: str) -> int:
    from edge.core.settings import ConfigError

    if not settings.secrets_file:
        raise ConfigError("the config names no secrets_file: edge keys live there")
    removed = revoke_edge_keys(Path(settings.secrets_file), edge_id)
    left = [c.secret_id for c in settings.credentials if c.edge_id == edge_id]
    if left:  # the config holds more than keys: not rewritten here
        print(f"edge-verifier hub edgekey: {', '.join(left)}, bound to edge {edge_id}, is written in {config_path}: "
              "remove its [[credentials]] there by hand", file=sys.stderr)
    if not removed:
        bound = sorted({c.edge_id for c in settings.all_credentials() if c.edge_id})
        print(f"edge-verifier hub edgekey: no key of {settings.secrets_file} is bound to edge {edge_id} "
              f"(bound edges: {', '.join(bound) or 'none'})", file=sys.stderr)
        return 2
    print(f"edge-verifier hub edgekey: {len(removed)} key(s) of edge {edge_id} removed from {settings.secrets_file} "
          f"({', '.join(c.secret_id for c in removed)}); restart the hub: until then it still accepts them",
          file=sys.stderr)
    return 2 if left else 0
