"""This edge's id, as the hub knows it: kept in `<storage>/edge-id`, apart from any key.

The id is what a door's hub key is bound to (`hub edgekey --edge-id`), the name its access log
uploads under and its syncs report. It was read from the local API's key (`api-key.toml`, its
SecretId) every time: deleting that file to give the badge reader a new key (what the docs
say to do when one is taken) also changed the id, and the hub then refused the door's uploads
and its chain until it was bound again. The id is now written once, the first time it is
asked for (from that key's SecretId, so an edge keeps the id it had), and read from its own
file after: a new local key leaves it as it was. Not a secret (a sync shows it).
"""

from __future__ import annotations

import re
from pathlib import Path

from edge.core.settings import ConfigError, make_private_once
from edge.daemon import api_key

FILE_NAME = "edge-id"
# Within what the hub takes as an id (no space, slash or control character; 128 bytes by default).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}")


def own_edge_id(storage_dir: str | Path, hub_appid: str = "") -> str:
    """The id in `storage_dir`, written there first (from the local key's SecretId) when it
    is not yet; ConfigError for a file that holds no id."""
    path = Path(storage_dir) / FILE_NAME
    if not path.exists():
        make_private_once(path, api_key.own_credential(storage_dir, hub_appid).secret_id + "\n")
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({type(exc).__name__})") from None
    if not _ID.fullmatch(text):
        raise ConfigError(f"{path} holds no edge id: put back the id the hub's key for this door is bound to "
                          "(`edge-verifier hub edgekey --list` on the hub), or remove it to take the local key's")
    return text
