"""The aligned face crops the hub keeps to embed its faces again with another pack, sealed.

Each crop (the 112x112 BGR image the embedder reads, PNG-compressed: lossless, about half of
the raw 37,632 bytes) is sealed with AES-256-GCM under the hub's face crop key: a random 96-bit
nonce per crop, and the appid and face_id as associated data, so a crop copied onto another
face's row (or another appid's) fails to open instead of giving that face someone else's
embedding. What is stored: one version byte, the nonce, the ciphertext and its 16-byte tag.

The key lives in the hub's secrets file (`[face_crops] key`, base64 of 32 random bytes), which
the hub already requires to be private; `edge-verifier hub keygen --config hub.toml` adds one.
It never appears in logs, /health, events or error messages: only this module reads it.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import numpy as np

from edge.core.settings import append_private

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"
CROP_SHAPE = (112, 112, 3)
_AAD_PREFIX = b"edge-verifier face crop v1\x00"
MAX_SEALED_BYTES = 1 + NONCE_BYTES + 16 + 3 * 112 * 112 * 2  # a PNG never doubles its raw size


class CropError(Exception):
    """A stored crop that does not open with this key for this face (wrong key, moved, altered)."""


def new_key_text() -> str:
    """A fresh key as it is written in the secrets file."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def key_from_text(text: str) -> bytes:
    """The key from its secrets-file form; ValueError (without the value) when malformed."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("[face_crops] key is not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"[face_crops] key must be {KEY_BYTES} bytes (base64 of 32 random bytes)")
    return key


class CropCipher:
    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != KEY_BYTES:
            raise ValueError(f"a face crop key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # never the key
        return "CropCipher(<key>)"

    @staticmethod
    def _aad(appid: str, face_id: str) -> bytes:
        return _AAD_PREFIX + appid.encode() + b"\x00" + face_id.encode()

    def seal(self, appid: str, face_id: str, aligned: np.ndarray) -> bytes:
        import cv2

        if aligned.shape != CROP_SHAPE or aligned.dtype != np.uint8:
            raise ValueError(f"an aligned crop is {CROP_SHAPE} uint8, not {aligned.shape} {aligned.dtype}")
        ok, png = cv2.imencode(".png", aligned)
        if not ok:
            raise ValueError("the crop could not be encoded")
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, png.tobytes(), self._aad(appid, face_id))

    def open(self, appid: str, face_id: str, sealed: bytes) -> np.ndarray:
        """The aligned crop of that face; CropError when it is not this key's crop of that face."""
        import cv2
        from cryptography.exceptions import InvalidTag

        sealed = bytes(sealed)
        if not sealed.startswith(VERSION) or not 1 + NONCE_BYTES + 16 < len(sealed) <= MAX_SEALED_BYTES:
            raise CropError(f"face {face_id}: not a sealed crop of this version")
        nonce, body = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        try:
            png = self._aead.decrypt(nonce, body, self._aad(appid, face_id))
        except InvalidTag:
            raise CropError(f"face {face_id}: the crop does not open with this key for this face") from None
        crop = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        if crop is None or crop.shape != CROP_SHAPE:
            raise CropError(f"face {face_id}: the crop is not a {CROP_SHAPE[0]}x{CROP_SHAPE[1]} image")
        return crop


# --- the key in the hub's secrets file ------------------------------------------------------
def read_crop_key(path: str | Path) -> bytes | None:
    """The face crop key of a secrets file (checked private), None when it has none."""
    from edge.core.settings import ConfigError, read_toml, require_private

    path = Path(path)
    require_private(path, "secrets file")
    table = read_toml(path).get("face_crops")
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) != {"key"} or not isinstance(table["key"], str):
        raise ConfigError(f"{path}: [face_crops] holds exactly one string, key")
    try:
        return key_from_text(table["key"])
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def add_key(secrets_file: Path) -> bool:
    """Append a new `[face_crops] key` to the private secrets file (created 0600, its new
    directory 0700, if missing); False when it has one already: replacing it would make every
    stored crop unreadable."""
    secrets_file = Path(secrets_file)
    if secrets_file.exists() and read_crop_key(secrets_file) is not None:
        return False
    append_private(secrets_file,
                   "# AES-256-GCM key of the stored face crops (edge-verifier hub reembed). Losing it makes the\n"
                   "# crops unreadable; keep a copy with the database's backups, not beside them.\n"
                   f"[face_crops]\nkey = \"{new_key_text()}\"\n")
    return True
