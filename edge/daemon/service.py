"""The edge's face API service: /face/verify, /face/identify, /face/compare on the device,
and /edge/claim (a verify claim for the camera path).

Answers from the local gallery (the last synced state) with the same policy as the camera
path (edge.daemon.decide): uncertain or locally unknown -> the hub, hub down -> offline policy.
Served by the shared HTTP layer (edge.api), so a door terminal posts an image to the edge
exactly as it would to the cloud. Every other operation answers 24 (FaceService default).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Callable, Sequence

from edge.api.service import FaceService, compare_images, judged_liveness
from edge.core import errors
from edge.core.conditions import Condition
from edge.core.domain import Decision, Source
from edge.core.errors import ApiError
from edge.core.matcher import Gallery, confidence

if TYPE_CHECKING:
    import numpy as np

    from edge.daemon.claims import Claims
    from edge.daemon.decide import Decider
    from edge.daemon.priority import CameraFirst
    from edge.vision.pipeline import Pipeline


class EdgeService(FaceService):
    role = "edge"

    def __init__(self, pipeline: Pipeline, gallery: Callable[[], Gallery], decider: Decider, *,
                 identify_groups: Sequence[str] = (), health: Callable[[], dict[str, Any]] | None = None,
                 claims: Claims | None = None, priority: CameraFirst | None = None, liveness: str = "off"):
        self.pipeline = pipeline
        self.gallery = gallery
        self.decider = decider
        self.identify_groups = list(identify_groups)
        self._health = health or (lambda: {})
        self.claims = claims  # edge.daemon.claims.Claims of the camera path; None: not served
        self.priority = priority  # edge.daemon.priority.CameraFirst: the camera path goes first
        self.liveness = liveness  # [liveness] mode, as at the camera: one image is judged as one frame

    def _embed(self, image: bytes) -> np.ndarray:
        return self._probe(image, liveness=False, gate=False)[0]  # compare: a similarity, no decision

    def _probe(self, image: bytes, liveness: bool = True,
               gate: bool = True) -> tuple[np.ndarray, dict | None, Condition]:
        """The largest face's embedding, unless [liveness] mode is off its `liveness` answer
        field, judged on the face's x2.7 context crop of the whole image (require mode refuses an
        attack with -1110, edge.api.service.judged_liveness), and its condition. A face the
        camera path would not decide on (the quality gate: too small, blurred, turned) is -1101
        here too: it was decided, at the threshold of a large frontal face."""
        from edge.vision import decode_image
        from edge.vision.image import decode_slots

        judge = liveness and self.liveness != "off"
        with decode_slots:  # the full-size image lives only inside a slot
            bgr = decode_image(image)
            if self.priority is None:
                faces = self.pipeline.analyze(bgr, max_faces=1)
                result = self.pipeline.check_liveness(bgr, faces[0]) if judge and faces else None
            else:
                with self.priority.background():
                    faces = self.pipeline.analyze(bgr, max_faces=1)
                    result = self.pipeline.check_liveness(bgr, faces[0]) if judge and faces else None
            del bgr
        if not faces or faces[0].embedding is None:
            raise ApiError(errors.NO_FACE)
        quality = faces[0].quality
        if gate and not quality.ok:
            raise ApiError(errors.NO_FACE, f"the face cannot be decided on: {quality.reason} (the quality gate)")
        return (faces[0].embedding, None if result is None else judged_liveness(self.liveness, result),
                Condition.of(quality))

    def verify(self, appid: str, person_id: str, image: bytes) -> dict:
        emb, liveness, condition = self._probe(image)
        extra = {} if liveness is None else {"liveness": liveness}
        # the face's condition: its band's margin, as on the camera path (without it a small or
        # turned face was decided at a large frontal face's threshold)
        out = self.decider.verify(self.gallery(), emb, person_id, lambda: image, condition=condition)
        if out.reason is not None and out.score is None:  # withheld: beyond what the door decides on
            raise ApiError(errors.NO_FACE, f"the face cannot be decided on: {out.reason}")
        cloud = out.cloud
        if cloud is not None and cloud.code:  # the hub answered with an error (e.g. -1303): pass it on
            raise ApiError(cloud.code, cloud.message)
        if out.score is None and out.source is not Source.CLOUD:
            raise ApiError(errors.PERSON_UNKNOWN,
                           "person not in this device's cache and the hub cannot be asked")
        if out.source is Source.CLOUD and cloud is not None and cloud.session_id:
            return {"session_id": cloud.session_id, "confidence": float(cloud.confidence or 0.0),
                    "ismatch": out.decision is Decision.ACCEPT, **extra}
        # Local or offline-policy answers: `ismatch` follows the decision (the policy included).
        return {"session_id": f"edge-{uuid.uuid4().hex}", "confidence": out.confidence or 0.0,
                "ismatch": out.decision is Decision.ACCEPT, **extra}

    def identify(self, appid: str, group_ids: Sequence[str], image: bytes) -> dict:
        emb, liveness, _condition = self._probe(image)
        gallery = self.gallery()
        groups = list(group_ids) or self.identify_groups
        if groups and not gallery.group_ids.intersection(groups):
            raise ApiError(errors.GROUP_UNKNOWN, f"none of {groups} is synced to this device")
        res = gallery.identify(emb, groups or None)
        return {"session_id": f"edge-{uuid.uuid4().hex}",
                "candidates": [{"person_id": c.person_id, "face_id": c.face_id,
                                "confidence": confidence(c.score, gallery.thresholds), "tag": c.tag}
                               for c in res.candidates],
                **({} if liveness is None else {"liveness": liveness})}

    def compare(self, appid: str, image_a: bytes, image_b: bytes) -> dict:
        return compare_images(self._embed, image_a, image_b, self.gallery().thresholds)

    def claim(self, appid: str, person_id: str, timeout_s: object, request_id: object) -> dict:
        """A badge reader or PIN pad claims an identity for the next face the camera sees."""
        if self.claims is None:
            return super().claim(appid, person_id, timeout_s, request_id)
        self.claims.open(person_id, timeout_s, request_id)
        return {"person_id": person_id}

    def health(self) -> dict:
        return self._health()
