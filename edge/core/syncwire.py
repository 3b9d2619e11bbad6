"""The sync feed on the wire: each change that `/face/sync` serves as one JSON object.

The hub's API layer encodes the store's changes (`encode`), the edge's cache decodes what
arrives (`decode`): the format lives here only, so no store backend builds it.

    {"seq": 7, "type": "person", "person_id": "p1", "deleted": false,
     "person_name": "Ann", "tag": "", "group_ids": ["staff"],
     "credentials": [{"format": "h10301", "facility": 42, "number": 12345}]}
    {"seq": 8, "type": "face", "face_id": "1000000000000000001", "person_id": "p1",
     "deleted": false, "embedding": "<base64 of little-endian float32>", "quality": 0.93}

    {"seq": 9, "type": "rules", "version": 4, "rules": "<the rule document, canonical JSON text>"}

A `rules` change (edge.core.access_rules) carries the appid's whole current rule document; a hub
sends it only to an edge that asks (`rules` = 1 in the sync request), so an older edge never
meets a type it cannot read. A deleted entity (gone, outside the groups synced, or a face without an embedding of the
fingerprint asked for) carries its seq, type, ids and "deleted": true only. A person's
`credentials` (card numbers, edge.core.credentials) are its whole current set: an empty list
removes them; a hub that predates them sends none, which reads as none.

An edge may say what it is with its sync request (all optional, the hub keeps the last report
per edge for the console's doors at a glance): `edge_id` (the id its access log uploads under),
`edge_pack` (its embedder's fingerprint), `edge_liveness` (its liveness mode), `edge_door` (its
door's state in a few words), `edge_health` (ok or degraded); `since` is then the cursor it has
applied. `report_fields` builds them, `check_report` checks what arrives (short printable text).

A reporting edge may also ask for the claims the site's other doors refused on the face
(`claim_refusals_since`: a Unix time); the answer then carries them, after each person's last
admitted claim at any door or lift, so that a stolen badge's tries add up across doors
(edge.daemon.claim_lockout, edge.hub.claim_refusals):

    "claim_refusals": [{"person_id": "p1", "at": 1800000000.5, "edge_id": "AKIDedge..."}]

and the lockouts an operator lifted on the hub since then (each ends a lockout it followed and
starts the count again):

    "claim_lifts": [{"person_id": "p1", "at": 1800000100.0}]

The change records themselves (`PersonChange`, `FaceChange`) live here too: the hub's store
builds them, the edge's cache applies them, and neither role reaches into the other for them.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass

import numpy as np

from edge.core.credentials import Credential, CredentialError
from edge.core.domain import is_id


@dataclass(frozen=True)
class PersonChange:
    """A person in the sync feed: its state now, or `deleted` (gone, or outside the groups synced)."""

    seq: int
    person_id: str
    deleted: bool = False
    person_name: str = ""
    tag: str = ""
    group_ids: tuple[str, ...] = ()
    credentials: tuple[Credential, ...] = ()


@dataclass(frozen=True, eq=False)
class FaceChange:
    """A face in the sync feed: its embedding (of the fingerprint asked for) and quality now, or
    `deleted` (gone, its person not synced, or no embedding of that fingerprint)."""

    seq: int
    face_id: str
    person_id: str
    deleted: bool = False
    embedding: np.ndarray | None = None
    quality: float = 0.0


@dataclass(frozen=True)
class RulesChange:
    """The appid's access rule document as it is now (version and canonical JSON text); the
    edge validates it before using it (edge.core.access_rules.parse_rules)."""

    seq: int
    version: int
    document: str


Change = PersonChange | FaceChange | RulesChange
MAX_RULES_CHARS = 1_000_000  # a rule document is a few kB; more is not a rule document


class MalformedChange(ValueError):
    """A change from the hub that cannot be applied; the message says which and why."""


def encode(change: Change) -> dict:
    if isinstance(change, RulesChange):
        return {"seq": change.seq, "type": "rules", "version": change.version, "rules": change.document}
    if isinstance(change, PersonChange):
        data = {"seq": change.seq, "type": "person", "person_id": change.person_id, "deleted": change.deleted}
        if not change.deleted:
            data.update(person_name=change.person_name, tag=change.tag, group_ids=list(change.group_ids),
                        credentials=[c.to_json() for c in change.credentials])
        return data
    data = {"seq": change.seq, "type": "face", "face_id": change.face_id, "person_id": change.person_id,
            "deleted": change.deleted}
    if not change.deleted:
        vector = np.asarray(change.embedding, dtype="<f4").tobytes()
        data.update(embedding=base64.b64encode(vector).decode("ascii"), quality=change.quality)
    return data


def decode(data: object) -> Change:
    """The change `data` stands for, or MalformedChange."""
    if not isinstance(data, dict):  # else the error message below raised AttributeError
        raise MalformedChange(f"malformed change: {type(data).__name__}, not an object")
    try:
        kind, deleted, seq = data["type"], bool(data.get("deleted")), data.get("seq", 0)
        if kind == "person":
            person_id = str(data["person_id"])
            if deleted:
                return PersonChange(seq, person_id, deleted=True)
            credentials = data.get("credentials") or []
            if not isinstance(credentials, list):
                raise MalformedChange(f"person {person_id}: credentials is not a list")
            try:
                creds = tuple(Credential.from_json(c) for c in credentials)
            except CredentialError as exc:  # the message names the field, never the number
                raise MalformedChange(f"person {person_id}: {exc}") from None
            name, tag, groups = data.get("person_name") or "", data.get("tag") or "", data.get("group_ids") or []
            # a name that is no text failed the cache's write (not a CacheError: the page's
            # gallery was then never loaded), and a group list given as text became its letters
            if not isinstance(name, str) or not isinstance(tag, str):
                raise MalformedChange(f"person {person_id}: person_name and tag are text")
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise MalformedChange(f"person {person_id}: group_ids is a list of ids")
            return PersonChange(seq, person_id, person_name=name, tag=tag, group_ids=tuple(groups),
                                credentials=creds)
        if kind == "face":
            face_id = str(data["face_id"])
            if deleted:
                return FaceChange(seq, face_id, str(data.get("person_id", "")), deleted=True)
            vector = np.frombuffer(base64.b64decode(data["embedding"], validate=True), dtype="<f4")
            if vector.size == 0 or not np.all(np.isfinite(vector)):
                raise MalformedChange(f"face {face_id}: empty or non-finite embedding")
            return FaceChange(seq, face_id, str(data["person_id"]), embedding=vector,
                              quality=float(data.get("quality") or 0.0))
        if kind == "rules":
            version, document = data["version"], data["rules"]
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise MalformedChange("rules: version is not a positive integer")
            if not isinstance(document, str) or len(document) > MAX_RULES_CHARS:
                raise MalformedChange("rules: the document is not a string of at most 1 MB")
            return RulesChange(seq, version, document)
        raise MalformedChange(f"unknown change type {str(kind)[:32]!r}")
    except MalformedChange:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedChange(f"malformed change {data.get('seq', '?')}: {exc}") from None


# The edge's report in a sync request: field -> what it says (docs/console.md, doors at a glance).
REPORT_FIELDS = ("edge_pack", "edge_liveness", "edge_door", "edge_health")
_REPORT_TEXT = re.compile(r"[\x20-\x7e]{0,128}")  # printable ASCII: the console shows it as text
# Not sent by the edge: what the hub adds to a report, the kind of key the sync was signed with
# (edge.api.ops.EDGE_OPS): one bound to the edge, or one of the whole appid.
REPORT_KEY = "key"
KEY_EDGE, KEY_APPID = "edge", "appid"


def report_fields(pack: str, liveness: str, door: str, health: str) -> dict[str, str]:
    """The report's fields as the edge sends them (each cut to 128 printable characters)."""
    values = (pack, liveness, door, health)
    return {name: re.sub(r"[^\x20-\x7e]", "?", str(v))[:128] for name, v in zip(REPORT_FIELDS, values)}


