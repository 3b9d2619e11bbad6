"""`[door] backend = "mqtt"`: the lock belongs to an external controller (a relay board with
its own MQTT client, a PLC); each lock change is a signed single-use command to it on
`<prefix>/<device>/door/<door>/command` (QoS 0, not retained, never queued: a command that
cannot leave now is an error, not a late unlock).

    {"door": "main", "action": "unlock", "relay": "energise", "relock_after_s": 10,
     "seq": 7, "authorization": "<signature>"}

The signature is edge.core.signature's single-use form (e=0) under `[door] mqtt_secret_key`,
with `f = door-relay:<door>:<action>:<relay>:<relock_after_s>:<seq>`: every field the controller
acts on, so that a copy rewritten in any of them fails (`relock_after_s` was outside it: a copy
set to 86400 and delivered first held the door open a day). `relock_after_s` is whole seconds,
so that every controller writes it alike. A controller checks (docs/door.md#mqtt-backend): the
HMAC under the shared key, `t` within 60 s of its clock, `r` (with `t`) not seen before, `f`
equal to the payload's fields; and relocks by itself after `relock_after_s` whatever happens to
the edge.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable

from edge.core.signature import sign
from edge.door.interface import DoorInput, DoorIOError, GrantNotice

if TYPE_CHECKING:
    from edge.door.settings import DoorSettings


def relay_purpose(door: str, action: str, relay: str, relock_after_s: int, seq: int) -> str:
    """The `f` a relay command's signature is bound to: every field of the command but itself."""
    return f"door-relay:{door}:{action}:{relay}:{relock_after_s}:{seq}"


class MqttDoor:
    name = "mqtt"

    def __init__(self, send: Callable[[str, bytes], bool], *, door: str, lock_type: str, appid: str,
                 secret_id: str, secret_key: str, relock_after_s: float):
        self.send, self.door, self.lock_type = send, door, lock_type
        self._cred = (appid, secret_id, secret_key)
        self.relock_after_s = math.ceil(relock_after_s)  # never shorter than asked
        self.seq = 0
        self.sent = self.failed = 0
        self.energised: bool | None = None
        self.last_ok = True

    @classmethod
    def from_settings(cls, s: DoorSettings, send: Callable[[str, bytes], bool]) -> MqttDoor:
        return cls(send, door=s.name, lock_type=s.lock_type, appid=s.mqtt_appid, secret_id=s.mqtt_secret_id,
                   secret_key=s.mqtt_secret_key, relock_after_s=s.max_unlock_s)

    def command(self, energised: bool) -> dict[str, Any]:
        from edge.door.controller import relay_level

        self.seq += 1
        action = "unlock" if relay_level(True, self.lock_type) == energised else "lock"
        appid, secret_id, secret_key = self._cred
        relay = "energise" if energised else "release"
        bound = relay_purpose(self.door, action, relay, self.relock_after_s, self.seq)
        return {"door": self.door, "action": action, "relay": relay, "relock_after_s": self.relock_after_s,
                "seq": self.seq, "authorization": sign(appid, secret_id, secret_key, expiry=0, fileid=bound)}

    def start(self, on_input: Callable[[DoorInput], None]) -> None:
        pass  # the external controller reports its contact itself

    def set_relay(self, energised: bool) -> None:
        payload = json.dumps(self.command(energised), separators=(",", ":")).encode()
        try:
            ok = self.send(f"door/{self.door}/command", payload)
        except Exception as exc:
            ok = False
            why = type(exc).__name__
        else:
            why = "the broker is not connected"
        self.last_ok = ok
        if not ok:
            self.failed += 1
            raise DoorIOError(f"relay command not sent: {why}")
        self.sent += 1
        self.energised = energised

    def announce_grant(self, notice: GrantNotice) -> None:
        pass

    def indicate(self, what: str) -> None:
        pass

    def health(self) -> dict[str, Any]:
        return {"status": "ok" if self.last_ok else "error",
                "commands_sent": self.sent, "commands_failed": self.failed}

    def close(self) -> None:
        pass
