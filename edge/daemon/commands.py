"""MQTT commands (`<prefix>/<device>/cmd/verify`, `cmd/sync`, `cmd/unlock`): who may command the door.

Anyone who can publish on the broker can reach these topics, so a command is not trusted
because it arrived there. With `[mqtt] commands = "signed"` (the default) a command carries
`"authorization"`: a single-use signature made like the API's (`e=0`) with one of the local
API's credentials, whose `f` names the command (`verify:<person_id>`, `sync`) and whose `t` is
at most `MAX_AGE_S` old; each signature is accepted once. `"trusted"` accepts unsigned commands
(a broker whose ACLs let only the badge reader publish there); `"off"` ignores them all.
In every mode a claim's person_id follows the API's id rules and valid commands are rate
limited. Retained and oversized messages are dropped before this (edge.daemon.mqtt).

`cmd/unlock` (`{"door": "<name>", "authorization": ...}`, `f = unlock:<door>`) opens the door
like a grant: refused unless `[door] remote_unlock = true`, and always signed, even with
`commands = "trusted"` (a broker ACL is not enough to open a door).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from edge.api.ops import check_ident
from edge.api.ratelimit import RateLimiter
from edge.core.errors import ApiError
from edge.core.signature import Credential, ReplayCache, Signature, Verifier, command_purpose

if TYPE_CHECKING:
    from edge.daemon.claims import Claims
    from edge.daemon.config import EdgeSettings
    from edge.daemon.sync import Syncer

log = logging.getLogger("edge.daemon")

NAMES = ("verify", "sync", "unlock")
MAX_AGE_S = 60  # a signed command older (or further ahead) than this is refused
ID_BYTES = 128  # the API's id limit
LOG_EVERY_S = 10.0  # a flood of refused commands logs one line per reason per interval


class CommandGate:
    def __init__(self, mode: str, credentials: Iterable[Credential], *, rate_per_s: float, burst: int,
                 claims: Claims | None = None, syncer: Syncer | None = None,
                 replay: ReplayCache | None = None, clock: Callable[[], float] = time.time,
                 unlock: Callable[[str, str], bool] | None = None, door: str = "main",
                 device: str = "", device_bound: bool = False, unlock_keys: Iterable[str] = ()):
        self.mode = mode
        # `f` may name this device (`…/<device>`); with device_bound it must: a command signed
        # for one door is then never taken by another holding the same [api] key
        self.device, self.device_bound = device, device_bound
        self.clock = clock  # the wall clock signatures' `t` is measured against (tests inject one)
        self.verifier = Verifier(credentials, replay or ReplayCache(window_s=MAX_AGE_S, capacity=10_000))
        self.limiter = RateLimiter(rate_per_s, burst)
        self.claims, self.syncer = claims, syncer
        self.unlock, self.door = unlock, door  # unlock(door, appid): None with remote unlock off
        self.unlock_keys = frozenset(unlock_keys)  # SecretIds whose unlocks open; empty: any local key
        self.refused: dict[str, int] = {}  # reason -> count (reported in state)
        self._logged_at: dict[str, float] = {}

    @classmethod
    def from_settings(cls, s: EdgeSettings, claims: Claims, syncer: Syncer | None, *,
                      clock: Callable[[], float] = time.time,
                      unlock: Callable[[str, str], bool] | None = None) -> CommandGate:
        """Commands are checked against the local API's credentials (never the hub's key); their
        signatures are recorded in the table the local API uses (edge.daemon.signature_log). A
        remote unlock is always signed: with it on, the keys are loaded whatever the mode."""
        from edge.daemon.local_api import credentials
        from edge.daemon.signature_log import replay_cache

        keys = credentials(s) if s.mqtt.commands == "signed" or s.door.remote_unlock else ()
        if s.door.remote_unlock:
            known = {k.secret_id for k in keys}
            if not s.door.remote_unlock_keys:
                log.warning("[door] remote_unlock is on for every local key (the badge reader's too): name the "
                            "unlocking client's key in [door] remote_unlock_keys")
            elif not known & set(s.door.remote_unlock_keys):
                log.warning("[door] remote_unlock_keys names no key this edge has: no cmd/unlock will open the door")
        return cls(s.mqtt.commands, keys, rate_per_s=s.mqtt.commands_per_s,
                   burst=s.mqtt.commands_burst, claims=claims, syncer=syncer,
                   replay=replay_cache(s.storage.path, MAX_AGE_S), clock=clock,
                   unlock=unlock if s.door.remote_unlock else None, door=s.door.name,
                   device=s.device.id, device_bound=s.mqtt.commands_device_bound,
                   unlock_keys=s.door.remote_unlock_keys)

    def handle(self, name: str, payload: dict[str, Any]) -> bool:
        """Apply a command (paho's thread) if it is allowed; False (counted, logged at most
        every LOG_EVERY_S per reason) when it is refused."""
        from edge.daemon import metrics

        try:
            person_id = self._check(name, payload)
        except _Refused as exc:
            metrics.COMMANDS.labels(name if name in NAMES else "other", exc.reason).inc()
            self._refused(name, exc.reason, exc.detail)
            return False
        metrics.COMMANDS.labels(name, "applied").inc()
        if name == "sync":
            if self.syncer is not None:
                self.syncer.trigger()
        elif name == "unlock":
            if self.unlock is not None:  # _check gave the signer
                self.unlock(self.door, person_id or "")
        elif self.claims is not None and person_id is not None:  # verify: _check gave its person_id
            self.claims.open(person_id, payload.get("timeout_s"), payload.get("request_id"))
        return True

    def _check(self, name: str, payload: dict[str, Any]) -> str | None:
        if self.mode == "off":
            raise _Refused("disabled", "[mqtt] commands = off")
        if name not in NAMES:
            raise _Refused("unknown", "no such command")
        if name == "unlock":
            return self._check_unlock(payload)
        person_id = None
        if name == "verify":
            try:
                person_id = check_ident("person_id", payload.get("person_id"), ID_BYTES)
            except ApiError as exc:
                raise _Refused("bad_person_id", f"code {exc.code}: {exc.message}") from None
        _check_fields(payload)
        if self.mode == "signed":
            # The whole command is checked before its single-use signature is used up: a copy
            # sniffed and republished with another person_id (or any field off its schema) is
            # refused without burning the signature of the genuine command still on its way.
            self._use_signature(payload, command_purpose(name, person_id), "commands", call=f"cmd/{name}")
        elif not self.limiter.allow("unsigned"):  # trusted mode: anyone on the broker shares this one
            raise _Refused("rate_limited", "too many commands")
        return person_id

    def _check_unlock(self, payload: dict[str, Any]) -> str:
        """A remote unlock: on only by config, always signed, bound to this door; the signer, as
        `<appid>/<SecretId>`: every [api] credentials entry shares the site's appid, and the
        access log said `remote:<appid>`, not which client opened the door."""
        if self.unlock is None:
            raise _Refused("disabled", "[door] remote_unlock = false")
        if payload.get("door") != self.door:
            raise _Refused("bad_door", "not this device's door")
        _check_fields(payload)
        sig = self._use_signature(payload, command_purpose("unlock", self.door), "unlock", self.unlock_keys,
                                  call="cmd/unlock")
        return f"{sig.appid}/{sig.secret_id}"

    def _use_signature(self, payload: dict[str, Any], bound: str, bucket: str,
                       keys: frozenset[str] = frozenset(), *, call: str) -> Signature:
        """Checks the command's single-use signature made for `bound` by a key that may make
        `call` and uses it up (the last step of a command's checks), within the signer's own
        rate (`bucket`: unlocks apart); the signature. The rate is looked at before the
        signature is used and taken after: one bucket for every command and sender, taken after
        the signature was used up, let anyone on the broker keep the signed unlock refused with
        a few unsigned commands, and each command so refused had lost its signature (a retry
        was a replay)."""
        try:
            now = self.clock()
            sig = self.verifier.verify(_text(payload.get("authorization")), now)
        except ApiError as exc:
            raise _Refused("signature", f"code {exc.code}: {exc.message}") from None
        f = sig.fields.get("f")
        here = f"{bound}/{self.device}"
        if sig.single_use and isinstance(f, str) and f.startswith(f"{bound}/") and f != here:
            raise _Refused("other_device", f"signed for another device ({f}), not {self.device}")
        if not sig.single_use or f not in ((here,) if self.device_bound else (here, bound)):
            raise _Refused("signature", f"needs a single-use signature (e=0) with f={here}"
                                        + ("" if self.device_bound else f" or f={bound}"))
        if (keys and sig.secret_id not in keys) or not self.verifier.credential_of(sig).may_call(call):
            raise _Refused("key_not_allowed", f"key {sig.secret_id} may not send this command")  # its signature kept
        rate_key = f"{bucket}:{sig.appid}:{sig.secret_id}"
        if not self.limiter.would_allow(rate_key):
            raise _Refused("rate_limited", "too many commands of this key")
        try:
            self.verifier.consume(sig, now)
        except ApiError as exc:
            raise _Refused("signature", f"code {exc.code}: {exc.message}") from None
        self.limiter.allow(rate_key)
        return sig

    def _refused(self, name: str, reason: str, detail: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged_at.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged_at[reason] = now
            log.warning("MQTT command refused (%s: %s); %d refused for this reason so far",
                        reason, detail, self.refused[reason])


class _Refused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _check_fields(payload: dict[str, Any]) -> None:
    """The command's optional fields by their schema (edge/schemas/cmd-verify.schema.json):
    checked before the signature is used up, like the rest of the command."""
    timeout = payload.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise _Refused("bad_field", "timeout_s is not a number")
    try:
        float(timeout or 0)  # a 400-digit integer is valid JSON; float() of it (Claims.open) raises
    except OverflowError:
        raise _Refused("bad_field", "timeout_s is out of range") from None
    request_id = payload.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > ID_BYTES):
        raise _Refused("bad_field", f"request_id is not a string of at most {ID_BYTES} characters")
    auth = payload.get("authorization")
    if auth is not None and not isinstance(auth, str):
        raise _Refused("bad_field", "authorization is not a string")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def signed_command(name: str, appid: str, secret_id: str, secret_key: str, *,
                   person_id: str = "", device: str = "", **fields: Any) -> dict[str, Any]:
    """The payload of a signed command, as a badge reader would publish it on cmd/<name>
    (for `device` only, when given)."""
    from edge.core.signature import sign

    bound = command_purpose(name, fields.get("door") if name == "unlock" else person_id, device)
    auth = sign(appid, secret_id, secret_key, expiry=0, fileid=bound)
    return {**({"person_id": person_id} if name == "verify" else {}), **fields, "authorization": auth}
