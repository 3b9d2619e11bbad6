"""Enrolment with a verdict per photo, for the console's upload page and `edge-verifier enrol`.

Each photo is examined once (detect, quality gate, embed): refused when it shows no face, its
largest face fails the quality gate (too small, off frontal, blurred), it cannot be read, or it
shows another face of at least half the largest one's width: the largest face was taken, and a
photo of Madonna beside a larger Ben Affleck enrolled Ben as madonna (nothing else could catch
it while Ben was not enrolled); faces far smaller (the background) are left aside. Each usable face is
compared with the appid's other persons: a score at or above the 1:1 accept threshold is a
look-alike (the `audit` report's rule), and the enrolment is held back until the caller
confirms (`accept_look_alikes`): a wrong or duplicate identity poisons the gallery. So is a
face that is not the person's own: a photo scoring below the 1:1 reject threshold against the
person's enrolled faces, or two photos of one upload scoring below it against each other, hold
the enrolment the same way (a colliding id in a CSV, a wrong folder: the stranger in the photo
was then let in as the person). Storing goes through the hub service (limits, near-identical
faces) like the API's newperson and addface.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from edge.core import errors
from edge.core.errors import ApiError
from edge.hub.store import FaceRecord

log = logging.getLogger("edge.hub.enrolment")

REASONS = {
    "no_face": "no face found", "too_small": "face too small", "blurred": "face blurred",
    "off_frontal": "head turned too far", "unreadable": "not a readable image",
    "several_faces": "more than one face: crop the photo to the person alone",
}


@dataclass
class PhotoVerdict:
    name: str
    sha256: str
    ok: bool
    reason: str | None = None  # a key of REASONS, or an API error's message
    faces: int = 0
    quality: dict | None = None
    look_alikes: list[dict] = field(default_factory=list)
    record: FaceRecord | None = field(default=None, repr=False)

    @property
    def explanation(self) -> str:
        return REASONS.get(self.reason or "", self.reason or "")

    def as_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "ok": self.ok, "reason": self.reason, "faces": self.faces,
                "quality": self.quality, "look_alikes": self.look_alikes}


@dataclass
class EnrolOutcome:
    person_id: str
    verdicts: list[PhotoVerdict]
    saved: bool = False
    created: bool = False
    face_ids: list[str] = field(default_factory=list)
    held: str = ""  # why nothing was saved
    unlike: list[str] = field(default_factory=list)  # photos that do not look like the person

    @property
    def look_alikes(self) -> list[dict]:
        seen: dict[str, dict] = {}
        for v in self.verdicts:
            for la in v.look_alikes:
                if la["person_id"] not in seen or la["score"] > seen[la["person_id"]]["score"]:
                    seen[la["person_id"]] = la
        return sorted(seen.values(), key=lambda la: -la["score"])


def examine(service, appid: str, person_id: str, photos: list[tuple[str, bytes]]) -> list[PhotoVerdict]:
    """A verdict per photo (name, bytes), nothing stored."""
    out = []
    for name, data in photos:
        digest = hashlib.sha256(data).hexdigest()
        try:
            record, quality, faces = service.examine(appid, data, person_id)
        except ApiError as exc:
            reason = {errors.NO_FACE: "no_face", errors.IMAGE_DECODE_FAILED: "unreadable",
                      errors.ILLEGAL_IMAGE_FORMAT: "unreadable", errors.IMAGE_EMPTY: "unreadable"}.get(exc.code)
            out.append(PhotoVerdict(name, digest, False, reason or exc.message))
            continue
        if faces > 1:
            out.append(PhotoVerdict(name, digest, False, "several_faces", faces, quality))
            continue
        if not quality["ok"]:
            out.append(PhotoVerdict(name, digest, False, quality["reason"], faces, quality))
            continue
        out.append(PhotoVerdict(name, digest, True, None, faces, quality, service.look_alikes(appid, record), record))
    return out


def _unlike(service, appid: str, person_id: str, usable: list[PhotoVerdict]) -> list[str]:
    """The usable photos that score below the 1:1 reject threshold against `person_id`'s
    enrolled faces (when the person exists) or against another photo of the same upload."""
    reject = service.thresholds.reject
    fingerprint = service.vision.primary.fingerprint
    out = []
    for i, v in enumerate(usable):
        assert v.record is not None
        own = service.score_against(appid, v.record, person_id)
        mine = v.record.embeddings[fingerprint]
        others = [float(mine @ w.record.embeddings[fingerprint]) for w in usable[:i] if w.record is not None]
        if (own is not None and own < reject) or any(score < reject for score in others):
            out.append(v.name)
    return out


def enrol(service, appid: str, person_id: str, person_name: str, group_ids: list[str],
          photos: list[tuple[str, bytes]], *, accept_look_alikes: bool = False) -> EnrolOutcome:
    """Examine the photos, then store the usable ones unless a look-alike holds them back.
    The ids and the name follow the API's rules (ApiError otherwise)."""
    from edge.api.ops import ApiLimits, check_ident

    id_bytes = getattr(service.limits, "id_bytes", ApiLimits().id_bytes)
    check_ident("person_id", person_id, id_bytes)
    if not group_ids:
        raise ApiError(errors.PARAMETER_EMPTY, "a person belongs to at least one group")
    for group in group_ids:
        check_ident("group_id", group, id_bytes)
    if len(person_name.encode()) > getattr(service.limits, "text_bytes", ApiLimits().text_bytes):
        raise ApiError(errors.PARAMETER_TOO_LONG, "person_name is too long")
    verdicts = examine(service, appid, person_id, photos)
    outcome = EnrolOutcome(person_id, verdicts)
    usable = [v.record for v in verdicts if v.ok and v.record is not None]
    if not usable:
        outcome.held = "no photo passed the quality gate"
        return outcome
    outcome.unlike = _unlike(service, appid, person_id, [v for v in verdicts if v.ok and v.record is not None])
    if outcome.unlike and not accept_look_alikes:
        outcome.held = (f"{', '.join(outcome.unlike)} may not show {person_id} (below the reject threshold against "
                        f"{person_id}'s enrolled faces or the other photos): confirm to enrol anyway")
        return outcome
    if outcome.look_alikes and not accept_look_alikes:
        names = ", ".join(la["person_id"] for la in outcome.look_alikes)
        outcome.held = f"looks like {names}: confirm to enrol anyway"
        return outcome
    outcome.created, outcome.face_ids = service.store_faces(appid, person_id, usable, person_name, group_ids)
    outcome.saved = bool(outcome.face_ids)
    if outcome.saved and (outcome.look_alikes or outcome.unlike):  # confirmed: said where it is audited
        log.warning("appid %s: %s enrolled though confirmed against the warning: looks like %s; photos that may "
                    "not show them: %s", appid, person_id,
                    ", ".join(f"{la['person_id']} ({la['score']})" for la in outcome.look_alikes) or "nobody",
                    ", ".join(outcome.unlike) or "none")
    if not outcome.saved:
        outcome.held = "every photo is already enrolled (near-identical faces)"
    return outcome
