"""`edge-verifier edge-id --config edge.toml`: this edge's id, as the hub knows it.

The id its access log uploads under and its syncs report (<storage>/edge-id, first taken from
the SecretId of its own key, <storage>/api-key.toml; not a secret: edge.daemon.edge_id). The
hub binds a key to it (`edge-verifier hub edgekey --edge-id ID`). The files are made here as
the daemon would make them at its first start; run as root, new files are given to the owner
of the storage directory (the service user), which must exist then; `[hub] appid` must be set
for a new key (it takes it, as the daemon's would).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the edge's TOML config ([storage] path holds its key)")


def run(args: argparse.Namespace) -> int:
    from edge.core.settings import ConfigError, read_toml
    from edge.daemon import api_key, edge_id
    from edge.daemon.config import load

    try:
        # The door's [hub] key is made on the hub from the id printed here: until then its
        # config holds the example's placeholder, which the daemon refuses. Not read here.
        hub = {k: v for k, v in (read_toml(args.config).get("hub") or {}).items()
               if k not in ("secret_id", "secret_key")}
        settings = load(args.config, hub=hub)
        storage = Path(settings.storage.path)
        key_file, id_file = storage / api_key.FILE_NAME, storage / edge_id.FILE_NAME
        to_make = [f for f in (key_file, id_file) if not f.exists()]
        if key_file in to_make and id_file in to_make and not settings.hub.appid:
            # the key takes it: local clients sign with the site's appid
            raise ConfigError("set [hub] appid (the site's appid on the hub) first: this edge's own key is made "
                              "with it")
        if to_make and os.geteuid() == 0 and not storage.is_dir():  # root would make them root's: the daemon locked out
            raise ConfigError(f"{storage} does not exist: make it the service user's (sudo install -d -o edge-verifier "
                              f"-g edge-verifier -m 0750 {storage}) and run this as that user (sudo -u edge-verifier "
                              "...), or run it once the daemon has started (systemd makes its state directory)")
        the_id = edge_id.own_edge_id(storage, settings.hub.appid)
        if os.geteuid() == 0:
            owner = storage.stat()
            for made in (f for f in to_make if f.exists()):
                # Given by its open descriptor, never followed: the service user owns the
                # directory and could put a symlink to /etc/shadow in the file's place between
                # its making and this, and a chown by name would hand root's file to that user.
                fd = os.open(made, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    os.fchown(fd, owner.st_uid, owner.st_gid)
                finally:
                    os.close(fd)
    except (ConfigError, OSError) as exc:
        print(f"edge-verifier edge-id: error: {exc}", file=sys.stderr)
        return 2
    print(the_id)
    return 0
