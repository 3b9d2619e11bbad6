"""The second factor in a real daemon run (docs/access.md#second-factor): real models on real
photos (a camera looping over a drop folder), a real hub on loopback holding the rules and the
five enrolled persons (group staff), a real mosquitto carrying the signed cmd/verify claims a
badge reader sends; the door backend `none` stands for the relay.

Door `main` wants face + claim at all times. Madonna's badge with Elton John's face is denied;
Madonna's badge with her face opens once; the same signed claim sent again is refused and
opens nothing (identify is off: only claims decide here).
"""

from __future__ import annotations

import json
import shutil
import time

from tests.conftest import free_port, wait_until
from tests.support.broker import DaemonProc, edge_command, write_edge_config
from tests.support.hub import hub_with_five_enrolled

ALL_WEEK = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "00:00", "to": "24:00"}]
RULES = {"format": 1, "timezone": "UTC", "groups": ["staff"],
         "doors": [{"id": "main", "auth": [{"schedule": "always", "auth": "face+claim"}]}],
         "schedules": {"always": ALL_WEEK},
         "access_levels": [{"id": "staff-main", "groups": ["staff"], "doors": ["main"], "schedule": "always"}]}


def test_face_and_claim_in_a_real_daemon_badge_of_another_and_replay_never_open(
        mosquitto, subscribe, mqtt_sender, faces_dir, models_dir, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    sub = subscribe("test/door-2f/door/main/event")
    def send(payload: dict) -> None:
        mqtt_sender.publish("test/door-2f/cmd/verify", json.dumps(payload), qos=1).wait_for_publish(5)
        time.sleep(0.5)  # the daemon holds the claim before the face shows up

    def show(photo: str | None) -> None:
        for f in drop.iterdir():
            f.unlink()
        if photo is None:
            time.sleep(0.6)  # the previous face leaves the picture (its track ends)
        else:
            shutil.copy(faces_dir / "five_celebrity" / photo, drop / "face.jpg")

    def acted() -> list[tuple[str, str, str]]:
        return [(e["person_id"], e["kind"], e["reason"]) for e in sub.json("/door/main/event")
                if e["kind"] in ("grant", "deny") and e.get("person_id")]

    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        client = hub.client(timeout=30.0, retries=0)
        version = client.setrules(json.dumps(RULES))["version"]
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-2f", camera=f"files:{drop}/*",
                                broker=mosquitto, hub=hub, storage=tmp_path / "data", api_port=port, loop=True,
                                sections={"identify": {"enabled": False},
                                          "door": {"backend": "none", "name": "main", "unlock_s": 1,
                                                   "log_face_crops": True}})
        daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["sync"].get("status") == "ok" and h["mqtt"]["connected"]
                               and h["door"]["rules"]["version"] == version, 60)
            send(edge_command("verify", person_id="madonna", request_id="badge-of-madonna"))
            show("Elton_John/val_1.jpg")  # the attack: another person's badge
            assert sub.wait_for(lambda: len(acted()) >= 1, 30), daemon.log.read_text()[-2000:]
            show(None)
            claim = edge_command("verify", person_id="madonna", request_id="badge-2")
            send(claim)
            show("Madonna/val_1.jpg")
            assert sub.wait_for(lambda: len(acted()) >= 2, 30), daemon.log.read_text()[-2000:]
            show(None)
            send(claim)  # the same signed claim again, as recorded off the air
            assert wait_until(lambda: "MQTT command refused (signature" in daemon.log.read_text(), 10)
            show("Madonna/val_1.jpg")
            time.sleep(3.0)  # long enough for a claim to be decided (the first ones took < 1 s)
            assert len(acted()) == 2  # no claim waited: nothing was decided, nothing opened
            show(None)
            send(edge_command("verify", person_id="elton_john", request_id="badge-3"))
            show("Madonna/val_1.jpg")  # the daemon still sees faces: the next claim is decided
            assert sub.wait_for(lambda: len(acted()) >= 3, 30), daemon.log.read_text()[-2000:]
        finally:
            assert daemon.terminate() == 0
    assert acted() == [("madonna", "deny", "not_accepted:decision_reject"), ("madonna", "grant", "granted"),
                       ("elton_john", "deny", "not_accepted:decision_reject")]
    # [door] log_face_crops: each decision's face is in the log, sealed with the edge's key
    from edge.daemon.log_key import own_log_key
    from edge.door.access_log import AccessLog
    from edge.door.log_crops import CropSeal

    key = own_log_key(tmp_path / "data", make=False)  # the log's own key, never the local API's
    assert key is not None
    log = AccessLog(tmp_path / "data" / "access-log.db", key)
    decisions = [r for r in log.records(0, 1000) if r["kind"] == "decision"]
    assert [(r["person_id"], r["outcome"], r["detail"].get("claim")) for r in decisions] == [
        ("madonna", "deny", "madonna"), ("madonna", "grant", "madonna"), ("elton_john", "deny", "elton_john")]
    crops = log.crops(0, 1000)
    assert sorted(crops) == [r["seq"] for r in decisions] and log.verify().ok
    jpeg = CropSeal.from_edge_key(key).open(decisions[1]["event_id"], crops[decisions[1]["seq"]])
    assert jpeg.startswith(b"\xff\xd8")  # a JPEG of the face
