"""The storage interface and the records that cross it (plain dataclasses, no SQL types).

Domain rule violations (unknown person, limits reached, ...) are raised as `ApiError` with the
face API's code: the rule lives next to the data, inside the transaction that enforces it.
A storage failure (disk full, I/O error, database locked past its timeout) is ApiError -1200,
and `health()` reports it until a write succeeds again.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from pydantic import ConfigDict, Field

from edge.core.credentials import Credential
from edge.core.matcher import Enrolled
from edge.core.settings import Section
from edge.core.syncwire import Change


class Limits(Section):
    """Count limits enforced inside the mutating transactions (part of the hub's [limits])."""

    model_config = ConfigDict(frozen=True)

    faces_per_person: int = Field(20, ge=1, description="Faces per person (code -1309 beyond).")
    persons_per_group: int = Field(20000, ge=1, description="Persons per group (code -1310 beyond).")
    groups_per_appid: int = Field(5000, ge=1, description="Groups per appid (code -1311 beyond).")
    access_records_per_day: int = Field(
        50_000, ge=1000, description="Access log records one edge may upload a day, a week's backlog at once\n"
        "(code 15 beyond, the edge sends them later): a door's key taken off the wall otherwise fills\n"
        "the hub's disk at the key's request rate, for every tenant.")


@dataclass
class FaceRecord:
    """One enrolled face: geometry and quality from detection, embeddings per fingerprint."""

    face_id: str
    person_id: str
    box: tuple[int, int, int, int]  # x, y, width, height in the source image
    landmarks: list[list[float]] = field(default_factory=list)  # five (x, y)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    quality: float = 0.0  # scalar quality in [0, 1] (detector score x gate), sent by sync
    sharpness: float = 0.0
    tag: str = ""
    created: float = 0.0
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # fingerprint -> vector
    crop: bytes | None = None  # the aligned crop sealed by the hub (edge.hub.face_crops); None: not kept


@dataclass(frozen=True)
class StoredCrop:
    """A face lacking an embedding of some fingerprint, with its sealed crop (None: none kept)."""

    appid: str
    face_id: str
    person_id: str
    crop: bytes | None


@dataclass(frozen=True)
class NearIdentical:
    """The rule `add_faces` applies inside its transaction (so concurrent adds of one photo
    cannot both pass): a new face whose `fingerprint` embedding is `same` as one the person
    already has, or as an earlier face of the same call, is not stored."""

    fingerprint: str
    same: Callable[[np.ndarray, np.ndarray], bool]


@dataclass
class PersonRecord:
    person_id: str
    person_name: str
    tag: str
    group_ids: list[str]
    face_ids: list[str]


@dataclass(frozen=True)
class VerifyRecord:
    session_id: str
    appid: str
    person_id: str
    score: float
    confidence: float
    ismatch: bool
    time: float


@dataclass(frozen=True)
class SyncPage:
    """Changes in seq order; `cursor` is the last seq served (the next `since`); `rules_version`
    (asked with rules) the appid's rule document's version now, 0 for none."""

    changes: list[Change]
    cursor: int
    has_more: bool
    rules_version: int | None = None
    head: int | None = None  # the appid's newest change number (syncwire.HEAD)
    since_mark: str = ""  # syncwire.change_mark of the change at `since` ("" when there is none)
    cursor_mark: str = ""  # and of the change at `cursor`


class Store(abc.ABC):
    """Everything the hub persists, per appid. Every mutation and its change-log rows commit
    together, so the sync feed never shows half an operation."""

    # --- persons and groups -------------------------------------------------------------
    @abc.abstractmethod
    def create_person(
        self, appid: str, person_id: str, group_ids: Sequence[str], person_name: str, tag: str,
        face: FaceRecord, limits: Limits,
    ) -> int:
        """Create the person with its first face; creates missing groups. Returns groups joined.
        -1302 if it exists, -1310/-1311 at the limits."""

    @abc.abstractmethod
    def delete_person(self, appid: str, person_id: str) -> None:
        """-1303 if unknown. Its faces go too; groups left empty disappear."""

    @abc.abstractmethod
    def set_info(self, appid: str, person_id: str, person_name: str | None, tag: str | None) -> None: ...

    @abc.abstractmethod
    def get_person(self, appid: str, person_id: str) -> PersonRecord:
        """-1303 if unknown."""

    @abc.abstractmethod
    def group_ids(self, appid: str) -> list[str]: ...

    @abc.abstractmethod
    def person_ids(self, appid: str, group_id: str) -> list[str]:
        """-1306 if the group does not exist."""

    @abc.abstractmethod
    def add_groups(self, appid: str, person_id: str, group_ids: Sequence[str], limits: Limits) -> list[str]:
        """Groups newly joined (already-member ones are skipped)."""

    @abc.abstractmethod
    def remove_groups(self, appid: str, person_id: str, group_ids: Sequence[str]) -> list[str]:
        """Groups actually left; 21 if the person would be left in no group."""

    # --- credentials (card numbers a door sends the site's panel) -------------------------
    @abc.abstractmethod
    def set_credentials(self, appid: str, person_id: str, credentials: Sequence[Credential]) -> None:
        """Replace the person's credentials (empty: remove them), with a person change-log row so
        the edges get them. -1303 unknown person; 21 when one already belongs to another person
        of the appid (a card names one person)."""

    @abc.abstractmethod
    def get_credentials(self, appid: str, person_id: str) -> list[Credential]:
        """-1303 if unknown."""

    # --- faces --------------------------------------------------------------------------
    @abc.abstractmethod
    def add_faces(self, appid: str, person_id: str, faces: Sequence[FaceRecord], limits: Limits,
                  near_identical: NearIdentical | None = None) -> list[str]:
        """Store faces (all or none of those not refused as near-identical); the ids stored.
        -1303 unknown person, -1309 past the per-person limit."""

    @abc.abstractmethod
    def delete_faces(self, appid: str, person_id: str, face_ids: Sequence[str]) -> list[str]:
        """Faces of that person actually deleted."""

    @abc.abstractmethod
    def face_ids(self, appid: str, person_id: str) -> list[str]: ...

    @abc.abstractmethod
    def face(self, appid: str, face_id: str) -> FaceRecord:
        """-1305 if unknown (embeddings not loaded)."""

    @abc.abstractmethod
    def embeddings(
        self, appid: str, fingerprint: str, *, person_id: str | None = None,
        group_ids: Sequence[str] | None = None,
    ) -> list[Enrolled]:
        """The faces with an embedding of that fingerprint (of one person, or in one of the groups)."""

    @abc.abstractmethod
    def new_face_id(self) -> str:
        """A fresh, unused numeric face id (the vendor's ids are decimal strings)."""

    # --- re-embedding with another pack (edge.hub.store.crops implements them for both stores) ----
    @abc.abstractmethod
    def embedding_coverage(self, fingerprint: str) -> tuple[int, int]:
        """(faces, faces with an embedding of `fingerprint`) over every appid."""

    @abc.abstractmethod
    def faces_to_embed(self, fingerprint: str, after: str, limit: int) -> list[StoredCrop]:
        """Up to `limit` faces (every appid) after face_id `after`, in face_id order, lacking a
        `fingerprint` embedding, with their stored crops."""

    @abc.abstractmethod
    def add_embeddings(self, appid: str, fingerprint: str, vectors: dict[str, np.ndarray]) -> list[str]:
        """Store embeddings of existing faces (face_id -> vector) with their change-log rows."""

    # --- logs ---------------------------------------------------------------------------
    @abc.abstractmethod
    def log_verify(self, record: VerifyRecord) -> None: ...

    @abc.abstractmethod
    def get_verify(self, session_id: str) -> VerifyRecord | None: ...

    @abc.abstractmethod
    def trim_verify_log(self, before: float) -> int:
        """Delete verify log rows older than `before` (unix time); how many went."""

    # --- single-use signatures ------------------------------------------------------------
    @abc.abstractmethod
    def claim_signature(self, key: bytes, valid_until: float, now: float) -> bool:
        """Record a single-use signature until `valid_until`: True the first time, False for a
        replay (atomic: of two concurrent claims one wins). Entries past `valid_until` may go."""

    @abc.abstractmethod
    def last_seq(self, appid: str) -> int:
        """Highest change sequence number of the appid (0 when nothing happened)."""

    @abc.abstractmethod
    def vanished_since(self, appid: str, since: int, group_ids: Sequence[str] | None, limit: int,
                       after: str = "") -> list[str]:
        """Persons changed after `since` (gone, re-enrolled, a face removed, cards or name changed)
        whom an edge syncing those groups may hold, by person_id after `after`: what it must drop
        when this hub no longer serves its pack, as it cannot take their new state."""

    @abc.abstractmethod
    def sync_page(
        self, appid: str, since: int, fingerprint: str, group_ids: Sequence[str] | None, limit: int,
        with_rules: bool = False,
    ) -> SyncPage:
        """Changes after `since` in seq order, each with the entity's current state (or deleted
        when it is gone or outside `group_ids`, and was ever in one of them: the others' rows are
        left out). The API layer puts them on the wire. Rules changes (the appid's current rule
        document) only `with_rules` (an edge that knows them)."""

    # --- access rules (edge.hub.store.access implements them for both stores) -----------------
    @abc.abstractmethod
    def set_rules(self, appid: str, document: str, expected_version: int | None = None) -> int:
        """Store a validated rule document as the next version (with a change-log row); -1508
        when `expected_version` is given and is not the stored one."""

    @abc.abstractmethod
    def get_rules(self, appid: str) -> tuple[int, str] | None:
        """(version, canonical JSON) of the appid's rules; None when it never had any."""

    # --- the edges' access log (edge.hub.store.access) -----------------------------------------
    @abc.abstractmethod
    def trim_access_log(self, before: float) -> int:
        """Delete every appid's access records dated before `before` and their crops; how many."""

    @abc.abstractmethod
    def store_access_records(self, appid: str, edge_id: str, records: Sequence[dict]) -> tuple[int, int]:
        """Store a batch continuing the edge's hash chain (records held already are skipped);
        (stored, head seq). -1520 gap, -1521 edited, -1522 malformed: nothing stored."""

    @abc.abstractmethod
    def refuse_access_upload(self, appid: str, edge_id: str, why: str) -> None:
        """Count a refused upload on the edge's chain."""

    @abc.abstractmethod
    def access_chain(self, appid: str, edge_id: str) -> dict | None:
        """{edge_id, seq, hash, refused, last_refusal} of the edge's chain; None if unknown."""

    @abc.abstractmethod
    def access_chains(self, appid: str) -> dict[str, dict]:
        """Every edge's chain of the appid (as access_chain), by edge_id: one query for a page of doors."""

    @abc.abstractmethod
    def access_record(self, appid: str, edge_id: str, seq: int) -> dict | None:
        """One stored record of the edge's log (with its edge_id), or None."""

    @abc.abstractmethod
    def counted_claims(self, appid: str, since: float, until: float, per_edge: int,
                       person_id: str | None = None) -> list[tuple[str, float, str, str]]:
        """(person_id, at, edge_id, REFUSED or ADMITTED) of the decisions the edges' lockouts
        counted, since <= at < until, the newest `per_edge` of each edge, oldest first."""

    @abc.abstractmethod
    def search_access(self, appid: str, filters: dict[str, str], since: float | None = None,
                      until: float | None = None, after: tuple[float, str, int] | None = None,
                      limit: int = 100, newest_first: bool = False) -> tuple[list[dict], tuple[float, str, int] | None]:
        """Records matching every filter in since <= at < until, in (at, edge_id, seq) order
        after the keyset `after` (`newest_first`: reversed, before it); (records, the next keyset or None)."""

    # --- what the edges report when they sync (edge.hub.store.edges) ---------------------------
    @abc.abstractmethod
    def record_edge(self, appid: str, report) -> None:
        """Keep an edge's report (edge.hub.store.edges.EdgeReport), replacing its last one."""

    @abc.abstractmethod
    def edge_reports(self, appid: str) -> list:
        """The appid's edges' last reports (EdgeReport), by edge_id."""

    @abc.abstractmethod
    def person_last_seq(self, appid: str, person_id: str) -> int:
        """The seq of the last change naming the person (0: none)."""

    # --- lockouts lifted on the hub (edge.hub.store.claim_lifts) -------------------------------
    @abc.abstractmethod
    def lift_claims(self, appid: str, person_id: str, at: float, lifted_by: str) -> None:
        """Keep the person's latest lift of their claims' lockout, replacing the one before."""

    @abc.abstractmethod
    def claim_lifts(self, appid: str, since: float) -> dict[str, tuple[float, str]]:
        """person_id -> (time, by whom) of the lifts at or after `since`."""

    def rate_limiter(self, rate_per_s: float, burst: int):
        """A per-appid rate limiter shared by every process on this store, or None when one
        process's own (in memory, edge.api.ratelimit) is the right one (an embedded store)."""
        return None

    @abc.abstractmethod
    def health(self) -> dict:
        """{"ok": bool, ...}: ok is False while the last write failed (with "error" saying why)."""

    @abc.abstractmethod
    def close(self) -> None: ...
