"""The key of the edge's access log: it signs the log's head and seals its face crops. Made on
first start in the data directory (`log-key`, 0600), never handed to anyone.

It used to be the secret of `api-key.toml`, which the badge reader and every local client are
given to sign with (docs/daemon.md): whoever held a reader's key could open every sealed face
crop (the hub stores them: "crops it cannot open" was not so) and, with write access to the
file, re-sign a rewritten log. A log signed under that key before is re-signed under this one
at the first start that has it (edge.door.access_log.AccessLog's `former_key`).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from edge.core.settings import ConfigError, make_private_once, refuse_readable_by_others

log = logging.getLogger("edge.daemon")

FILE_NAME = "log-key"
KEY_BYTES = 32


def own_log_key(storage_dir: str | Path, *, make: bool = True) -> bytes | None:
    """The log's key in `storage_dir`, made there (0600) if it is not yet and `make` (None when
    it is not and not `make`); ConfigError for a file others can read or not a key."""
    path = Path(storage_dir) / FILE_NAME
    if not path.exists():
        if not make:
            return None
        if make_private_once(path, secrets.token_hex(KEY_BYTES) + "\n"):
            log.warning("made the access log's own key in %s: back it up with the data directory, give it to nobody",
                        path)
    refuse_readable_by_others(path)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a key file ({type(exc).__name__})") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path} is not a key file (not {KEY_BYTES} bytes)")
    return key

