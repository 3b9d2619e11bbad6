"""The face crops of the access log, sealed (docs/access.md#face-crops), off unless the site
enables them (`[door] log_face_crops`).

A decision's face crop (the JPEG the hub's detector would read: edge.vision.crop_jpeg) is sealed
like the hub's face crops (edge/hub/face_crops.py): AES-256-GCM, a random 96-bit nonce per crop,
and the decision's event_id as associated data, so a crop moved onto another decision's record
fails to open. What is stored: one version byte, the nonce, the ciphertext and its 16-byte tag.
The record carries only the sha256 of those sealed bytes (`detail.face_crop`): the chain covers
the hash, not the image, so a crop can be pruned or withheld while the chain still verifies, and
whoever holds a crop (the hub, when upload is enabled) can check it is the record's.

The key is derived (HKDF-SHA256) from the access log's own key (`<storage>/log-key`, 0600,
edge.daemon.log_key), which also signs the log's head and is given to nobody: the hub stores
crops it cannot open. (It was derived from the local API's key, which badge readers hold.)
"""

from __future__ import annotations

import hashlib
import os

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = b"\x01"
MAX_CROP_BYTES = 256 * 1024  # a crop_jpeg is at most 640 px on its longer side
MAX_SEALED_BYTES = 1 + NONCE_BYTES + MAX_CROP_BYTES + 16
_INFO = b"edge-verifier access-log face crop key v1"
_AAD_PREFIX = b"edge-verifier access-log face crop v1\x00"


class CropError(Exception):
    """A sealed crop that does not open with this key for this decision (wrong key, moved, altered)."""


def sha256_of(sealed: bytes) -> str:
    return hashlib.sha256(sealed).hexdigest()


class CropSeal:
    """`CropSeal.from_edge_key(secret).seal(event_id, jpeg) -> sealed`, `.open(event_id, sealed)`."""

    def __init__(self, key: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != KEY_BYTES:
            raise ValueError(f"a face crop key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_edge_key(cls, secret: bytes) -> CropSeal:
        """The crop key derived from the edge's own secret (a key of its own: the HMAC of the
        log's head never uses the same bytes as the cipher)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        if not secret:
            raise ValueError("the face crops need the edge's key")
        return cls(HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_INFO).derive(secret))

    def __repr__(self) -> str:  # never the key
        return "CropSeal(<key>)"

    @staticmethod
    def _aad(event_id: str) -> bytes:
        return _AAD_PREFIX + event_id.encode()

    def seal(self, event_id: str, jpeg: bytes) -> bytes:
        if not jpeg or len(jpeg) > MAX_CROP_BYTES:
            raise ValueError(f"a face crop is 1 to {MAX_CROP_BYTES} bytes")
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, bytes(jpeg), self._aad(event_id))

    def open(self, event_id: str, sealed: bytes) -> bytes:
        """The JPEG of that decision's face; CropError when it is not this key's crop of it."""
        from cryptography.exceptions import InvalidTag

        sealed = bytes(sealed)
        if not sealed.startswith(VERSION) or not 1 + NONCE_BYTES + 16 < len(sealed) <= MAX_SEALED_BYTES:
            raise CropError("not a sealed face crop of this version")
        try:
            return self._aead.decrypt(sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:], self._aad(event_id))
        except InvalidTag:
            raise CropError(f"the crop does not open with this key for decision {event_id[:64]}") from None