def is_report_text(value: object) -> bool:
    """Short printable ASCII, what a report field may be."""
    return isinstance(value, str) and _REPORT_TEXT.fullmatch(value) is not None


def check_report(fields: dict) -> dict[str, str]:
    """The report fields present in a sync request, or ValueError naming the one that is not
    short printable text."""
    out = {}
    for name in REPORT_FIELDS:
        value = fields.get(name)
        if value is None:
            continue
        if not is_report_text(value):
            raise ValueError(f"{name} must be at most 128 printable ASCII characters")
        out[name] = value
    return out


# With a fingerprint the hub does not serve (code 21): the persons changed since the edge's cursor
# (deleted, out of its groups, re-enrolled, a face removed, cards or name changed), which it drops
# although it gets no page (it cannot take their new state on its pack), at most MAX_VANISHED by
# person_id; after a full list the edge asks for those after its last (VANISHED_AFTER).
VANISHED = "vanished"
VANISHED_AFTER = "vanished_after"
MAX_VANISHED = 10_000


def decode_vanished(value: object) -> list[str]:
    """The person ids of a code-21 answer's `vanished`; MalformedChange for anything else."""
    if not isinstance(value, list) or len(value) > MAX_VANISHED or not all(
            isinstance(pid, str) and 0 < len(pid.encode()) <= 128 and pid.isprintable() for pid in value):
        raise MalformedChange(f"{VANISHED} is not a list of person ids")
    return list(value)


