"""cmd/unlock: off unless configured, always signed (even with commands = "trusted"), single use,
bound to this door; a signature bound to unlock is good for nothing else. Each attack below
opened the door before the gate checked it (or would, without the check)."""

from __future__ import annotations

import time

import pytest

from edge.core.signature import Credential, command_purpose, is_command_purpose, sign
from edge.daemon.commands import CommandGate, signed_command

CRED = Credential("1000001", "AKIDunlock", "u" * 32)
API_KEY = {"appid": CRED.appid, "secret_id": CRED.secret_id, "secret_key": CRED.secret_key}  # as [api] credentials


def gate(mode="signed", enabled=True):
    opened: list[tuple[str, str]] = []
    g = CommandGate(mode, [CRED], rate_per_s=0, burst=5, door="main",
                    unlock=(lambda door, who: opened.append((door, who)) or True) if enabled else None)
    return g, opened


def unlock(door="main", **kw):
    return signed_command("unlock", CRED.appid, CRED.secret_id, CRED.secret_key, door=door, **kw)


def test_a_signed_unlock_opens_once():
    g, opened = gate()
    cmd = unlock()
    assert g.handle("unlock", cmd) and opened == [("main", f"{CRED.appid}/{CRED.secret_id}")]  # which key opened
    assert not g.handle("unlock", cmd)  # replayed
    assert g.refused == {"signature": 1} and len(opened) == 1


@pytest.mark.parametrize("mode", ["signed", "trusted"])
def test_unsigned_or_wrongly_bound_unlocks_never_open(mode):
    g, opened = gate(mode)
    assert not g.handle("unlock", {"door": "main"})  # trusted mode does not trust an unlock
    other_door = unlock("back")
    assert not g.handle("unlock", {**other_door, "door": "main"})  # signed for another door
    assert not g.handle("unlock", other_door)
    multi_use = {"door": "main", "authorization": sign(CRED.appid, CRED.secret_id, CRED.secret_key,
                                                        fileid=command_purpose("unlock", "main"))}
    assert not g.handle("unlock", multi_use)
    verify_sig = signed_command("verify", CRED.appid, CRED.secret_id, CRED.secret_key, person_id="main")
    assert not g.handle("unlock", {"door": "main", "authorization": verify_sig["authorization"]})
    stale = {"door": "main", "authorization": sign(CRED.appid, CRED.secret_id, CRED.secret_key, expiry=0,
                                                    now=int(time.time()) - 3600,
                                                    fileid=command_purpose("unlock", "main"))}
    assert not g.handle("unlock", stale)
    assert opened == []


def test_off_unless_configured_and_off_with_commands_off():
    g, opened = gate(enabled=False)
    assert not g.handle("unlock", unlock()) and g.refused == {"disabled": 1}
    g, opened = gate("off")
    assert not g.handle("unlock", unlock()) and opened == []


def test_an_unlock_signature_is_refused_by_the_http_apis():
    assert is_command_purpose(command_purpose("unlock", "main"))


def test_remote_unlock_settings_wire_the_gate(tmp_path):
    from edge.daemon.claims import Claims
    from edge.daemon.config import EdgeSettings

    s = EdgeSettings(storage={"path": tmp_path}, api={"credentials": [API_KEY]},
                     door={"remote_unlock": False})
    assert CommandGate.from_settings(s, Claims(5), None, unlock=lambda d, w: True).unlock is None
    s = EdgeSettings(storage={"path": tmp_path}, api={"credentials": [API_KEY]},
                     door={"remote_unlock": True, "name": "front"})
    g = CommandGate.from_settings(s, Claims(5), None, unlock=lambda d, w: True)
    assert g.unlock is not None and g.door == "front"


def test_a_command_for_another_device_sharing_the_key_is_refused():
    """Two doors named "main" on two devices with the same [api] credentials (one access system
    signing for both): an unlock signed for one, sniffed on the broker, opened the other within
    its 60 s. A command naming its device is taken only there; with commands_device_bound, a
    command that names no device is refused too."""
    opened: list[str] = []

    def device(name: str, bound: bool) -> CommandGate:
        return CommandGate("signed", [CRED], rate_per_s=0, burst=5, door="main", device=name, device_bound=bound,
                           unlock=lambda door, who: opened.append(name) or True)

    for_lobby = unlock(device="lobby")
    assert command_purpose("unlock", "main", "lobby") == "unlock:main/lobby"
    garage = device("garage", bound=False)
    assert not garage.handle("unlock", for_lobby) and garage.refused == {"other_device": 1}
    assert device("lobby", bound=True).handle("unlock", for_lobby) and opened == ["lobby"]
    legacy = unlock()  # f = unlock:main: any device holding the key takes it, unless bound
    assert not device("lobby", bound=True).handle("unlock", legacy)
    assert device("garage", bound=False).handle("unlock", legacy) and opened == ["lobby", "garage"]
    verify = signed_command("verify", CRED.appid, CRED.secret_id, CRED.secret_key, person_id="ann",
                            device="lobby")
    assert not device("garage", bound=True).handle("verify", verify)  # claims and syncs alike
    assert is_command_purpose(command_purpose("sync", None, "lobby"))  # and none is good for the HTTP APIs
    assert is_command_purpose(command_purpose("verify", "ann", "lobby"))


