"""The daemon as a systemd service: config, READY/WATCHDOG/STOPPING, SIGTERM, bad config."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tomllib

import pytest

from edge.core.settings import ConfigError
from edge.daemon.config import EdgeSettings, example_toml, load
from tests.conftest import free_port, wait_until
from tests.support.broker import EDGE_VERIFIER, DaemonProc, Subscriber, edge_client, write_edge_config


def test_the_printed_example_config_is_complete_and_loads():
    proc = subprocess.run([str(EDGE_VERIFIER), "config", "example", "edge"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == example_toml().strip()
    values = tomllib.loads(proc.stdout)
    for section in ("device", "camera", "identify", "verify", "policy", "mqtt", "hub", "api", "storage", "vision"):
        assert section in values
    # Its [hub] key is a placeholder anyone has read: refused until one is generated.
    with pytest.raises(ValueError, match="published example key"):
        EdgeSettings(**values)
    values["hub"]["secret_key"] = "a-generated-key-0123456789abcdef"
    settings = EdgeSettings(**values)
    assert settings.policy.offline == "deny" and settings.mqtt.include_face_image is False
    # [door]'s sub-tables, every key shown with its default (the optional gpiochip commented out)
    assert values["door"]["osdp"] == settings.door.osdp.model_dump()
    assert values["door"]["wiegand"] == settings.door.wiegand.model_dump(exclude={"chip"})
    assert "\n# chip =\n" in proc.stdout and settings.door.osdp.relay == "local"
    assert settings.door.wiegand.enabled is False


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    cfg = tmp_path / "e.toml"
    cfg.write_text('[mqtt]\nhost = "from-file"\n[device]\nid = "door-9"\n')
    monkeypatch.setenv("EDGE_VERIFIER_MQTT__HOST", "from-env")
    s = load(cfg)
    assert (s.mqtt.host, s.device.id) == ("from-env", "door-9")


def test_a_wrong_value_fails_at_start_naming_the_key(tmp_path):
    cfg = tmp_path / "e.toml"
    cfg.write_text('[policy]\noffline = "sometimes"\n')
    with pytest.raises(ConfigError, match="policy.offline"):
        load(cfg)
    proc = subprocess.run([str(EDGE_VERIFIER), "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "policy.offline" in proc.stderr


def _notify_socket(tmp_path, timeout: float) -> tuple[str, socket.socket]:
    """The datagram socket systemd would give the service as NOTIFY_SOCKET: (its path, it)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(timeout)
    return path, sock


