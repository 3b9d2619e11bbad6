"""The hub's implementation of every face API operation: vision + matcher + store.

The vendor's API answers with attributes the models cannot estimate; so that its clients find
every field, they are fixed neutral values: gender 50 (undecided on the vendor's 0 female .. 100
male scale), age 0 (unknown), expression 0 (neutral), glass false. Pose (yaw, pitch, roll,
degrees) comes from the five landmarks.

addface answers the first input's error code when no face at all could be added (so a single
image to a full person gets -1309 at top level); otherwise code 0 with per-image ret_codes.
A face whose similarity to one the person already has is 99 or more (the API's 0-100 figure)
is refused with -1312, checked inside the store's transaction so that concurrent adds of one
photo cannot both pass. Verify log rows older than `verify_log_s` are deleted (at most one
trim a minute); `health()` reports the store (a failing write makes the hub "degraded").
With a `crops` cipher each enrolled face also keeps its aligned crop, sealed (edge.hub.face_crops),
stored in the face's transaction, for `edge-verifier hub reembed`; without one, no image is kept.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from edge.api.ratelimit import RecordBudget
from edge.api.service import ApiErrorWithData, FaceService, compare_images, judged_liveness, session_id
from edge.core import access_chain, access_rules, errors, syncwire
from edge.core.credentials import MAX_CREDENTIALS
from edge.core.errors import ApiError
from edge.core.matcher import DEFAULT_THRESHOLDS, Decision, Gallery, Thresholds, confidence, cosine
from edge.hub.claim_refusals import lifts_since, members_of, site_lifts, site_refusals
from edge.hub.face_crops import CropCipher
from edge.hub.store import FaceRecord, Limits, NearIdentical, Store, VerifyRecord
from edge.hub.store.edges import EdgeReport
from edge.vision.image import decode_slots

log = logging.getLogger("edge.hub")

NEAR_IDENTICAL_CONFIDENCE = 99.0
TRIM_EVERY_S = 60.0
NEUTRAL_ATTRIBUTES = {"gender": 50, "age": 0, "expression": 0, "glass": False}


class VisionPacks:
    """The primary pipeline (matching) and the extra precisions (embeddings only), loaded once
    on first use so the API answers auth and bookkeeping calls without the models."""

    def __init__(self, models_dir: str | None, precision: str = "int8", also_embed: Sequence[str] = (),
                 threads: int | None = None):
        self.models_dir = models_dir or None
        self.precision = precision
        self.also_embed = [p for p in dict.fromkeys(also_embed) if p != precision]
        self.threads = threads or None
        self._lock = threading.Lock()
        self._primary = None
        self._extra: list = []

    def _load(self) -> None:
        with self._lock:
            if self._primary is not None:
                return
            from edge.vision import Pipeline  # heavy: onnxruntime
            from edge.vision.packs import ModelPackError

            try:
                primary = Pipeline.load(self.models_dir, precision=self.precision, threads=self.threads)
                extra = [Pipeline.load(self.models_dir, precision=p, threads=self.threads) for p in self.also_embed]
            except (ModelPackError, KeyError, ValueError) as exc:
                log.error("cannot load the models: %s", exc)
                raise ApiError(errors.FEATURE_FAILED, f"face models unavailable: {exc}") from None
            self._extra = extra
            self._primary = primary

    @property
    def primary(self):
        if self._primary is None:
            self._load()
        return self._primary

    @property
    def loaded(self) -> bool:
        return self._primary is not None

    def all(self) -> list:
        return [self.primary, *self._extra]

    @property
    def fingerprints(self) -> list[str]:
        return [p.fingerprint for p in self.all()]


# Shown to operators, a name or a tag may hold any text but these: the bidi controls (U+202E
# rendered a name reversed on every page) and the C0/C1 control characters other than tab and
# line breaks (free text in the legacy API: a tag of two lines stays one). Joiners stay (emoji).
_NOT_SHOWN = frozenset({*map(chr, range(0x20)), *map(chr, range(0x7F, 0xA0)), "\u061c", "\u200e", "\u200f",
                        *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}) - {"\t", "\n", "\r"}


def shown_text(**fields: str | None) -> None:
    """-1313 for a name or tag holding a bidi or control character (tabs and line breaks
    aside): they are shown to operators (the console, the decisions)."""
    for name, value in fields.items():
        if value and not _NOT_SHOWN.isdisjoint(value):
            raise ApiError(errors.ILLEGAL_CHARACTERS, f"{name} contains a control or bidi character")


class HubService(FaceService):
    role = "hub"

    def __init__(self, store: Store, vision: VisionPacks, limits: Limits | None = None,
                 thresholds: Thresholds = DEFAULT_THRESHOLDS, verify_log_s: float = 30 * 86400,
                 crops: CropCipher | None = None, liveness: str = "flag", access_log_s: float = 0.0,
                 edge_groups: Mapping[str, frozenset[str]] | None = None):
        self.store = store
        # edge_id -> the groups its claim refusals may name (edge.hub.claim_refusals.door_groups)
        self.edge_groups = dict(edge_groups or {})
        self.liveness = liveness  # [liveness] mode for verify and identify (edge.api.service.judged_liveness)
        self.crops = crops
        self.verify_log_s = verify_log_s
        self._trimmed_at: dict[str, float] = {}  # what was trimmed -> when (monotonic), see _trim
        self.access_log_s = access_log_s  # 0: the edges' access records are kept for good
        self.vision = vision
        self.limits = limits or Limits()
        self.thresholds = thresholds
        self._galleries: dict[tuple[str, str], tuple[int, Gallery]] = {}
        self._gallery_lock = threading.Lock()
        # access log records per (appid, edge): a day's worth refilled a day, a week's at once
        self.record_budget = RecordBudget(self.limits.access_records_per_day / 86_400.0,
                                          7 * self.limits.access_records_per_day)

    # --- vision helpers --------------------------------------------------------------------
    def _decode(self, data: bytes) -> np.ndarray:
        from edge.vision import decode_image

        return decode_image(data)

    def _largest_face(self, data: bytes):
        bgr = self._decode(data)
        faces = self.vision.primary.detect(bgr)
        if not faces:
            raise ApiError(errors.NO_FACE)
        return bgr, faces[0]

    def _embedding(self, data: bytes) -> np.ndarray:
        with decode_slots:  # the full-size image lives only inside a slot
            bgr, face = self._largest_face(data)
            return self.vision.primary.embed(bgr, face)

    def _probe(self, data: bytes) -> tuple[np.ndarray, dict | None]:
        """The largest face's embedding and its `liveness` answer field (None when off). In
        require mode an attack is refused (-1110) before it is embedded or matched. The model
        reads the face's x2.7 context crop of the whole image, as at the camera."""
        with decode_slots:
            bgr, face = self._largest_face(data)
            field = None
            if self.liveness != "off":
                net = self.vision.primary.liveness
                if net is None:
                    raise ApiError(errors.FEATURE_FAILED, "no liveness model in the models folder: run "
                                   "`edge-verifier models build` (or set [liveness] mode = \"off\")")
                field = judged_liveness(self.liveness, net.infer(bgr, face.box))
            return self.vision.primary.embed(bgr, face), field

    def _face_record(self, appid: str, data: bytes, person_id: str, tag: str) -> FaceRecord:
        """The face newperson and addface store: -1111 when another face rivals the largest (a
        photo of Madonna beside a larger Ben Affleck enrolled Ben as madonna, and Ben then passed
        as her), as the console's upload and `enrol` refuse such a photo."""
        record, _quality, rivals = self.examine(appid, data, person_id, tag)
        if rivals > 1:
            raise ApiError(errors.SEVERAL_FACES, f"the image shows {rivals} faces of a similar size: which is the "
                                                 "person's is not known; crop it to the person alone")
        return record

    def examine(self, appid: str, data: bytes, person_id: str, tag: str = "") -> tuple[FaceRecord, dict, int]:
        """(the record of the image's largest face, the quality gate's verdict on it as
        Quality.as_dict(), how many faces the image shows of at least half its width: the
        largest among them need not be the person's); -1101 when it shows none."""
        with decode_slots:
            bgr = self._decode(data)
            faces = self.vision.primary.detect(bgr)
            if not faces:
                raise ApiError(errors.NO_FACE)
            face = faces[0]
            embeddings = {}
            for pipe in self.vision.all():
                embeddings[pipe.fingerprint] = np.asarray(pipe.embed(bgr, face), dtype=np.float32).copy()
            del bgr
        q = face.quality
        face_id = self.store.new_face_id()
        record = FaceRecord(
            face_id=face_id, person_id=person_id, box=tuple(int(v) for v in face.box),
            landmarks=[[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
            yaw=float(q.yaw), pitch=float(q.pitch), roll=float(q.roll),
            quality=round(float(face.score) * (1.0 if q.ok else 0.5), 4), sharpness=float(q.sharpness),
            tag=tag, created=time.time(), embeddings=embeddings,
            crop=None if self.crops is None else self.crops.seal(appid, face_id, face.aligned),
        )
        rivals = sum(1 for f in faces if f.box[2] * 2 >= face.box[2])  # background faces aside
        return record, q.as_dict(), rivals

    def look_alikes(self, appid: str, record: FaceRecord, top_k: int = 3) -> list[dict]:
        """Other persons of the appid whose best face scores at or above the 1:1 accept threshold
        against this face (the `audit` report's rule), best first."""
        embedding = record.embeddings[self.vision.primary.fingerprint]
        found = self._gallery(appid).identify(embedding, None, top_k=top_k + 1).candidates
        return [{"person_id": c.person_id, "person_name": c.person_name, "score": round(c.score, 4),
                 "confidence": confidence(c.score, self.thresholds)}
                for c in found if c.person_id != record.person_id and c.score >= self.thresholds.accept][:top_k]

    def score_against(self, appid: str, record: FaceRecord, person_id: str) -> float | None:
        """This face's 1:1 score against `person_id`'s enrolled faces (None: no such person)."""
        own = self._gallery(appid).verify(record.embeddings[self.vision.primary.fingerprint], person_id)
        return None if own is None else round(float(own.score), 4)

    def against(self, appid: str, record: FaceRecord, person_id: str) -> dict:
        """How this face scores against `person_id` and against the nearest other person of the
        appid, and the margin between (the console's "this was ...": a face closer to someone
        else must not be added to `person_id`). Scores are cosine, thresholds the 1:1 ones."""
        embedding = record.embeddings[self.vision.primary.fingerprint]
        claimed = self.score_against(appid, record, person_id)
        others = [c for c in self._gallery(appid).identify(embedding, None, top_k=2).candidates
                  if c.person_id != person_id]
        nearest = others[0] if others else None
        other = None if nearest is None else round(float(nearest.score), 4)
        return {"person_id": person_id, "score": claimed,
                "nearest": None if nearest is None else {"person_id": nearest.person_id,
                                                         "person_name": nearest.person_name, "score": other},
                "margin": None if claimed is None else round(claimed - (other if other is not None else 0.0), 4),
                "accept": self.thresholds.accept, "reject": self.thresholds.reject,
                "margin_needed": self.thresholds.margin}

    def store_faces(self, appid: str, person_id: str, records: Sequence[FaceRecord], person_name: str,
                    group_ids: Sequence[str], tag: str = "") -> tuple[bool, list[str]]:
        """Store examined faces: a new person with them (in `group_ids`), or more faces of an
        existing one (near-identical ones skipped, as addface does). (created, face ids stored)."""
        if not records:
            return False, []
        shown_text(person_name=person_name, tag=tag)
        try:
            self.store.get_person(appid, person_id)
        except ApiError as exc:
            if exc.code != errors.PERSON_UNKNOWN:
                raise
            first, rest = records[0], list(records[1:])
            self.store.create_person(appid, person_id, group_ids, person_name, tag, first, self.limits)
            near = NearIdentical(self.vision.primary.fingerprint, self._near_identical)
            stored = self.store.add_faces(appid, person_id, rest, self.limits, near) if rest else []
            return True, [first.face_id, *stored]
        near = NearIdentical(self.vision.primary.fingerprint, self._near_identical)
        return False, self.store.add_faces(appid, person_id, list(records), self.limits, near)

    def face_crop_png(self, appid: str, face_id: str) -> bytes | None:
        """The face's aligned crop as PNG for the console (None: not kept, or not this appid's)."""
        import cv2

        from edge.hub.face_crops import CropError

        sealed = self.store.face_crop(appid, face_id) if self.crops is not None else None
        if sealed is None:
            return None
        try:
            crop = self.crops.open(appid, face_id, sealed)
        except CropError as exc:
            log.warning("face crop not shown: %s", exc)
            return None
        ok, png = cv2.imencode(".png", crop)
        return png.tobytes() if ok else None

    @staticmethod
    def _face_info(face_id: str, box, yaw: float, pitch: float, roll: float) -> dict:
        x, y, w, h = (int(v) for v in box)
        return {
            "face_id": face_id, "x": x, "y": y, "width": w, "height": h, **NEUTRAL_ATTRIBUTES,
            "pitch": round(float(pitch), 1), "yaw": round(float(yaw), 1), "roll": round(float(roll), 1),
        }

    def _gallery(self, appid: str) -> Gallery:
        """All of the appid's faces for the primary fingerprint, rebuilt when the log moves."""
        fingerprint = self.vision.primary.fingerprint
        seq = self.store.last_seq(appid)
        key = (appid, fingerprint)
        with self._gallery_lock:
            cached = self._galleries.get(key)
            if cached and cached[0] == seq:
                return cached[1]
        gallery = Gallery(self.store.embeddings(appid, fingerprint), thresholds=self.thresholds, version=str(seq))
        with self._gallery_lock:
            self._galleries[key] = (seq, gallery)
        return gallery

    # --- persons and groups ----------------------------------------------------------------
    def newperson(self, appid, person_id, group_ids, image, person_name, tag) -> dict:
        # -1302 before any model work: cheaper, and the caller learns the person exists even when
        # this image has no face (the store checks again inside its transaction).
        try:
            self.store.get_person(appid, person_id)
        except ApiError as exc:
            if exc.code != errors.PERSON_UNKNOWN:
                raise
        else:
            raise ApiError(errors.PERSON_EXISTS, f"person {person_id!r} already exists")
        shown_text(person_name=person_name, tag=tag)
        face = self._face_record(appid, image, person_id, tag)
        joined = self.store.create_person(appid, person_id, group_ids, person_name, tag, face, self.limits)
        return {
            "session_id": session_id(), "suc_group": joined, "suc_face": 1, "person_id": person_id,
            "face_id": face.face_id, "group_ids": list(group_ids),
        }

    def delperson(self, appid, person_id) -> dict:
        self.store.delete_person(appid, person_id)
        return {"session_id": session_id(), "person_id": person_id, "deleted": 1}

    def setinfo(self, appid, person_id, person_name, tag) -> dict:
        shown_text(person_name=person_name, tag=tag)
        self.store.set_info(appid, person_id, person_name, tag)
        return {"session_id": session_id(), "person_id": person_id}

    def setcredentials(self, appid, person_id, credentials) -> dict:
        # The answer counts them and never repeats a number (getcredentials is the one read).
        # Checked here, not only by the API: the console adds one card a request.
        if len(credentials) > MAX_CREDENTIALS:
            raise ApiError(errors.INVALID_PARAMETER, f"credentials: at most {MAX_CREDENTIALS} per person")
        self.store.set_credentials(appid, person_id, credentials)
        return {"session_id": session_id(), "person_id": person_id, "credentials": len(credentials)}

    def getcredentials(self, appid, person_id) -> dict:
        creds = self.store.get_credentials(appid, person_id)
        return {"session_id": session_id(), "person_id": person_id, "credentials": [c.to_json() for c in creds]}

    def getinfo(self, appid, person_id) -> dict:
        p = self.store.get_person(appid, person_id)
        return {
            "person_id": p.person_id, "person_name": p.person_name, "tag": p.tag,
            "face_ids": p.face_ids, "group_ids": p.group_ids, "session_id": session_id(),
        }

    def getgroupids(self, appid) -> dict:
        return {"group_ids": self.store.group_ids(appid)}

    def getpersonids(self, appid, group_id) -> dict:
        return {"person_ids": self.store.person_ids(appid, group_id)}

    def getfaceids(self, appid, person_id) -> dict:
        return {"face_ids": self.store.face_ids(appid, person_id)}

    def getfaceinfo(self, appid, face_id) -> dict:
        f = self.store.face(appid, face_id)
        return {"face_info": self._face_info(f.face_id, f.box, f.yaw, f.pitch, f.roll)}

    def addgroupids(self, appid, person_id, group_ids) -> dict:
        added = self.store.add_groups(appid, person_id, group_ids, self.limits)
        return {"person_id": person_id, "added": len(added), "group_ids": added, "session_id": session_id()}

    def delgroupids(self, appid, person_id, group_ids) -> dict:
        removed = self.store.remove_groups(appid, person_id, group_ids)
        return {"person_id": person_id, "deleted": len(removed), "group_ids": removed, "session_id": session_id()}

    # --- faces -----------------------------------------------------------------------------
    def addface(self, appid, person_id, images, tag) -> dict:
        existing_ids = self.store.face_ids(appid, person_id)  # -1303 before any model work
        fingerprint = self.vision.primary.fingerprint
        known = [face.embedding for face in self.store.embeddings(appid, fingerprint, person_id=person_id)]
        accepted: list[FaceRecord] = []
        face_ids: list[str] = []
        codes: list[int] = []
        for item in images:
            try:
                if isinstance(item, ApiError):
                    raise item
                if len(existing_ids) + len(accepted) >= self.limits.faces_per_person:
                    raise ApiError(errors.TOO_MANY_FACES, f"at most {self.limits.faces_per_person} faces per person")
                record = self._face_record(appid, item, person_id, tag)
                vec = record.embeddings[fingerprint]
                if any(self._near_identical(vec, k) for k in known):
                    raise ApiError(errors.NEAR_IDENTICAL_FACE)
                known.append(vec)
                accepted.append(record)
                face_ids.append(record.face_id)
                codes.append(0)
            except ApiError as exc:
                face_ids.append("")
                codes.append(exc.code)
        if accepted:
            # checked again inside the store's transaction: a concurrent add may have stored it since
            stored = set(self.store.add_faces(appid, person_id, accepted, self.limits,
                                              NearIdentical(fingerprint, self._near_identical)))
            for i, face_id in enumerate(face_ids):
                if face_id and face_id not in stored:
                    face_ids[i], codes[i] = "", errors.NEAR_IDENTICAL_FACE
        added = sum(1 for f in face_ids if f)
        if not added:
            first = next(c for c in codes if c != 0)
            raise ApiErrorWithData(first, None, {"session_id": session_id(), "added": 0, "face_ids": face_ids,
                                                 "ret_codes": codes})
        return {"session_id": session_id(), "added": added, "face_ids": face_ids, "ret_codes": codes}

    def _near_identical(self, a: np.ndarray, b: np.ndarray) -> bool:
        return confidence(cosine(a, b), self.thresholds) >= NEAR_IDENTICAL_CONFIDENCE

    def delface(self, appid, person_id, face_ids) -> dict:
        deleted = self.store.delete_faces(appid, person_id, face_ids)
        if not deleted:
            raise ApiError(errors.FACE_UNKNOWN, "none of these faces belongs to the person")
        return {"session_id": session_id(), "deleted": len(deleted), "face_ids": deleted}

    # --- matching --------------------------------------------------------------------------
    def verify(self, appid, person_id, image) -> dict:
        self.store.face_ids(appid, person_id)  # -1303 for an unknown person
        embedding, liveness = self._probe(image)
        fingerprint = self.vision.primary.fingerprint
        faces = self.store.embeddings(appid, fingerprint, person_id=person_id)
        if not faces:
            raise ApiError(errors.FEATURE_FAILED, f"person {person_id!r} has no face for embedder {fingerprint}")
        gallery = Gallery(faces, thresholds=self.thresholds)
        best = gallery.verify(embedding, person_id)
        score = best.score if best else -1.0
        ismatch = self.thresholds.decide(score) is Decision.ACCEPT
        sid = session_id()
        conf = confidence(score, self.thresholds)
        self.store.log_verify(VerifyRecord(sid, appid, person_id, float(score), conf, ismatch, time.time()))
        self._trim_verify_log()
        return {"session_id": sid, "confidence": conf, "ismatch": ismatch, **_with(liveness)}

    def identify(self, appid, group_ids, image) -> dict:
        known_groups = set(self.store.group_ids(appid))
        wanted = [g for g in group_ids if g in known_groups]
        if not wanted:
            raise ApiError(errors.GROUP_UNKNOWN, f"none of the groups {list(group_ids)} exists")
        embedding, liveness = self._probe(image)
        result = self._gallery(appid).identify(embedding, wanted, top_k=5)
        return {
            "session_id": session_id(),
            "candidates": [
                {"person_id": c.person_id, "face_id": c.face_id, "confidence": confidence(c.score, self.thresholds),
                 "tag": c.tag}
                for c in result.candidates
            ],
            **_with(liveness),
        }

    def compare(self, appid, image_a, image_b) -> dict:
        return compare_images(self._embedding, image_a, image_b, self.thresholds)

    def detect(self, appid, image, mode) -> dict:
        with decode_slots:
            bgr = self._decode(image)
            faces = self.vision.primary.detect(bgr)
            h, w = bgr.shape[:2]
            del bgr
        if not faces:
            raise ApiError(errors.NO_FACE)
        if mode == 1:
            faces = faces[:1]
        return {
            "session_id": session_id(), "image_width": int(w), "image_height": int(h),
            "face": [self._face_info("", f.box, f.quality.yaw, f.quality.pitch, f.quality.roll) for f in faces],
        }

    # --- access rules (docs/access.md) ------------------------------------------------------------
    def setrules(self, appid, document, expected_version=None) -> dict:
        """Validate the rule document (JSON text) as every edge will, store its canonical JSON as
        the next version; the edges get it with their next sync. -15xx for a broken document."""
        try:
            doc = json.loads(document)
        except (ValueError, RecursionError):
            raise access_rules.RulesError(access_rules.RULES_MALFORMED, "not JSON") from None
        access_rules.parse_rules(doc)
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:  # a lone surrogate (valid JSON, no UTF-8) failed the store's write: 213
            canonical.encode("utf-8")
        except UnicodeEncodeError:
            raise access_rules.RulesError(access_rules.RULES_MALFORMED, "not UTF-8 text (a lone surrogate)") from None
        version = self.store.set_rules(appid, canonical, expected_version)
        return {"session_id": session_id(), "version": version}

    def getrules(self, appid) -> dict:
        stored = self.store.get_rules(appid)
        if stored is None:
            return {"version": 0, "rules": ""}
        return {"version": stored[0], "rules": stored[1]}

    # --- access log (docs/access.md) ---------------------------------------------------------
    def uploadlog(self, appid, edge_id, records, crops=None) -> dict:
        """Store a batch of an edge's access log records (JSON text of a list) if it continues
        the edge's chain, with their sealed face crops when sent; a refused batch (-1520 gap,
        -1521 edited, -1522 malformed, -1523 a crop not its record's) is counted on the chain
        and logged, never stored in part."""
        try:
            try:
                batch = json.loads(records)
            except (ValueError, RecursionError):
                raise ApiError(access_chain.LOG_MALFORMED, "records is not JSON") from None
            if not isinstance(batch, list) or len(batch) > access_chain.MAX_BATCH:
                raise ApiError(access_chain.LOG_MALFORMED,
                               f"records must be a list of at most {access_chain.MAX_BATCH} records")
            try:
                sealed = access_chain.parse_crops(crops, batch) if crops is not None else {}
            except access_chain.ChainError as exc:
                raise ApiError(access_chain.LOG_CROP, f"access log of {edge_id}: {exc}") from None
            if not self.record_budget.take((appid, edge_id), len(batch)):
                raise ApiError(errors.RATE_LIMITED, f"access log of {edge_id}: over "
                               f"{self.limits.access_records_per_day} records a day; send the rest later")
            stored, head = self.store.store_access_records(appid, edge_id, batch, sealed)
            self._trim_access_log()
        except ApiError as exc:
            if exc.code not in access_chain.PROBLEM_CODES.values():
                raise
            log.warning("access log upload of %s refused: %s", edge_id, exc.message)
            self.store.refuse_access_upload(appid, edge_id, exc.message)
            raise
        return {"stored": stored, "head": head}

    def searchlog(self, appid, filters, since, until, after, limit) -> dict:
        records, nxt = self.store.search_access(appid, filters, since, until, access_chain.decode_cursor(after),
                                                limit)
        return {"records": records, "next": access_chain.encode_cursor(nxt)}

    # --- sync ------------------------------------------------------------------------------
    def sync(self, appid, since, fingerprint, group_ids, limit, with_rules=False, report=None,
             refusals_since=None, only_groups=False, vanished_after="") -> dict:
        """A page of changes; for a reporting edge that asks (`refusals_since`), also the claims
        the site's other doors refused on the face since then (edge.hub.claim_refusals): with
        `only_groups` (a key bound to the groups asked for), of those groups' persons only."""
        served = self.vision.fingerprints
        if report is not None:  # kept first: an edge with the wrong fingerprint is worth seeing too
            self.store.record_edge(appid, EdgeReport(
                # the sync's fingerprint stands for the pack only when it is what a report field may be
                report["edge_id"], time.time(), int(since),
                report.get("edge_pack", fingerprint if syncwire.is_report_text(fingerprint) else "?"),
                report.get("edge_liveness", ""), report.get("edge_door", ""), report.get("edge_health", ""),
                report.get(syncwire.REPORT_KEY, ""), tuple(group_ids or ())))
        if fingerprint not in served:
            # The data names what is stored, so an edge tells this from any other code 21; and
            # the persons changed since its cursor: a door on a pack this hub no longer serves (not
            # yet restarted, or offline through the change) got no page, and the persons deleted
            # meanwhile kept passing there until it moved (syncwire.VANISHED).
            raise ApiErrorWithData(
                errors.INVALID_PARAMETER,
                f"fingerprint {fingerprint!r} is not stored by this hub (it stores {', '.join(served)})",
                {"fingerprints": list(served),
                 syncwire.VANISHED: self.store.vanished_since(appid, int(since), group_ids or None,
                                                              syncwire.MAX_VANISHED, vanished_after)},
            )
        page = self.store.sync_page(appid, since, fingerprint, group_ids or None, limit, with_rules)
        out = {
            "cursor": page.cursor, "has_more": page.has_more, "fingerprint": fingerprint,
            "changes": [syncwire.encode(c) for c in page.changes],
        }
        if page.rules_version is not None:
            out[syncwire.RULES_VERSION] = page.rules_version
        if page.head is not None:
            out.update({syncwire.HEAD: page.head, syncwire.SINCE_MARK: page.since_mark,
                        syncwire.CURSOR_MARK: page.cursor_mark})
        if report is not None:  # the kind of key it signs with: an edge warns when it is the appid's
            out[syncwire.REPORT_KEY] = report.get(syncwire.REPORT_KEY, "")
        if report is not None and refusals_since is not None:
            try:
                out.update(self._site_claims(appid, report["edge_id"], refusals_since, group_ids, only_groups))
            except Exception:  # noqa: BLE001 - the page's changes (a deletion) must reach the door regardless
                log.exception("claim refusals for %s left out of its sync", report["edge_id"])
        return out

    def _site_claims(self, appid, edge_id, since, group_ids, only_groups) -> dict:
        """The sync answer's claim_refusals and claim_lifts for `edge_id` (sync's docstring)."""
        lifted = lifts_since(self.store, appid, since)
        # a group-bound key's persons chosen before the list is cut to its length, so that the
        # other persons' refusals cannot take the places of its own
        members = (lambda ids: members_of(self.store, appid, ids, group_ids)) if only_groups else None
        refused = site_refusals(self.store, appid, edge_id, since, lifted, keep=members, edge_groups=self.edge_groups)
        lifts = site_lifts(lifted)
        if members is not None and lifts:
            keep = members({lift[0] for lift in lifts})
            lifts = [lift for lift in lifts if lift[0] in keep]
        return {syncwire.REFUSALS: syncwire.encode_refusals(refused), syncwire.LIFTS: syncwire.encode_lifts(lifts)}

    def liftclaims(self, appid, person_id, lifted_by) -> dict:
        """Lift the lockout of `person_id`'s claims at every door (each at its next sync) and start
        their count again (docs/daemon.md#a-stolen-badge-gets-a-few-tries)."""
        self.store.get_person(appid, person_id)  # a person of this appid, else PERSON_UNKNOWN
        at = time.time()
        self.store.lift_claims(appid, person_id, at, lifted_by)
        log.warning("claims of %s: lockout lifted by %s; every door takes it at its next sync", person_id, lifted_by)
        return {"person_id": person_id, "lifted_at": at}

    def _trim_access_log(self) -> None:
        """Records past [storage] access_log_days go, with their crops (on an upload): nothing
        ever deleted them, faces included."""
        if self.access_log_s > 0:
            self._trim("access log", "record(s)", self.access_log_s, self.store.trim_access_log)

    def _trim_verify_log(self) -> None:
        self._trim("verify log", "row(s)", self.verify_log_s, self.store.trim_verify_log)

    def _trim(self, what: str, rows: str, keep_s: float, trim: Callable[[float], int]) -> None:
        """`trim` what is older than `keep_s`, at most once per TRIM_EVERY_S for each `what`."""
        now = time.monotonic()
        if now - self._trimmed_at.get(what, float("-inf")) < TRIM_EVERY_S:
            return
        self._trimmed_at[what] = now
        removed = trim(time.time() - keep_s)
        if removed:
            log.info("%s: %d %s older than %.0f days deleted", what, removed, rows, keep_s / 86400)

    # --- model packs (one pack per site: edges pull the hub's) ------------------------------
    def _served_packs(self) -> tuple[Path, list[str]]:
        from edge.vision.pipeline import default_models_dir

        return Path(self.vision.models_dir or default_models_dir()), [self.vision.precision, *self.vision.also_embed]

    def packs(self, appid) -> dict:
        from edge.modelpack.share import listing

        models_dir, names = self._served_packs()
        # Only packs whose embeddings this hub makes (and stores): not a folder rebuilt under it.
        stored = set(self.vision.fingerprints)
        return {"packs": [p for p in listing(models_dir, names) if p["embedder_fingerprint"] in stored]}

    def packfile(self, appid, pack, name, offset) -> dict:
        from edge.modelpack.share import read_chunk

        models_dir, names = self._served_packs()
        chunk = read_chunk(models_dir, names, pack, name, offset)
        if chunk is None:
            raise ApiError(errors.INVALID_PARAMETER, f"{name!r} is not a file of a pack this hub serves")
        return chunk

    def health(self) -> dict:
        store = self.store.health()
        out: dict = {"models_loaded": self.vision.loaded, "store": store}
        if not store.get("ok", True):
            out["error"] = f"store: {store.get('error', 'failing')}"
        if self.vision.loaded:
            out["fingerprint"] = self.vision.primary.fingerprint
        return out


def _with(liveness: dict | None) -> dict:
    """The answer's `liveness` extension field, absent with [liveness] mode = off."""
    return {} if liveness is None else {"liveness": liveness}