def test_commands_device_bound_comes_from_the_config(tmp_path):
    from edge.daemon.claims import Claims
    from edge.daemon.config import EdgeSettings

    s = EdgeSettings(storage={"path": tmp_path}, device={"id": "lobby"}, api={"credentials": [API_KEY]},
                     mqtt={"commands_device_bound": True})
    g = CommandGate.from_settings(s, Claims(5), None)
    assert (g.device, g.device_bound) == ("lobby", True)
    assert EdgeSettings(storage={"path": tmp_path}).mqtt.commands_device_bound is False


def test_commands_from_others_cannot_use_up_a_signed_unlocks_rate_and_a_limited_one_keeps_its_signature():
    """One bucket served every command and sender, taken after the signature was used up: five
    unsigned verify commands (commands = "trusted": no key, anyone on the broker) kept the signed
    unlock refused, rate_limited, and that unlock, its signature used, was a replay when sent
    again. Each signer has its own rate now, unlocks apart, unsigned commands apart, and a command
    refused for its rate keeps its signature for a retry."""
    opened: list = []
    g = CommandGate("trusted", [CRED], rate_per_s=0.001, burst=5, door="main",
                    unlock=lambda door, who: opened.append(door) or True)
    for i in range(5):
        assert g.handle("verify", {"person_id": f"p{i}"})  # unsigned, anyone's
    assert not g.handle("verify", {"person_id": "p5"}) and g.refused == {"rate_limited": 1}
    assert g.handle("unlock", unlock()) and opened == ["main"]  # its own rate

    signed = CommandGate("signed", [CRED], rate_per_s=0.001, burst=1, door="main",
                         unlock=lambda door, who: opened.append(door) or True)
    assert signed.handle("sync", signed_command("sync", CRED.appid, CRED.secret_id, CRED.secret_key))
    assert signed.handle("unlock", unlock())  # syncs do not use up the unlocks' rate
    limited = unlock()
    assert not signed.handle("unlock", limited) and signed.refused == {"rate_limited": 1}
    signed.limiter = type(signed.limiter)(1.0, 1)  # the rate comes back
    assert signed.handle("unlock", limited) and opened == ["main", "main", "main"]  # not a replay


def test_only_the_keys_named_for_it_may_unlock_and_a_refused_one_keeps_its_signature():
    """Every local key could send cmd/unlock: the badge reader's, which only needs to send
    claims, opened the door as well. [door] remote_unlock_keys names the keys that may; another
    key's unlock is refused before its signature is used up."""
    opened: list = []
    g = CommandGate("signed", [CRED], rate_per_s=0, burst=5, door="main", unlock_keys=["AKIDtheopener"],
                    unlock=lambda door, who: opened.append(who) or True)
    cmd = unlock()
    assert not g.handle("unlock", cmd) and g.refused == {"key_not_allowed": 1} and opened == []
    g.unlock_keys = frozenset({CRED.secret_id})
    assert g.handle("unlock", cmd) and opened == [f"{CRED.appid}/{CRED.secret_id}"]  # not a replay


def test_a_remote_unlocks_door_events_name_no_empty_ids(tmp_path):
    """A remote unlock has no person and no decision: its grant said `"decision_event_id": ""`
    and, refused in locked_down mode, `"person_id": ""` too, where the schema and docs say the
    field is null or absent."""
    from edge.door.backends.none import NoHardware
    from edge.door.controller import DoorController, DoorMode, DoorTiming
    from tests.door.support import Clock

    c = DoorController(NoHardware(), timing=DoorTiming(), clock=Clock())
    c.start()
    c.take_events()
    assert c.grant("", "remote_unlock", source="remote:site/AKIDdesk")
    c.set_mode(DoorMode.LOCKED_DOWN, "test")
    assert not c.grant("", "remote_unlock", source="remote:site/AKIDdesk")
    for e in c.take_events():
        assert "" not in (e.get("person_id"), e.get("decision_event_id")), e