# The claims other doors refused on the face (docs/daemon.md#a-stolen-badge-gets-a-few-tries).
# Answer to an edge that reads rules: the version of the hub's rule document now (0: none). An
# edge that has not applied (or refused) that version denies every door request until it has.
RULES_VERSION = "rules_version"
# With each page: the appid's newest change number on the hub, and the marks (when they were
# made) of its changes at the page's `since` and `cursor`. An edge keeps the mark of the change
# its cursor stands at; when the hub's change at that number is another (a hub restored from a
# backup, reinstalled at the same url, numbers its next changes again from where it was) or is
# gone, the edge empties its cache and syncs anew: changes under reused numbers were taken as
# seen, and a person deleted after the restore kept passing.
HEAD = "head"
SINCE_MARK = "since_mark"
CURSOR_MARK = "cursor_mark"


def change_mark(made_at: float | None) -> str:
    """A change's mark: the time the hub made it, to the microsecond ("" for none)."""
    return "" if made_at is None else f"{float(made_at):.6f}"

REFUSALS_SINCE = "claim_refusals_since"  # request: a Unix time, whole seconds
REFUSALS = "claim_refusals"  # answer: [{person_id, at, edge_id}]
LIFTS = "claim_lifts"  # answer: [{person_id, at}]
MAX_REFUSALS = 1000  # a hub sends at most this many (the newest): what an edge reads
# How an edge's lockout counted a claim's decision, in its access log record's detail
# (`claim_lockout`): what the hub reads the refusals from.
COUNTED, REFUSED, ADMITTED = "claim_lockout", "refused", "admitted"


def encode_refusals(refusals: list[tuple[str, float, str]]) -> list[dict]:
    """(person_id, wall time, edge_id) of each refusal, as the answer carries them."""
    return [{"person_id": p, "at": at, "edge_id": e} for p, at, e in refusals]


def encode_lifts(lifts: list[tuple[str, float]]) -> list[dict]:
    """(person_id, wall time) of each lift, as the answer carries them."""
    return [{"person_id": p, "at": at} for p, at in lifts]


def decode_refusals(data: object, name: str = REFUSALS) -> list[tuple[str, float]]:
    """(person_id, wall time) of each refusal (or lift: `name` LIFTS) an answer carries, or
    MalformedChange: a hub's answer is checked like any input (at most MAX_REFUSALS, ids of at
    most 128 characters, finite times)."""
    if not isinstance(data, list) or len(data) > MAX_REFUSALS:
        raise MalformedChange(f"{name} is not a list of at most {MAX_REFUSALS}")
    out = []
    for item in data:
        person, at = (item.get("person_id"), item.get("at")) if isinstance(item, dict) else (None, None)
        # an id (printable, no space or slash): a door key's forged record put a newline in one,
        # and the edge's log line about it became two, the second made up
        if not is_id(person):
            raise MalformedChange(f"{name}: person_id is not an id")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise MalformedChange(f"{name}: at is not a finite number")
        out.append((person, float(at)))
    return out
