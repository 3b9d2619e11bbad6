"""The hub's access rules and the access log in a real daemon run: real models on real photos
(files: camera), a real hub on loopback holding the rules (set with the signed /face/setrules),
a real mosquitto; only the GPIO pins are gpiozero's mock pins.

Ben Afflek (enrolled, group staff) comes to door `main`. Rules that let staff in only on a day
that is not today (in the rules' time zone) keep the relay down, the door event says
`outside_schedule`; rules that let staff in now raise it once. Either way the decision's record
reaches the hub (signed /face/searchlog) and `edge-verifier log verify` finds the daemon's chain
sound.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import zoneinfo
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_until
from tests.door.test_daemon_door import mock_pins, rises  # noqa: F401 (a fixture)
from tests.support.broker import enrol_five, schema_errors, write_edge_config
from tests.support.hub import start_hub

RELAY = 5
MEMBER = "five_celebrity/Ben_Afflek/val_1.jpg"
SCENE = "nonface/skimage_coffee.png"
ZONE = "Europe/Berlin"
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def rules(now_allowed: bool) -> dict:
    """Staff may pass `main` all day every day, or only on the day three days from now: never
    today, whatever the hour the test runs (and not tomorrow, should it cross midnight)."""
    today = dt.datetime.now(zoneinfo.ZoneInfo(ZONE)).weekday()
    days = DAYS if now_allowed else [DAYS[(today + 3) % 7]]
    return {"format": 1, "timezone": ZONE, "groups": ["staff"], "doors": [{"id": "main"}],
            "schedules": {"staff-hours": [{"days": days, "from": "00:00", "to": "24:00"}]},
            "access_levels": [{"id": "staff-main", "groups": ["staff"], "doors": ["main"],
                               "schedule": "staff-hours"}]}


@pytest.mark.parametrize("now_allowed", [False, True], ids=["outside-schedule", "allowed"])
def test_the_hubs_rules_decide_the_door_and_the_record_reaches_the_hub(
        now_allowed, tmp_path, faces_dir, mosquitto, subscribe, mock_pins):  # noqa: F811
    from edge.cli import main as cli
    from edge.daemon.config import load
    from edge.daemon.main import Daemon

    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(faces_dir / SCENE, frames / "00_scene.png")
    shutil.copy(faces_dir / MEMBER, frames / "01_ben_afflek.jpg")
    sub = subscribe("test/door-rules/#")
    with start_hub(tmp_path / "hub") as hub:
        client = hub.client(timeout=30.0, retries=0)
        enrol_five(client, faces_dir)
        version = client.setrules(json.dumps(rules(now_allowed)))["version"]
        cfg = write_edge_config(
            tmp_path / "edge.toml", device="door-rules", camera=f"files:{frames}/*", broker=mosquitto, hub=hub,
            storage=tmp_path / "data", api_port=free_port(), rate=2,
            sections={"identify": {"groups": ["staff"]}, "tracker": {"max_missed": 0},
                      # [door] groups would let him in: the synced rules must be what decides
                      "door": {"backend": "gpio", "relay_pin": RELAY, "unlock_s": 2, "max_unlock_s": 5,
                               "groups": ["staff"], "bounce_s": 0}})
        daemon = Daemon(load(cfg))
        daemon.start()
        for pin in (27, 23):  # the contact and the lid closed (inputs pulled up: closed reads low)
            mock_pins.pin(pin).drive_low()
        relay = mock_pins.pin(RELAY)
        # the first sync brings the rules before the camera's first frame is read
        assert wait_until(lambda: daemon.cache.rules() is not None, 60), daemon.syncer.state
        loop = threading.Thread(target=daemon.loop, daemon=True)
        loop.start()
        try:
            def ben() -> list[dict]:
                return [e for e in sub.json("/door/main/event")
                        if e["kind"] in ("grant", "deny") and e.get("person_id") == "ben_afflek"]

            assert sub.wait_for(lambda: ben(), 90)
            event = ben()[0]
            if now_allowed:
                assert (event["kind"], event["reason"]) == ("grant", "granted")
                assert wait_until(lambda: rises(relay) == 1 and not relay.state, 30)
            else:
                assert (event["kind"], event["reason"]) == ("deny", "outside_schedule")
            assert wait_until(lambda: daemon.camera.state.status == "ended", 30)

            def at_hub() -> list[dict]:
                return client.searchlog(person_id="ben_afflek", kind="decision")["records"]

            assert wait_until(lambda: at_hub(), 30), daemon.uploader.state if daemon.uploader else None
            record = at_hub()[0]
            assert record["event_id"] == event["decision_event_id"]
            assert (record["outcome"], record["reason"], record["rules_version"], record["door"]) == (
                event["kind"], event["reason"], version, "main")
            assert record.get("rule") == ("level:staff-main" if now_allowed else None)
            assert record["score"] > 0 and record["model_version"] and record["gallery_version"].startswith("sync-")
            # the edge said what it runs with its syncs, under the id its log uploads with
            from tests.support.hub import APPID

            (report,) = hub.store.edge_reports(APPID)
            assert (report.edge_id, report.pack, report.liveness) == (
                record["edge_id"], daemon.pipeline.fingerprint, daemon.s.liveness.mode)
            assert "mode normal" in report.door and report.health in ("ok", "degraded") and report.cursor > 0
            door = daemon.state()["door"]
            assert door["rules"] == {"in_force": "synced", "version": version, "refused": None, "error": None,
                                     "rules_invalid": False, "hub_version": version}
            assert wait_until(lambda: daemon.state()["door"]["access_log"]["lag"] == 0, 30)
            state = daemon.state()
            assert state["door"]["access_log"]["upload"]["status"] == "ok" and state["door"]["status"] == "ok"
            assert schema_errors("test/door-rules/state", json.dumps(state).encode()) == []
        finally:
            daemon.stop_event.set()
            loop.join(timeout=10)
            daemon.shutdown()
        assert not [t.name for t in daemon.threads if t.is_alive()]  # the upload thread ended too
    assert rises(relay) == (1 if now_allowed else 0) and not relay.state
    assert cli(["log", "verify", "--config", str(cfg)]) == 0
    # signed with the log's own key, never with the local API's, which badge readers hold
    from edge.daemon.api_key import own_credential
    from edge.door.access_log import AccessLog

    storage = daemon.s.storage.path
    readers = AccessLog(Path(storage) / "access-log.db", own_credential(storage).secret_key.encode())
    assert (Path(storage) / "log-key").stat().st_mode & 0o777 == 0o600
    assert "head signature does not match" in " ".join(readers.verify().problems)
    readers.close()
