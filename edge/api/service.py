"""What the HTTP layer calls: one method per face API operation, arguments already parsed.

The hub implements every method (`edge.hub.service.HubService`); the edge daemon serves
only verify / identify / compare from its local cache. A method a role does not implement
answers code 24 ("endpoint being retired": not served by this role), so SDK clients get a
documented code instead of an HTTP error.

Images arrive as bytes (url inputs are fetched by the HTTP layer first). Methods return the
`data` dict of the success envelope and raise `ApiError` for anything else.
"""

from __future__ import annotations

import uuid
from typing import Callable, Sequence

import numpy as np

from edge.core import errors
from edge.core.credentials import Credential
from edge.core.errors import ApiError
from edge.core.matcher import Thresholds, confidence, cosine


def _not_served(op: str) -> ApiError:
    return ApiError(errors.ENDPOINT_RETIRED, f"/face/{op} is not served by this role")


class FaceService:
    """Base class: every operation answers 24 until a role overrides it."""

    role = "none"

    def newperson(self, appid: str, person_id: str, group_ids: Sequence[str], image: bytes,
                  person_name: str, tag: str) -> dict:
        raise _not_served("newperson")

    def delperson(self, appid: str, person_id: str) -> dict:
        raise _not_served("delperson")

    def addface(self, appid: str, person_id: str, images: Sequence[bytes | ApiError], tag: str) -> dict:
        """`images` may hold an ApiError for an input that failed before (a url download)."""
        raise _not_served("addface")

    def delface(self, appid: str, person_id: str, face_ids: Sequence[str]) -> dict:
        raise _not_served("delface")

    def setinfo(self, appid: str, person_id: str, person_name: str | None, tag: str | None) -> dict:
        raise _not_served("setinfo")

    def getinfo(self, appid: str, person_id: str) -> dict:
        raise _not_served("getinfo")

    def setcredentials(self, appid: str, person_id: str, credentials: Sequence[Credential]) -> dict:
        raise _not_served("setcredentials")

    def getcredentials(self, appid: str, person_id: str) -> dict:
        raise _not_served("getcredentials")

    def setrules(self, appid: str, document: str, expected_version: int | None = None) -> dict:
        raise _not_served("setrules")

    def getrules(self, appid: str) -> dict:
        raise _not_served("getrules")

    def uploadlog(self, appid: str, edge_id: str, records: str, crops: str | None = None) -> dict:
        raise _not_served("uploadlog")

    def searchlog(self, appid: str, filters: dict[str, str], since: float | None, until: float | None,
                  after: str | None, limit: int) -> dict:
        raise _not_served("searchlog")

    def liftclaims(self, appid: str, person_id: str, lifted_by: str) -> dict:
        raise _not_served("liftclaims")

    def getgroupids(self, appid: str) -> dict:
        raise _not_served("getgroupids")

    def getpersonids(self, appid: str, group_id: str) -> dict:
        raise _not_served("getpersonids")

    def getfaceids(self, appid: str, person_id: str) -> dict:
        raise _not_served("getfaceids")

    def getfaceinfo(self, appid: str, face_id: str) -> dict:
        raise _not_served("getfaceinfo")

    def addgroupids(self, appid: str, person_id: str, group_ids: Sequence[str]) -> dict:
        raise _not_served("addgroupids")

    def delgroupids(self, appid: str, person_id: str, group_ids: Sequence[str]) -> dict:
        raise _not_served("delgroupids")

    def verify(self, appid: str, person_id: str, image: bytes) -> dict:
        raise _not_served("verify")

    def identify(self, appid: str, group_ids: Sequence[str], image: bytes) -> dict:
        raise _not_served("identify")

    def compare(self, appid: str, image_a: bytes, image_b: bytes) -> dict:
        raise _not_served("compare")

    def detect(self, appid: str, image: bytes, mode: int) -> dict:
        raise _not_served("detect")

    def sync(self, appid: str, since: int, fingerprint: str, group_ids: Sequence[str], limit: int,
             with_rules: bool = False, report: dict | None = None, refusals_since: int | None = None,
             only_groups: bool = False, vanished_after: str = "") -> dict:
        """`report`: what the edge says it runs (edge.core.syncwire: edge_id and the edge_*
        fields), kept by a hub for its console."""
        raise _not_served("sync")

    def claim(self, appid: str, person_id: str, timeout_s: object, request_id: object) -> dict:
        """POST /edge/claim: the next face seen should be `person_id` (timeout_s, request_id
        optional, as sent)."""
        raise _not_served("claim")

    def packs(self, appid: str) -> dict:
        raise _not_served("packs")

    def packfile(self, appid: str, pack: str, name: str, offset: int) -> dict:
        raise _not_served("packfile")

    def serves(self, op: str) -> bool:
        """True when this role overrides `op` (checked before reading the body or fetching urls)."""
        mine, base = getattr(type(self), op, None), getattr(FaceService, op, None)
        return mine is not None and mine is not base

    def health(self) -> dict:
        """Extra fields for GET /health."""
        return {}


LIVENESS_MODES = ("require", "flag", "off")


def judged_liveness(mode: str, result) -> dict:
    """The `liveness` field of a verify or identify answer (an extension: the legacy envelope
    and fields are unchanged) for `result`, the edge.vision.liveness.Liveness of the image's
    face: {score, verdict, reason, mode}. With mode `require` an attack, or a face the model
    cannot judge (too small, or too close to the image's edges for its x2.7 context crop), is
    refused with PRESENTATION_ATTACK, the field still in the envelope's data; with `flag` the
    caller decides. One image is one frame: no median over frames as at the camera."""
    field = {**result.as_dict(), "mode": mode}
    if mode == "require" and result.verdict != "live":
        why = ("the face is a presentation attack (a print or a screen)" if result.verdict == "attack" else
               f"liveness cannot be judged on this image ({result.reason}): send the whole camera frame")
        raise ApiErrorWithData(errors.PRESENTATION_ATTACK, why, {"liveness": field})
    return field


class ApiErrorWithData(ApiError):
    """An error whose envelope still carries data (compare's fail_flag, for one)."""

    def __init__(self, code: int, message: str | None = None, data: dict | None = None):
        super().__init__(code, message)
        self.data = data or {}


def session_id() -> str:
    """A unique id for one answer, under which the hub records verify decisions."""
    return uuid.uuid4().hex


def compare_images(embed: Callable[[bytes], np.ndarray], image_a: bytes, image_b: bytes,
                   thresholds: Thresholds) -> dict:
    """/face/compare for every role: similarity 0-100, or the failing image's own code with
    `fail_flag` 1 or 2 (which image failed) and the session_id still in the envelope's data."""
    sid = session_id()
    vectors = []
    for flag, data in ((1, image_a), (2, image_b)):
        try:
            vectors.append(embed(data))
        except ApiError as exc:
            raise ApiErrorWithData(exc.code, exc.message,
                                   {"session_id": sid, "similarity": 0.0, "fail_flag": flag}) from None
    return {"session_id": sid, "similarity": confidence(cosine(vectors[0], vectors[1]), thresholds)}