def test_systemd_gets_ready_watchdog_and_stopping_and_sigterm_says_offline(mosquitto, models_dir, tmp_path):
    sock_path, sock = _notify_socket(tmp_path, timeout=0.2)
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-sd", camera=f"files:{tmp_path}/none/*",
                            broker=mosquitto, storage=tmp_path / "data", api_port=port)
    sub = Subscriber(mosquitto, "test/door-sd/availability")
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    log = (tmp_path / "d.log").open("wb")
    proc = subprocess.Popen([str(EDGE_VERIFIER), "run", "--config", str(cfg)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    got: list[str] = []
    try:
        def three_watchdog_pings() -> bool:
            try:
                got.append(sock.recv(4096).decode())  # waits up to the socket's timeout
            except socket.timeout:
                assert proc.poll() is None, (tmp_path / "d.log").read_text()
            return sum("WATCHDOG=1" in g for g in got) >= 3

        wait_until(three_watchdog_pings, 60, every=0)
        assert got and got[0].startswith("READY=1")
        assert sum("WATCHDOG=1" in g for g in got) >= 3  # pinged from the loop, camera down or not
        assert sub.wait_for(lambda: sub.messages and sub.messages[-1][1] == b"online", 10)
        proc.terminate()
        assert proc.wait(20) == 0
        while True:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                break
        assert any(g.startswith("STOPPING=1") for g in got)
        assert sub.wait_for(lambda: sub.messages[-1][1] == b"offline", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close()
        sock.close()
        log.close()


def test_the_daemon_starts_and_serves_health_while_broker_and_hub_are_unreachable(models_dir, tmp_path):
    class Nowhere:
        host, port = "127.0.0.1", free_port()

    class DeadHub:
        url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1", "k", "s"

    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-x", camera=f"files:{tmp_path}/none/*",
                            broker=Nowhere, hub=DeadHub, storage=tmp_path / "data", api_port=port)
    daemon = DaemonProc(cfg, port, tmp_path / "d.log").start()
    try:
        h = daemon.wait_health(lambda h: h["sync"].get("status") == "offline", 60)
        assert h["mqtt"]["connected"] is False and "unreachable" in h["sync"]["last_error"]
        assert json.dumps(h)  # answers while everything it talks to is down
    finally:
        assert daemon.terminate() == 0


def test_a_helper_thread_that_ended_is_reported_in_the_retained_state(mosquitto, models_dir, tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # the local API's port is taken
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-busy", camera=f"files:{tmp_path}/none/*",
                            broker=mosquitto, storage=tmp_path / "data", api_port=port)
    sub = Subscriber(mosquitto, "test/door-busy/state")
    daemon = DaemonProc(cfg, port, tmp_path / "d.log").start()
    try:
        assert sub.wait_for(lambda: sub.json(), 60), (tmp_path / "d.log").read_text()[-3000:]
        state = sub.json()[-1]
        assert state["threads"]["api"] is False and state["threads"]["mqtt-outbox"] is True
        assert state["status"] == "degraded"
        assert daemon.proc.poll() is None  # the door itself keeps running
    finally:
        assert daemon.terminate() == 0
        sub.close()
        busy.close()


def test_the_shipped_watchdog_outlasts_the_slowest_loop_turn_of_the_example_config():
    from pathlib import Path

    from edge.daemon.watchdog import worst_loop_turn_s

    unit = (Path(__file__).parent.parent.parent / "systemd" / "edge-verifier.service").read_text()
    watchdog_s = float(next(line.split("=", 1)[1] for line in unit.splitlines()
                            if line.startswith("WatchdogSec=")))
    values = tomllib.loads(example_toml())
    values["hub"]["secret_key"] = "a-generated-key-0123456789abcdef"  # the example's is refused
    settings = EdgeSettings(**values)
    settings.hub.url = settings.hub.url or "http://hub.invalid"
    # Every face of a frame asked of a slow hub, with all retries: still one ping in time.
    assert worst_loop_turn_s(settings) < watchdog_s


def test_a_watchdog_shorter_than_the_slowest_loop_turn_is_warned_about_at_start(models_dir, tmp_path):
    class DeadHub:
        url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1", "k", "s"

    sock_path, sock = _notify_socket(tmp_path, timeout=60)
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-wd", camera=f"files:{tmp_path}/none/*",
                            broker=None, hub=DeadHub, storage=tmp_path / "data", api_port=port)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "10000000"}  # 10 s < 4 x 5 s
    log = tmp_path / "d.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(EDGE_VERIFIER), "run", "--config", str(cfg)], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
        try:
            assert sock.recv(4096).decode().startswith("READY=1")
            assert "reaches WatchdogSec 10s" in log.read_text()
        finally:
            proc.terminate()
            proc.wait(20)
            sock.close()


@pytest.mark.parametrize("key", ["prefix", "ha_prefix"])
def test_an_mqtt_wildcard_in_a_topic_prefix_fails_at_start_naming_the_key(tmp_path, key):
    cfg = tmp_path / "e.toml"
    cfg.write_text(f'[mqtt]\n{key} = "doors/#"\n')
    with pytest.raises(ConfigError, match=f"mqtt.{key}"):
        load(cfg)


def test_the_daemon_runs_the_lite_pack_with_its_own_calibrated_thresholds(models_dir, faces_dir, tmp_path):
    from edge.core.false_admit import band_margins, door_limits
    from edge.core.matcher import CALIBRATED_THRESHOLDS

    class DeadHub:  # credentials for the local API; nothing listens there
        url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1", "AKIDlite", "lite-key"

    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-lite", camera=f"files:{tmp_path}/none/*",
                            broker=None, hub=DeadHub, storage=tmp_path / "data", api_port=port,
                            sections={"policy": {"accept": 0.45}})
    cfg.write_text(cfg.read_text().replace("[vision]\n", '[vision]\nprecision = "int8-lite"\n', 1))
    daemon = DaemonProc(cfg, port, tmp_path / "d.log").start()
    lite = CALIBRATED_THRESHOLDS["int8-lite"]
    packs = json.loads((models_dir / "models.json").read_text())["packs"]
    edge = edge_client(port, timeout=30, retries=0)
    try:
        h = daemon.wait_health(lambda h: True, 60)
        assert (h["pack"], h["fingerprint"]) == ("int8-lite", packs["int8-lite"]["embedder_fingerprint"])
        # the override, else the pack's own; identify's (no face synced yet) is never under accept
        # [identify] rule auto: the lite pack has no template tables, so the best face
        assert h["thresholds"] == {"accept": 0.45, "reject": lite.reject, "identify": 0.45,
                                   "identify_rule": "best", "identify_rate_per": "approach", "verify_rate_per": "claim",
                                   "false_admit_rate": 1e-3,
                                   # the pack's condition margins and the door's limits (edge.core.false_admit)
                                   "conditions": {"margins": band_margins("int8-lite"), "limits": door_limits()}}
        # This same-person pair scores 0.284 on the lite pack: confidence >= 40 (uncertain) under
        # its own reject threshold, < 40 (reject) under the default pack's 0.3074.
        madonna = faces_dir / "five_celebrity" / "Madonna"
        out = edge.compare((madonna / "val_1.jpg").read_bytes(), (madonna / "val_4.jpg").read_bytes())
        assert 40 <= out["similarity"] < 70
    finally:
        edge.close()
        assert daemon.terminate() == 0
    # measured not to hold its false-admit rate on CFP: the installer is told at start
    log = (tmp_path / "d.log").read_text()
    assert "pack int8-lite: false_admit_rate 0.001 may not hold: on CFP, held out" in log and "use int8" in log


def test_a_pack_that_does_not_exist_or_thresholds_out_of_order_fail_at_start(tmp_path):
    cfg = tmp_path / "e.toml"
    cfg.write_text('[vision]\nprecision = "int4"\n')
    with pytest.raises(ConfigError, match="vision.precision"):
        load(cfg)
    # Only the reject threshold is set: it is checked against the lite pack's calibrated accept.
    from edge.core.matcher import CALIBRATED_THRESHOLDS

    accept = CALIBRATED_THRESHOLDS["int8-lite"].accept
    too_high = round(accept + 0.01, 2)
    cfg.write_text(f'[vision]\nprecision = "int8-lite"\n[policy]\nreject = {too_high}\n')
    with pytest.raises(ConfigError, match=rf"policy.reject \({too_high}\) must not exceed policy.accept \({accept}\)"):
        load(cfg)
    cfg.write_text(f'[vision]\nprecision = "int8-lite"\n[policy]\nreject = {round(accept - 0.01, 2)}\n')
    assert load(cfg).vision.precision == "int8-lite"

