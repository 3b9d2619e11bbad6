"""The `[door]` section of the edge config: which backend drives the lock, the lock's type, the
door's timings and the gpio pins. Declared once (pydantic): defaults and descriptions are the
documentation `edge-verifier config example edge` prints (docs/door.md has the reference).

Flat but for two sub-tables, `[door.osdp]` and `[door.wiegand]` (their models live beside the
code that uses them: edge/door/osdp.py, edge/door/wiegand.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge.core.settings import Section, require_usable_key
from edge.door.osdp import OsdpSettings
from edge.door.wiegand import WiegandSettings

Backend = Literal["none", "gpio", "mqtt", "osdp"]
LockType = Literal["fail-secure", "fail-safe"]


class DoorSettings(Section):
    backend: Backend = Field(
        "none", description="What opens the lock: none (no hardware: the door's state machine runs and\n"
        "reports, nothing moves) | gpio (a relay and inputs on the Pi's header) | mqtt (a signed\n"
        "command to an external controller) | osdp (a reader link to the site's panel). docs/door.md.")
    name: str = Field("main", description="This door's name: part of its MQTT topics "
                      "(<prefix>/<device>/door/<name>/...).", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    lock_type: LockType = Field(
        "fail-secure", description="What a released relay means: fail-secure = released is locked (energise to\n"
        "unlock: a stopped, crashed or unpowered edge leaves the door locked); fail-safe = released is\n"
        "unlocked (energise to lock: a stopped edge leaves the door UNLOCKED; docs/door.md).")
    mode: Literal["normal", "locked_down"] = Field(
        "normal", description="Mode at start: normal (the access rules grant) | locked_down (nobody is "
        "granted).\nThe door always starts locked; `unlocked` mode is never a start-up state.")
    clock_check: Literal["kernel", "off"] = Field(
        "kernel", description="kernel: the synced rules' unlocked windows open the door only while the kernel "
        "says the clock is\nsynchronised (an NTP client: timesyncd, chrony); the door stays in normal mode "
        "meanwhile. off: the\nwall clock is trusted as it is (a real-time clock kept by hand; docs/door.md).")
    groups: list[str] = Field(default_factory=list, description="Groups whose accepted persons may pass "
                              "(empty: [identify] groups; both empty: every accepted person).")
    unlock_s: float = Field(3.0, gt=0, le=60, description="How long a grant unlocks the door.")
    max_unlock_s: float = Field(10.0, gt=0, le=300, description="However many grants follow each other, the "
                                "relay is unlocked at most this long in a row\n(normal mode), then locked.")
    relock_on_open: bool = Field(True, description="Lock again as soon as the contact says the door opened "
                                 "(one grant, one passage).")
    open_grace_s: float = Field(1.0, ge=0, le=10, description="A door that opens this soon after it locked "
                                "again still counts as opened by its grant (a slow latch).")
    held_open_s: float = Field(30.0, gt=0, le=3600, description="An authorised opening longer than this raises the "
                               "held-open alarm.")
    held_prealarm_s: float = Field(10.0, ge=0, le=3600, description="The held-open pre-alarm sounds this long before "
                                   "the alarm (0: none).")
    exit_unlocks: bool = Field(True, description="The exit button unlocks the door (else it only authorises "
                               "the opening: a mechanical exit).")
    exit_stuck_s: float = Field(30.0, gt=0, le=3600, description="An exit button held longer than this is stuck: "
                                "ignored until released, reported.")
    input_events_max: int = Field(10, ge=1, le=1000, description="Contact and tamper events per input per "
                                  "input_events_window_s; beyond: one `input_flapping` event.")
    input_events_window_s: float = Field(10.0, gt=0, le=300, description="Window of input_events_max.")
    open_on_offline_allow: bool = Field(
        False, description="An accept made by [policy] offline = \"allow\" (the hub unreachable, the face\n"
        "between the thresholds) opens the door too. Off: it is published, the door stays locked\n"
        "(cutting the network must not be a way in; docs/door.md).")
    remote_unlock: bool = Field(False, description="Accept the signed single-use MQTT command cmd/unlock "
                                "(off: ignored; docs/door.md#remote-unlock).")
    remote_unlock_keys: list[str] = Field(
        default_factory=list, description="The SecretIds of the local keys ([api] credentials, or "
        "api-key.toml's) whose cmd/unlock opens\nthe door (empty: any local key's, the badge reader's "
        "too: give the unlocking client a key of\nits own and name it here).")
    # gpio (BCM numbers; gpiozero)
    pin_factory: Literal["", "lgpio", "mock"] = Field(
        "", description="gpio: gpiozero's pin factory: empty = gpiozero's choice (GPIOZERO_PIN_FACTORY, "
        "else lgpio\non a Pi) | lgpio | mock (no hardware: tests and demos).")
    relay_pin: int = Field(17, ge=4, le=27, description="gpio: BCM pin of the lock relay (not 0-3: the "
                           "board pulls 2 and 3 up, 0 and 1 are the HAT ID lines;\nnot 14 or 15: the serial "
                           "console's lines; docs/door.md#wiring).")
    relay_active_high: bool = Field(True, description="gpio: the relay module energises on a high pin "
                                    "(false: on a low pin, as many opto-isolated boards).")
    contact_pin: int = Field(27, ge=-1, le=27, description="gpio: BCM pin of the door contact "
                                    "(to ground through the switch; -1: no contact).")
    contact_closed_when_door: Literal["closed", "open"] = Field(
        "closed", description="gpio: the contact switch is closed when the door is closed (NC loop, the "
        "usual reed\ncontact: a cut wire reads as open) or when it is open (NO).")
    exit_pin: int = Field(22, ge=-1, le=27, description="gpio: BCM pin of the exit button "
                                 "(normally open, to ground; -1: none).")
    tamper_pin: int = Field(23, ge=-1, le=27, description="gpio: BCM pin of the tamper switch "
                                   "(closed while the enclosure is shut; -1: none).")
    bounce_s: float = Field(0.05, ge=0, le=1, description="gpio: input debounce time.")
    # mqtt
    mqtt_appid: str = Field("", description="mqtt: appid the relay commands are signed as.")
    mqtt_secret_id: str = Field("", description="mqtt: SecretId of the relay commands' key.")
    mqtt_secret_key: str = Field("", description="mqtt: SecretKey the relay commands are signed "
                                 "with (the controller holds the same).")
    # osdp, wiegand: sub-tables (docs/osdp-wiegand.md)
    osdp: OsdpSettings = Field(default_factory=OsdpSettings,
                               description="osdp: the reader link to the site's panel "
                               "(backend = \"osdp\"; the gpio pins above are its relay and inputs).")
    wiegand: WiegandSettings = Field(default_factory=WiegandSettings,
                                     description="Wiegand out: each face grant's card as a pulse train on "
                                     "two gpio pins (backend gpio or osdp).")
    # none
    simulate_inputs: str = Field("", description="none: a file whose appended lines (`contact open`, "
                                 "`exit press`, `tamper on`, ...)\nare read as inputs: for demos and "
                                 "tests only (empty: off).")
    # access log (edge.door.access_log; docs/access.md#the-access-log)
    log_retention_days: float = Field(
        365.0, ge=0, description="Access log records older than this many days are deleted once the hub "
        "holds them\n(without a hub, at that age; 0: keep everything).")
    log_crops_max_bytes: int = Field(
        1 << 30, ge=0, description="The face crops (log_face_crops) keep at most this many bytes on the card; the\n"
        "oldest are deleted beyond it, hourly, whatever log_retention_days says (0: no budget). A busy\n"
        "door's year of crops is gigabytes.")
    log_face_crops: bool = Field(
        False, description="Keep each decision's face crop with its access log record, sealed (AES-256-GCM\n"
        "under a key derived from the access log's own key, <storage>/log-key; the record holds its\nsha256). "
        "Off: no image is kept.")
    upload_face_crops: bool = Field(
        False, description="Send the sealed face crops to the hub with their records (log_face_crops on);\n"
        "the hub stores them sealed and cannot open them.")

    @model_validator(mode="after")
    def _consistent(self) -> DoorSettings:
        if self.unlock_s > self.max_unlock_s:
            raise ValueError("unlock_s must not exceed max_unlock_s")
        if self.relay_pin in (14, 15):
            raise ValueError("relay_pin 14 and 15 are the serial console's lines (14 is high while it runs): "
                             "the relay would be energised at boot; use another pin")
        if self.backend == "mqtt":  # its commands are signed: a key anyone knows signs nothing
            require_usable_key(self.mqtt_secret_key, "[door] mqtt_secret_key")
        pins = [p for p in (self.relay_pin, self.contact_pin, self.exit_pin, self.tamper_pin) if p >= 0]
        if self.wiegand.enabled:
            if self.backend not in ("gpio", "osdp"):
                raise ValueError("wiegand.enabled needs backend = \"gpio\" or \"osdp\" (its lines are gpio pins)")
            pins += [self.wiegand.d0_pin, self.wiegand.d1_pin]
        if self.backend in ("gpio", "osdp") and len(pins) != len(set(pins)):
            raise ValueError("the gpio pins must be distinct (relay_pin, contact_pin, exit_pin, tamper_pin"
                             + (", wiegand.d0_pin, wiegand.d1_pin)" if self.wiegand.enabled else ")"))
        if self.backend == "osdp" and not self.osdp.secrets_file:
            raise ValueError("osdp.secrets_file is required with backend = \"osdp\" (the secure channel key)")
        return self

    def holds_secrets(self) -> bool:
        return bool(self.mqtt_secret_key)
