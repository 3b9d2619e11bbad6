"""The stored face crops and re-embedding, written once for both stores.

A face's crop row (`face_crops`, sealed by the hub: the store sees opaque bytes) is inserted in
the face's own transaction and goes with it (ON DELETE CASCADE from `faces`), so deleting a face
or a person deletes its crop in the same transaction. Re-embedding reads the faces lacking an
embedding of a fingerprint in face_id order (a cursor, so a run works in batches) and stores
each new embedding with a change-log row: an edge already syncing that fingerprint gets it.

The SQL is written with `?` placeholders, like the rest of SqlStore.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from edge.hub.store.base import FaceRecord, StoredCrop


class FaceCropSql:
    """Part of SqlStore (edge.hub.store.sql): uses its `_sql`, `_read()`, `_write(appid)` and `_log`."""

    def _insert_crop(self, c, face: FaceRecord) -> None:
        if face.crop is not None:
            c.execute(self._sql("INSERT INTO face_crops (face_id, crop) VALUES (?, ?)"),
                      (face.face_id, bytes(face.crop)))

    def newest_face_crop(self) -> tuple[str, str, bytes] | None:
        """(appid, face_id, sealed crop) of the newest stored crop, of any appid; None without one."""
        with self._read() as c:
            row = c.execute(self._sql("SELECT f.appid, f.face_id, k.crop FROM face_crops k JOIN faces f"
                                      " ON f.face_id = k.face_id ORDER BY f.created DESC LIMIT 1")).fetchone()
        return None if row is None else (str(row[0]), str(row[1]), bytes(row[2]))

    def embedding_coverage(self, fingerprint: str) -> tuple[int, int]:
        """(faces, faces with an embedding of `fingerprint`) over every appid."""
        with self._read() as c:
            total, covered = c.execute(self._sql(
                "SELECT COUNT(*), COUNT(e.face_id) FROM faces f"
                " LEFT JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = ?"), (fingerprint,)).fetchone()
        return int(total), int(covered)

    def faces_to_embed(self, fingerprint: str, after: str, limit: int) -> list[StoredCrop]:
        """Up to `limit` faces (every appid) after face_id `after` lacking a `fingerprint` embedding."""
        with self._read() as c:
            rows = c.execute(self._sql(
                "SELECT f.appid, f.face_id, f.person_id, k.crop FROM faces f"
                " LEFT JOIN face_crops k ON k.face_id = f.face_id WHERE f.face_id > ? AND NOT EXISTS"
                " (SELECT 1 FROM embeddings e WHERE e.face_id = f.face_id AND e.fingerprint = ?)"
                " ORDER BY f.face_id LIMIT ?"), (after, fingerprint, limit)).fetchall()
        return [StoredCrop(a, f, p, None if k is None else bytes(k)) for a, f, p, k in rows]

    def add_embeddings(self, appid: str, fingerprint: str, vectors: Mapping[str, np.ndarray]) -> list[str]:
        """Store `fingerprint` embeddings of the appid's faces (face_id -> vector), each with a
        change-log row; faces deleted meanwhile or already embedded are skipped. The ids stored."""
        stored = []
        with self._write(appid) as c:
            for face_id, vector in vectors.items():
                row = c.execute(self._sql("SELECT person_id FROM faces WHERE face_id = ? AND appid = ?"),
                                (face_id, appid)).fetchone()
                if row is None:
                    continue
                cur = c.execute(self._sql(
                    "INSERT INTO embeddings (face_id, fingerprint, vector) VALUES (?, ?, ?)"
                    " ON CONFLICT (face_id, fingerprint) DO NOTHING"),
                    (face_id, fingerprint, np.asarray(vector, dtype="<f4").tobytes()))
                if cur.rowcount:
                    self._log(c, appid, "face", row[0], face_id)
                    stored.append(face_id)
        return stored
