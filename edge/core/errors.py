"""The face API's error codes (the vendor API's numbers) and the one exception that carries them.

Every layer raises `ApiError` with a documented code; the HTTP layer turns it into the
`{"data": {}, "code": ..., "message": ...}` envelope and the CLI into `{"code", "message"}`.
"""

from __future__ import annotations

OK = 0
BAD_REQUEST = 3
SIGNATURE_EMPTY = 4
SIGNATURE_MALFORMED = 5
APPID_MISMATCH = 6
SIGNATURE_EXPIRED = 9
APPID_UNKNOWN = 10
SECRET_ID_UNKNOWN = 11
SECRET_ID_APPID_MISMATCH = 12
REPLAY = 13
SIGNATURE_INVALID = 14
RATE_LIMITED = 15
BUCKET_UNKNOWN = 16
INVALID_PARAMETER = 21
BODY_TOO_LARGE = 23
# The face API's 1.5 MB: the default cap of a request body (code 23) and of an image fetched from a url.
MAX_BODY_BYTES = 1_572_864
ENDPOINT_RETIRED = 24
AUTH_UNAVAILABLE = 107
INTERNAL_ERROR = 213
NO_FACE = -1101
IMAGE_DECODE_FAILED = -1102
FEATURE_FAILED = -1103
# Not the vendor's (its -1104..-1109 are attribute failures): [liveness] mode = require refused the
# face on an API call, a print or a screen, or a face the liveness model cannot judge.
PRESENTATION_ATTACK = -1110
# This project's too: newperson or addface got a photo with another face of at least half the
# largest one's width; the largest was enrolled, which need not be the person's (edge.hub.service).
SEVERAL_FACES = -1111
# This project's too: a hub key bound to one edge ([[credentials]] edge_id) called an endpoint an
# edge does not need, spoke for another edge, or synced other groups than its own (edge.api.ops).
EDGE_KEY_REFUSED = -1530
# This project's: a key limited to some calls (the edge's [api] credentials `calls`) made another.
KEY_CALL_REFUSED = -1531
FEATURE_STORAGE = -1200
IMAGE_EMPTY = -1300
PARAMETER_EMPTY = -1301
PERSON_EXISTS = -1302
PERSON_UNKNOWN = -1303
PARAMETER_TOO_LONG = -1304
FACE_UNKNOWN = -1305
GROUP_UNKNOWN = -1306
GROUP_LIST_UNKNOWN = -1307
URL_DOWNLOAD_FAILED = -1308
TOO_MANY_FACES = -1309
TOO_MANY_PERSONS = -1310
TOO_MANY_GROUPS = -1311
NEAR_IDENTICAL_FACE = -1312
ILLEGAL_CHARACTERS = -1313
ILLEGAL_IMAGE_FORMAT = -1400
IMAGE_DOWNLOAD_FAILED = -1403

MESSAGES: dict[int, str] = {
    OK: "OK",
    BAD_REQUEST: "bad request",
    SIGNATURE_EMPTY: "signature empty",
    SIGNATURE_MALFORMED: "signature string malformed",
    APPID_MISMATCH: "appid in the signature does not match the request",
    SIGNATURE_EXPIRED: "signature expired",
    APPID_UNKNOWN: "appid does not exist",
    SECRET_ID_UNKNOWN: "SecretId does not exist",
    SECRET_ID_APPID_MISMATCH: "appid and SecretId do not match",
    REPLAY: "replay attack: single-use signature already used",
    SIGNATURE_INVALID: "signature check failed",
    RATE_LIMITED: "rate limited",
    BUCKET_UNKNOWN: "bucket does not exist",
    INVALID_PARAMETER: "invalid parameter",
    BODY_TOO_LARGE: "request body too large",
    ENDPOINT_RETIRED: "endpoint being retired",
    AUTH_UNAVAILABLE: "auth service unavailable",
    INTERNAL_ERROR: "internal error",
    NO_FACE: "face detection failed: no face found",
    IMAGE_DECODE_FAILED: "image decode failed",
    FEATURE_FAILED: "feature processing failed",
    EDGE_KEY_REFUSED: "this key belongs to one edge: it serves only that edge's calls",
    KEY_CALL_REFUSED: "this key may not make this call",
    PRESENTATION_ATTACK: "presentation attack: the face is a print or a screen, or cannot be judged live",
    SEVERAL_FACES: "the image shows more than one face: crop it to the person alone",
    FEATURE_STORAGE: "feature storage error",
    IMAGE_EMPTY: "image empty",
    PARAMETER_EMPTY: "parameter empty",
    PERSON_EXISTS: "person already exists",
    PERSON_UNKNOWN: "person does not exist",
    PARAMETER_TOO_LONG: "parameter too long",
    FACE_UNKNOWN: "face does not exist",
    GROUP_UNKNOWN: "group does not exist",
    GROUP_LIST_UNKNOWN: "group list does not exist",
    URL_DOWNLOAD_FAILED: "url image download failed",
    TOO_MANY_FACES: "too many faces for this person ([limits] faces_per_person)",
    TOO_MANY_PERSONS: "too many persons in the group",
    TOO_MANY_GROUPS: "too many groups",
    NEAR_IDENTICAL_FACE: "near-identical face already added to this person",
    ILLEGAL_CHARACTERS: "illegal characters in a parameter (space, slash, tab, newline)",
    ILLEGAL_IMAGE_FORMAT: "illegal image format",
    IMAGE_DOWNLOAD_FAILED: "image download failed",
}


class ApiError(Exception):
    """A failure with a documented face API code; `message` says what exactly went wrong."""

    def __init__(self, code: int, message: str | None = None):
        self.code = code
        self.message = message or MESSAGES.get(code, "error")
        super().__init__(f"{code}: {self.message}")

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


class StoreUnavailable(RuntimeError):
    """The hub's store cannot be opened: unreachable, a url its driver cannot read, a schema of
    newer code, the driver missing. Any command says it in one line (edge.cli), not a traceback."""
