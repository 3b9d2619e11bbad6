"""The access log's hash chain: one record format and one check, for the edge that writes the
log (edge.door.access_log) and the hub that receives it (edge.hub.store.access).

A record is a flat JSON object; `hash` is the sha256 (hex) of the canonical JSON of every other
field, and `prev` is the hash of the record before (GENESIS for the first one ever). Canonical
JSON: keys sorted, no spaces, UTF-8, no NaN. Editing a field changes the record's hash; deleting
or reordering records breaks a `prev` link or the run of `seq` numbers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Iterable

from edge.core.domain import is_id

GENESIS = "0" * 64

# Documented codes of a refused upload (docs/access.md, docs/hub.md).
LOG_GAP = -1520  # the batch does not start where the hub's copy of the chain ends (records missing)
LOG_EDITED = -1521  # a record's hash does not match, a link is broken, or it differs from the stored one
LOG_MALFORMED = -1522  # not a list of records of the format
LOG_CROP = -1523  # a face crop that is not the one its record names (or crops that are no list of them)
PROBLEM_CODES = {"gap": LOG_GAP, "edited": LOG_EDITED, "reordered": LOG_EDITED, "malformed": LOG_MALFORMED,
                 "crop": LOG_CROP}
MAX_SEALED_CROP = 1 + 12 + 256 * 1024 + 16  # edge.door.log_crops.MAX_SEALED_BYTES

# Fields a record may carry besides seq, record_id, at, kind, prev and hash (docs/access.md).
EVIDENCE_FIELDS = frozenset({
    "door", "person_id", "decision", "outcome", "reason", "rule", "event_id", "score", "liveness",
    "model_version", "gallery_version", "rules_version", "source", "alarm", "warning", "detail",
})
KINDS = frozenset({"decision", "exit", "alarm", "door", "rules"})
# The evidence the hub files, filters and counts by (its columns, claim_refusals): text when present.
TEXT_FIELDS = ("door", "person_id", "decision", "outcome", "reason")
# A record's time: within what a clock can say and a date can show (up to the year 3058); a
# record dated 1e300 made every page of the site's decisions fail to render.
MAX_AT = 2.0 ** 35
MAX_RECORD_CHARS = 8192
# A record's person_id and door are ids (edge.core.domain.is_id; empty: none): operators follow
# links built from them. A door key uploaded a person_id of `../../face/<form hx-post=…>`: its
# link on the Decisions page left /ui and came back as HTML that made an admin account in the
# clicking admin's name.
ID_FIELDS = ("door", "person_id")
MAX_BATCH = 1000  # records per upload


class ChainError(ValueError):
    """A record or a run of records that is not a sound chain; `problem` names what
    (`edited`, `gap`, `reordered`, `malformed`), `seq` where."""

    def __init__(self, problem: str, seq: int | None, message: str):
        self.problem, self.seq = problem, seq
        super().__init__(f"{problem} at record {seq}: {message}" if seq is not None else f"{problem}: {message}")


def canonical(fields: Any) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"}).encode()).hexdigest()


def sign_end(key: bytes, role: str, seq: int, digest: str) -> str:
    """The HMAC-SHA256 of a chain position in its role ("head", or "anchor" of a pruned prefix):
    one signature is good for one role only. Signed alike, the anchor copied over the head of
    a log whose remaining records were deleted verified as a sound empty log."""
    return hmac.new(key, f"access-log:{role}:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def sign_head(key: bytes, seq: int, digest: str) -> str:
    """The signature of a chain position before it named its role (logs written before 2026-12):
    read only, where a log has never been signed by role (AccessLog's `signed_by_role` mark)."""
    return hmac.new(key, f"access-log:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def check_shape(record: Any) -> dict[str, Any]:
    """The record if it has the format's fields and types; ChainError("malformed") if not."""
    seq = record.get("seq") if isinstance(record, dict) else None
    where = seq if isinstance(seq, int) else None
    if not isinstance(record, dict):
        raise ChainError("malformed", None, "a record is a JSON object")
    unknown = set(record) - EVIDENCE_FIELDS - {"seq", "record_id", "at", "kind", "prev", "hash"}
    if unknown:
        raise ChainError("malformed", where, f"unknown field {sorted(unknown)[0][:32]!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ChainError("malformed", None, "seq is a positive integer")
    at = record.get("at")
    # the range first: math.isfinite of a 400-digit integer raises; NaN and infinity fail it too
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at < MAX_AT:
        raise ChainError("malformed", where, f"at is a number of seconds since 1970, below {MAX_AT:.0f}")
    for name in TEXT_FIELDS:
        if name in record and not isinstance(record[name], str):
            raise ChainError("malformed", where, f"{name} is a string")
    if "detail" in record and not isinstance(record["detail"], dict):
        raise ChainError("malformed", where, "detail is a JSON object")
    for name in ("record_id", "kind", "prev", "hash"):
        if not isinstance(record.get(name), str) or not 0 < len(record[name]) <= 128:
            raise ChainError("malformed", where, f"{name} is a string")
    for name in ("record_id", "kind", *TEXT_FIELDS):  # filed as text: PostgreSQL refuses a NUL there
        if "\x00" in record.get(name, ""):
            raise ChainError("malformed", where, f"{name} holds a NUL character")
    for name, value in record.items():  # text shown to operators: no control or bidi characters
        if isinstance(value, str) and not value.isprintable():
            raise ChainError("malformed", where, f"{name} holds a control or bidi character")
    for name in ID_FIELDS:
        value = record.get(name, "")
        if value and not is_id(value):
            raise ChainError("malformed", where, f"{name} is no id (a space, slash, backslash, or over 128)")
    if record["kind"] not in KINDS:
        raise ChainError("malformed", where, f"kind must be one of {sorted(KINDS)}")
    try:  # a lone surrogate has no UTF-8 (its hash could not be taken); too deep a detail recurses
        size = len(canonical(record).encode("utf-8"))
    except (TypeError, ValueError, RecursionError):
        raise ChainError("malformed", where, "not JSON (or NaN, or a lone surrogate, or nested too deep)") from None
    if size > MAX_RECORD_CHARS:
        raise ChainError("malformed", where, f"longer than {MAX_RECORD_CHARS} characters")
    return record


@dataclass(frozen=True)
class ChainEnd:
    seq: int  # 0 before the first record
    hash: str  # GENESIS before the first record


def follow(records: Iterable[dict[str, Any]], start: ChainEnd) -> ChainEnd:
    """Check that `records` continue the chain ending at `start`, one by one; the new end.
    ChainError on the first record that does not."""
    end = start
    for record in records:
        check_shape(record)
        seq = record["seq"]
        if record_hash(record) != record["hash"]:
            raise ChainError("edited", seq, "the record's hash does not match its content")
        if seq != end.seq + 1:
            problem = "gap" if seq > end.seq + 1 else "reordered"
            raise ChainError(problem, seq, f"expected record {end.seq + 1}")
        if record["prev"] != end.hash:
            raise ChainError("reordered", seq, "prev is not the hash of the record before")
        end = ChainEnd(seq, record["hash"])
    return end


def encode_cursor(after: tuple[float, str, int] | None) -> str:
    """A search page's `next`: opaque to clients ("" when there is no next page)."""
    if after is None:
        return ""
    return base64.urlsafe_b64encode(canonical(list(after)).encode()).decode()


def decode_cursor(text: str | None) -> tuple[float, str, int] | None:
    """The keyset of a `next` given back; ValueError for one that is not."""
    if not text:
        return None
    try:
        at, edge_id, seq = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("after is not a cursor this hub gave") from None
    if not isinstance(at, (int, float)) or not isinstance(edge_id, str) or not isinstance(seq, int):
        raise ValueError("after is not a cursor this hub gave")
    # within what a stored record can hold: a seq past 64 bits made the query itself fail, and
    # math.isfinite of a 400-digit time raised
    if isinstance(seq, bool) or not 0 <= seq < 2**62 or not -MAX_AT <= at <= MAX_AT:
        raise ValueError("after is not a cursor this hub gave")
    return float(at), edge_id, seq


def parse_crops(text: str, batch: list[Any]) -> dict[int, bytes]:
    """The sealed face crops sent with `batch` (JSON text of [{seq, sealed: base64}]), by seq;
    ChainError("crop") unless each is the one its record in the batch names (detail.face_crop
    = the sha256 of the sealed bytes). The hub cannot open them: it checks they are the records'."""
    import base64
    import binascii

    try:
        items = json.loads(text)
    except (ValueError, RecursionError):
        raise ChainError("crop", None, "crops is not JSON") from None
    if not isinstance(items, list) or len(items) > MAX_BATCH:
        raise ChainError("crop", None, "crops must be a list of {seq, sealed}")
    named = {r["seq"]: (r.get("detail") or {}).get("face_crop") for r in batch
             if isinstance(r, dict) and isinstance(r.get("seq"), int) and isinstance(r.get("detail") or {}, dict)}
    crops: dict[int, bytes] = {}
    for item in items:
        seq = item.get("seq") if isinstance(item, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(item.get("sealed"), str):
            raise ChainError("crop", None, "a crop is {seq, sealed: base64}")
        if len(item["sealed"]) > 4 * MAX_SEALED_CROP // 3 + 4:
            raise ChainError("crop", seq, "the crop is too large")
        try:
            sealed = base64.b64decode(item["sealed"], validate=True)
        except (binascii.Error, ValueError):
            raise ChainError("crop", seq, "the crop is not base64") from None
        if seq in crops or named.get(seq) != hashlib.sha256(sealed).hexdigest():
            raise ChainError("crop", seq, "the crop is not the one its record names")
        crops[seq] = sealed
    return crops
