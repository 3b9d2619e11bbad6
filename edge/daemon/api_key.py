"""The edge's own key for its local API and its MQTT commands, made on first start.

With `[api] credentials` empty the edge once accepted the hub's tenant key (`[hub]`) on its own
channels, so whoever read a signature there (a broker client, a sniffer in front of the door)
held one the hub took too (issue 24). Now those channels get a key of their own: made once in
the data directory (`api-key.toml`, 0600, beside `signatures.db`), read at every start after,
and its path (never the key) logged. The badge reader and the local API's clients sign with it;
`[api] credentials`, when set, replace it.

Its appid is the `[hub]` one (the same tenant, so clients keep the appid they send in bodies)
with a SecretId the hub does not know: the hub refuses its signatures (code 11), and the edge
never holds the hub's key for checking its own channels.
"""

from __future__ import annotations

import logging
import secrets
import tomllib
from pathlib import Path

import tomli_w

from edge.core.settings import ConfigError, make_private_once, refuse_example_key, refuse_readable_by_others
from edge.core.signature import Credential

log = logging.getLogger("edge.daemon")

FILE_NAME = "api-key.toml"
DEFAULT_APPID = "edge"  # an edge without a hub has no tenant appid to reuse


def own_credential(storage_dir: str | Path, hub_appid: str = "") -> Credential:
    """The edge's key in `storage_dir`, made there (0600) if it is not yet; ConfigError for a
    file others can read or one that is not a key."""
    path = Path(storage_dir) / FILE_NAME
    if not path.exists():
        _make(path, hub_appid or DEFAULT_APPID)
    refuse_readable_by_others(path)
    try:
        values = tomllib.loads(path.read_text())
        cred = Credential(str(values["appid"]), str(values["secret_id"]), str(values["secret_key"]))
        refuse_example_key(cred.secret_key, str(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
        # never the file's text in the message: it holds the key
        raise ConfigError(f"{path} is not a key file ({type(exc).__name__}): remove it to make a new one") from None
    if not (cred.appid and cred.secret_id and cred.secret_key.strip()):
        raise ConfigError(f"{path} lacks appid, secret_id or secret_key: remove it to make a new one")
    return cred


def _make(path: Path, appid: str) -> None:
    secret_id = "AKIDedge" + secrets.token_hex(14)
    text = (f"# The edge's own key for its local API and MQTT commands ({__name__}).\n"
            f"# Sign with it, never with the hub's key; set [api] credentials to replace it.\n"
            # quoted by tomli_w: an appid written as is with a quote in it made a file no start could read
            + tomli_w.dumps({"appid": appid, "secret_id": secret_id, "secret_key": secrets.token_urlsafe(32)}))
    if not make_private_once(path, text):
        return
    log.warning("made the local API's and MQTT commands' own key in %s (appid %s, secret_id %s): "
                "sign them with it, not with the hub's key", path, appid, secret_id)
