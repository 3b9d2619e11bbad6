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
import os
import secrets
from pathlib import Path

from edge.core.settings import ConfigError

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
        _make(path)
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a key file ({type(exc).__name__})") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{path} is not a key file (not {KEY_BYTES} bytes)")
    return key


def _make(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:  # O_EXCL: two starts at once make one key, never half of two
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(KEY_BYTES) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("made the access log's own key in %s: back it up with the data directory, give it to nobody", path)
