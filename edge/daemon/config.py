"""The edge daemon's settings (`edge-verifier run --config FILE`), declared once.

Each field's default and description are the documentation: `example_toml()` renders them as
the commented example that `edge-verifier config example edge` prints, and a wrong value fails
at start-up with the key's path (edge/core/settings.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from edge.api.serving import ListenerSettings
from edge.core.settings import (
    ConfigError,
    DecidingRole,
    Section,
    ThresholdOverrides,
    load_settings,
    refuse_example_key,
    render_example,
    require_private,
    require_usable_key,
)
from edge.door.settings import DoorSettings
from edge.vision.packs import Pack


class DeviceSettings(Section):
    id: str = Field("door-1", description="Device id: part of every MQTT topic and event.",
                    pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class CameraSettings(Section):
    source: str = Field(
        "opencv:0",
        description="Frame source: picamera2 | opencv:<index|rtsp/http url|video file> | "
                    "files:<glob> (plays images as frames).",
    )
    name: str = Field("", description="Camera name reported in events (default: the source).")
    rate: float = Field(5.0, gt=0, le=120, description="Frames per second read from files: and "
                        "the maximum rate the daemon processes any source at.")
    loop: bool = Field(False, description="files: start again after the last image (else the "
                       "camera ends and the daemon idles, serving the API).")
    width: int = Field(1280, ge=64, description="Requested capture width (picamera2/opencv).")
    height: int = Field(720, ge=64, description="Requested capture height (picamera2/opencv).")
    retry_initial_s: float = Field(1.0, gt=0, description="First retry delay after a camera failure.")
    retry_max_s: float = Field(30.0, gt=0, description="Retry delay cap (doubles each failure).")


class TrackerSettings(Section):
    iou: float = Field(0.3, ge=0, le=1, description="Minimum box overlap to continue a track.")
    max_missed: int = Field(5, ge=0, description="Frames a track survives without its face.")
    min_frames: int = Field(1, ge=1, description="Good-quality frames needed before deciding.")
    settle_s: float = Field(1.0, ge=0, description="How long a face that is not accepted at once "
                            "keeps looking for a better frame; then its best frame is decided "
                            "(and asked at the hub when uncertain). An accept is never delayed; "
                            "0 decides on the first good frame.")
    evidence: Literal["best", "fused"] = Field(
        "best", description="What a track is decided on: best (its best single frame) or fused (the mean\n"
        "embedding of its good frames so far, re-scored after each frame). bench door --frames\n"
        "measured best with the fewer strangers admitted (docs/daemon.md#tracks-one-decision-per-face).")


class IdentifySettings(Section):
    enabled: bool = Field(True, description="Identify faces without a claim (1:N in the groups).")
    groups: list[str] = Field(default_factory=list, description="Groups searched by identify; "
                              "also the groups synced from the hub (empty: all).")
    false_admit_rate: float = Field(
        1e-3, gt=0, lt=1, description="Chance that a stranger is admitted as someone, per approach: identify's\n"
        "accept threshold is derived from it, the pack's impostor score tail and the number of\n"
        "faces searched, at every gallery swap (docs/daemon.md#identifys-threshold-follows-the-gallery;\n"
        "claims hold FAR 1e-4: [verify] rate_per).")
    rule: Literal["auto", "best", "best-or-template"] = Field(
        "auto", description="How a face is scored against an enrolled person: best = their best face;\n"
        "best-or-template = the larger of that and their template (the mean of their faces), each person\n"
        "at the threshold and band margins of their own photo count: more members in on the first look,\n"
        "the false-admit rate held in every condition band (measured for int8 and int8-mirror);\n"
        "auto = best-or-template where the pack has it, else best (docs/daemon.md#identify-rules).")
    rate_per: Literal["approach", "look"] = Field(
        "approach", description="What false_admit_rate holds for: approach = the whole track (its first scored\n"
        "frame may spend half the rate, the next a quarter, ...: a stranger's frames are nearly\n"
        "independent chances, bench door --tracks); look = every scored frame alone, the rate then\n"
        "grows with the frames a stranger shows (docs/daemon.md#looks-per-approach).")
    cloud_fallback: bool = Field(
        False, description="Ask the hub's /face/verify about an uncertain identify. Off: it is unknown.\n"
        "The hub runs the same network on a crop of the same frame: near the threshold it\n"
        "re-rolls the dice instead of adding information (bench door --fallback off,hub).")


class VerifySettings(Section):
    claim_timeout_s: float = Field(10.0, gt=0, description="How long a verify claim (MQTT "
                                   "cmd/verify) waits for a face before it ends as unknown.")
    rate_per: Literal["claim", "look"] = Field(
        "claim", description="What the accept threshold's false-accept rate (FAR 1e-4 on the pack's impostor\n"
        "tail) holds for: claim = the whole claim (the claimed person scored as identify scores them: by\n"
        "best face or template at their photo count's own tail under best-or-template, else their faces\n"
        "counted as trials; its first scored frame spending half the rate, the next a quarter, ...);\n"
        "look = each enrolled face and each scored frame alone, the rate then grows with both\n"
        "(docs/daemon.md#claims-hold-their-rate).")
    max_refusals: int = Field(5, ge=0, le=1000, description="Claims of one person refused on the face within\n"
                              "refusal_window_s after which that person's claims are refused at once for lockout_s\n"
                              "(reason claim_locked_out): a stolen badge gets a few tries; 0 = no limit. An admitted\n"
                              "claim clears the count; the offline policy's refusals never count.")
    refusal_window_s: float = Field(600.0, gt=0, le=86400, description="The window max_refusals is counted in.")
    lockout_s: float = Field(300.0, gt=0, le=86400, description="How long a locked-out person's claims are refused.")
    share_refusals: bool = Field(True, description="Take part in the site's count: this door's refusals reach\n"
                                 "the other doors (its access log says which claims it counted) and theirs count\n"
                                 "here (the hub sends them with each sync): a stolen badge then gets max_refusals\n"
                                 "tries at the site, not at each door. Off: this door counts alone.")


class PolicySettings(ThresholdOverrides):
    offline: Literal["deny", "allow", "uncertain"] = Field(
        "deny", description="Decision for an uncertain face when the cloud cannot answer: "
                            "deny (fail-secure) | allow (fail-open) | uncertain (publish as is).")
    cloud_fallback: bool = Field(True, description="Ask the hub's /face/verify when uncertain.")
    stale_accept_s: float = Field(10.0, ge=0, description="An accept that reaches the broker "
                                  "later than this after its decision\n(full disk, broker down) "
                                  "is sent as decision unknown, reason stale_accept; 0 = never.")


class MqttSettings(Section):
    enabled: bool = Field(True, description="Publish events over MQTT.")
    host: str = Field("localhost", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 usual with TLS).")
    # No MQTT wildcards: paho refuses such a topic inside its connect callback, which ended its
    # network thread (never connected again) and would have set every event aside.
    prefix: str = Field("edge-verifier", description="Topic prefix: <prefix>/<device>/...",
                        pattern=r"^[^#+\x00]{1,200}$")
    client_id: str = Field("", description="MQTT client id (default: <prefix>-<device>).")
    username: str = Field("", description="Username (empty: anonymous).")
    password: str = Field("", description="Password.")
    tls: bool = Field(False, description="Use TLS.")
    ca_file: str = Field("", description="CA bundle for TLS (empty: system CAs).")
    cert_file: str = Field("", description="Client certificate for mutual TLS.")
    key_file: str = Field("", description="Client key for mutual TLS (mode 0600: it is the door's login to\n"
                          "the broker).")
    tls_insecure: bool = Field(False, description="Skip the broker hostname check (tests only).")
    keepalive: int = Field(30, ge=5, description="Keepalive seconds (the Last Will fires after "
                           "about 1.5x this when the device dies).")
    reconnect_max_s: float = Field(30.0, gt=0, description="Reconnect backoff cap.")
    ha_discovery: bool = Field(False, description="Publish Home Assistant discovery config.")
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix.",
                           pattern=r"^[^#+\x00]{1,200}$")
    include_face_image: bool = Field(False, description="Put the face crop (base64 JPEG) into "
                                     "events. Off: events carry no biometric data.")
    event_candidates: Literal["decided", "all"] = Field(
        "decided", description="Which enrolled persons an event names in `candidates`: decided = the\n"
        "person an accept admitted, nobody else (the broker is no safe place: every stranger's event\n"
        "listed the three nearest members, with their tags and scores) | all = the three nearest in\n"
        "every event (tuning, on a broker only operators read).")
    commands: Literal["signed", "trusted", "off"] = Field(
        "signed", description="MQTT commands (cmd/verify, cmd/sync): signed = each carries a "
        "single-use\nsignature of the local API's credentials, never the hub's key\n"
        "(docs/security.md#the-edge-and-its-broker);\n"
        "trusted = unsigned accepted (only with broker ACLs letting nobody else publish there; never\n"
        "for cmd/unlock, which is always signed);\n"
        "off = ignored.")
    commands_device_bound: bool = Field(
        False, description="Signed commands must name this device in their f (`unlock:<door>/<device>`,\n"
        "`verify:<person_id>/<device>`, `sync/<device>`), and so must the local API's single-use\n"
        "signatures (`/edge/claim/<device>`). Set it where several devices share [api]\n"
        "credentials: one signed for one is then never taken by another. One naming another\n"
        "device is refused either way.")
    commands_per_s: float = Field(2.0, ge=0, description="MQTT commands applied per second "
                                  "(beyond: ignored); 0 = unlimited.")
    commands_burst: int = Field(5, ge=1, description="MQTT commands applied at once before "
                                "commands_per_s applies.")
    max_message_bytes: int = Field(
        262_144, ge=4096, description="The largest message the broker takes (mosquitto's max_packet_size, a cloud\n"
        "broker's limit). An event over it goes without its face image; one still over it is set\n"
        "aside (outbox_rejected): a broker drops the connection on a message over its limit, and the\n"
        "event, sent first again after every reconnect, held back every event after it.")
    outbox_max: int = Field(100_000, ge=100, description="Events the outbox holds at most; when "
                            "full, the oldest is dropped\n(counted in /health) so the newest "
                            "decisions still go out.")
    outbox_max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024, description="Bytes of events the outbox "
                                  "holds at most (the same: the oldest dropped):\nwith face images "
                                  "(include_face_image, ~41 KB an event) outbox_max alone was 4 GB.")

    @model_validator(mode="after")
    def _private_client_key(self) -> MqttSettings:
        # the door's login to the broker: read by another local user, it publishes the door's
        # events (an accept on its topic) wherever the broker's ACLs let the door
        if self.key_file and self.enabled and self.tls:  # read only then
            try:
                require_private(self.key_file, "MQTT client key")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self


class HubClientSettings(Section):
    url: str = Field("", description="Hub base url (empty: no cloud; sync and fallback off).")
    appid: str = Field("", description="appid on the hub.")
    secret_id: str = Field("", description="SecretId for signing.")
    secret_key: str = Field("", description="SecretKey for signing.")
    ca_file: str = Field("", description="PEM file of the CA that signed the hub's certificate (a private CA);\n"
                         "empty: the system's trusted CAs. The certificate is always verified.")
    timeout: float = Field(3.0, gt=0, description="Per-request timeout (s).")
    retries: int = Field(1, ge=0, le=5, description="Retries on an unreachable hub.")
    breaker_failures: int = Field(3, ge=1, description="Consecutive failures opening the breaker.")
    breaker_reset_s: float = Field(30.0, gt=0, description="Breaker probe interval (s).")
    sync_interval_s: float = Field(60.0, gt=0, description="Seconds between syncs.")
    sync_page: int = Field(500, ge=1, le=1000, description="Changes per sync page.")

    @model_validator(mode="after")
    def _no_example_key(self) -> "HubClientSettings":
        # The edge signs its sync, fallback and pack pulls with it.
        refuse_example_key(self.secret_key, f"[hub] appid {self.appid}")
        return self


# What a local key may be limited to ([api] credentials `calls`): the local API's endpoints and
# the MQTT commands.
LOCAL_CALLS = ("verify", "identify", "compare", "claim", "cmd/verify", "cmd/sync", "cmd/unlock")


class ApiCredential(Section):
    appid: str
    secret_id: str
    secret_key: str
    calls: list[Literal[LOCAL_CALLS]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="The only calls this key may make (others: -1531, a command refused), from\n"
                    "verify, identify, compare, claim (the local API) and cmd/verify, cmd/sync, cmd/unlock\n"
                    "(MQTT). Empty: every one. A badge reader's key: [\"claim\", \"cmd/verify\"], so that a\n"
                    "key read out of a reader cannot identify faces or read their scores.")

    @model_validator(mode="after")
    def _usable_key(self) -> "ApiCredential":
        require_usable_key(self.secret_key, f"[api] credentials appid {self.appid}")
        return self


class ApiSettings(ListenerSettings):
    port: int = Field(8780, ge=0, le=65535, description="Listen port (0: any free port).")
    enabled: bool = Field(True, description="Serve the local face API, /health and /metrics.")
    credentials: list[ApiCredential] = Field(
        default_factory=list,
        description="Signing credentials of the local API and the MQTT commands, as a list of tables\n"
                    "{appid, secret_id, secret_key}; never the [hub] key (refused). Empty: the edge's own\n"
                    "key, made on first start in <storage>/api-key.toml (docs/security.md). A table's\n"
                    "`calls` limits its key (the badge reader's: calls = [\"claim\", \"cmd/verify\"]).")
    rate_per_s: float = Field(5.0, ge=0, description="Local API requests per second per appid "
                              "(code 15 beyond); 0 = unlimited.\nThe camera keeps priority: "
                              "requests wait for the camera's frame in progress.")
    burst: int = Field(10, ge=1, description="Local API requests an appid may send at once.")


class StorageSettings(Section):
    path: Path = Field(Path("/var/lib/edge-verifier"), description="Data directory: the synced "
                       "cache (cache.db), the event outbox (outbox.db) and the claims' lockout (lockout.db).")


class VisionSettings(Section):
    models_dir: Path | None = Field(None, description="Built models (unset: EDGE_VERIFIER_MODELS "
                                    "or <repo>/models).")
    precision: Pack = Field(
        "int8", description="Model pack: int8 (default, SFace), fp32, the cheaper int8-lite /\n"
        "fp32-lite (half the MACs per face; identify's false-admit rate does not hold on CFP with\n"
        "them: docs/daemon.md, Known limits), or int8-mirror (int8 embedding each face and its mirror:\n"
        "more members in on the first try, the embedder twice per face); each pack has its own\n"
        "calibrated thresholds. It must be the hub's pack (see docs/models.md).")
    threads: int | None = Field(None, description="ONNX Runtime threads (unset: all cores).")
    max_faces: int = Field(4, ge=1, description="Faces handled per frame (largest first).")


class LivenessSettings(Section):
    mode: Literal["require", "flag", "off"] = Field(
        "require", description="Presentation-attack detection (prints, phone screens): require refuses\n"
        "a track judged an attack (reject, reason presentation_attack) and decides a track only once\n"
        "`frames` of its frames are scored; flag only reports the verdict in events; off skips it.\n"
        "The local API's /face/verify and /face/identify judge the posted image's face the same way\n"
        "(one frame; require refuses an attack, or a face it cannot judge, with code -1110).")
    frames: int = Field(5, ge=1, le=50, description="Scored frames whose median decides a track's "
                        "liveness (bench liveness measured 5).")
    cues: bool = Field(False, description="Fuse the network with hand-crafted screen cues of its context\n"
                       "crop (bezel lines, colour, glare, spectrum), weights in edge/vision/liveness_fusion.json:\n"
                       "stops more unseen phone replays, but refused more live frames of an unseen backlit\n"
                       "webcam (docs/benchmarks.md, Liveness).")


class EdgeSettings(DecidingRole):
    """Settings of the edge daemon."""

    THRESHOLDS_SECTION = "policy"

    device: DeviceSettings = Field(default_factory=DeviceSettings, description="This device.")
    camera: CameraSettings = Field(default_factory=CameraSettings, description="Frame source.")
    tracker: TrackerSettings = Field(default_factory=TrackerSettings,
                                     description="Following a face across frames.")
    identify: IdentifySettings = Field(default_factory=IdentifySettings,
                                       description="1:N identification without a claim.")
    verify: VerifySettings = Field(default_factory=VerifySettings,
                                   description="1:1 verification of a claimed person.")
    policy: PolicySettings = Field(default_factory=PolicySettings,
                                   description="Decision policy (docs/daemon.md#decision-policy).")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Events over MQTT.")
    hub: HubClientSettings = Field(default_factory=HubClientSettings,
                             description="The hub (cloud face API): sync and fallback.")
    api: ApiSettings = Field(default_factory=ApiSettings, description="Local face API.")
    storage: StorageSettings = Field(default_factory=StorageSettings, description="Data files.")
    vision: VisionSettings = Field(default_factory=VisionSettings, description="Models.")
    liveness: LivenessSettings = Field(default_factory=LivenessSettings,
                                       description="Is the face live, or a print or a screen?")
    door: DoorSettings = Field(default_factory=DoorSettings,
                               description="The door: lock relay, contact, exit button, tamper (docs/door.md).")

    @model_validator(mode="after")
    def _own_keys_for_the_edge(self) -> "EdgeSettings":
        # Refused, not warned: a signature good on the edge's channels (read by any broker client,
        # or in front of the door) would be good on the hub, for the whole tenant (issue 24).
        hub_key = self.hub.secret_key.strip()
        for cred in self.api.credentials:
            if hub_key and cred.secret_key.strip() == hub_key:
                raise ValueError(f"[api] credentials appid {cred.appid} uses the [hub] secret_key: the edge's "
                                 "channels need a key of their own (or leave [api] credentials empty)")
        return self

    # a camera's password (RTSP, HTTP), a hub url's userinfo
    SECRET_URLS: ClassVar[tuple[tuple[str, str], ...]] = (("camera", "source"), ("hub", "url"))

    def holds_secrets(self) -> bool:
        return bool(self.hub.secret_key or self.api.credentials or self.mqtt.password or self.door.holds_secrets())

    def identify_false_admit_rate(self) -> float:
        return self.identify.false_admit_rate

    def identify_rule(self) -> str:
        from edge.core.false_admit import TEMPLATE_RULE, template_photos

        if self.identify.rule == "auto":
            return TEMPLATE_RULE if template_photos(self.vision.precision) else "best"
        return self.identify.rule


def load(path: str | Path | None, **overrides: Any) -> EdgeSettings:
    return load_settings(EdgeSettings, path, **overrides)


def example_toml() -> str:
    return render_example(
        EdgeSettings,
        "edge-verifier edge daemon configuration (edge-verifier run --config FILE)",
        {
            "camera.source": "opencv:0",
            "identify.groups": ["staff"],
            "hub.url": "https://hub.example.org",
            "hub.appid": "100001",
            "hub.secret_id": "AKID...",
            "hub.secret_key": "...",
            "vision.models_dir": "/var/lib/edge-verifier/models",
            "vision.threads": 4,
        },
    )
