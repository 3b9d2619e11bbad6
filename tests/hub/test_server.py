"""`edge-verifier hub --config FILE` as a real process: config, secrets file, env overrides,
clean shutdown on SIGTERM; `edge-verifier config example hub` is a usable config; `hub keygen`
adds the face crop key the hub needs to start."""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from edge.core.settings import ENV_PREFIX
from edge.hub.config import example_toml
from tests.conftest import ROOT, free_port, wait_until

EXE = [sys.executable, "-m", "edge"]


def write_config(tmp_path: Path, secrets_mode: int = 0o600) -> Path:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[[credentials]]\nappid = "7"\nsecret_id = "AKIDseven"\nsecret_key = "seven-key"\n')
    secrets.chmod(secrets_mode)
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'secrets_file = "{secrets}"\n[server]\nhost = "127.0.0.1"\nport = 1\n'
                   f'[storage]\npath = "{tmp_path / "hub.sqlite3"}"\n')
    return cfg


def test_example_config_parses_and_documents_every_section():
    import tomllib

    text = example_toml()
    data = tomllib.loads(text)
    assert {"server", "storage", "credentials", "limits", "url_fetch", "vision"} <= set(data)
    assert "secrets_file" in text and data["vision"]["precision"] == "int8"
    out = subprocess.run([*EXE, "config", "example", "hub"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and out.stdout == text


def test_hub_serves_with_secrets_file_and_env_override_then_stops_on_sigterm(tmp_path):
    from edge.api.client import CloudClient

    cfg = write_config(tmp_path)
    # Face crops are kept by default: without their key the hub refuses to start and says how.
    out = subprocess.run([*EXE, "hub", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "edge-verifier hub keygen" in out.stderr and "keep_face_crops" in out.stderr
    keygen = subprocess.run([*EXE, "hub", "keygen", "--config", str(cfg)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert keygen.returncode == 0, keygen.stderr
    secrets_file = tmp_path / "secrets.toml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    key = tomllib.loads(secrets_file.read_text())["face_crops"]["key"]
    assert len(base64.b64decode(key)) == 32 and key not in keygen.stdout + keygen.stderr
    assert tomllib.loads(secrets_file.read_text())["credentials"][0]["appid"] == "7"  # kept
    again = subprocess.run([*EXE, "hub", "keygen", "--config", str(cfg)], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
    assert again.returncode == 0 and "already holds" in again.stderr
    assert tomllib.loads(secrets_file.read_text())["face_crops"]["key"] == key  # never replaced
    port = free_port()
    env = {**os.environ, f"{ENV_PREFIX}SERVER__PORT": str(port)}
    proc = subprocess.Popen([*EXE, "hub", "--config", str(cfg), "--log-level", "warning"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        health = None

        def answers() -> bool:
            nonlocal health
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
                return True
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode()
                return False

        assert wait_until(answers, 60, every=0.1), "hub did not start"
        assert health["role"] == "hub"
        with CloudClient(f"http://127.0.0.1:{port}", "7", "AKIDseven", "seven-key") as client:
            assert client.getgroupids() == {"group_ids": []}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_hub_refuses_a_secrets_file_readable_by_others(tmp_path):
    cfg = write_config(tmp_path, secrets_mode=0o644)
    out = subprocess.run([*EXE, "hub", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "accessible by group/others" in out.stderr


def test_hub_refuses_an_invalid_config_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[server]\nport = "not a number"\n')
    out = subprocess.run([*EXE, "hub", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "server.port" in out.stderr


def test_a_hub_on_the_lite_pack_verifies_with_that_packs_thresholds(models_dir, faces_dir, tmp_path):
    from edge.core.matcher import CALIBRATED_THRESHOLDS
    from edge.hub.config import HubSettings
    from tests.support.hub import start_hub

    with pytest.raises(ValueError, match="vision.precision"):
        HubSettings(vision={"precision": "int4"})
    # 0.42 is under the default pack's accept and over the lite pack's: checked against the latter
    lite = CALIBRATED_THRESHOLDS["int8-lite"].accept
    assert lite < 0.42 < CALIBRATED_THRESHOLDS["int8"].accept
    with pytest.raises(ValueError, match=rf"matching.reject \(0.42\) must not exceed matching.accept \({lite}\)"):
        HubSettings(vision={"precision": "int8-lite"}, matching={"reject": 0.42})

    madonna = faces_dir / "five_celebrity" / "Madonna"
    with start_hub(tmp_path, vision={"precision": "int8-lite"}) as hub:
        used, calibrated = hub.app.state.service.thresholds, CALIBRATED_THRESHOLDS["int8-lite"]
        # the pack's calibrated line (the condition margins ride along; the hub judges no condition)
        assert (used.accept, used.reject, used.margin, used.pack) == (
            calibrated.accept, calibrated.reject, calibrated.margin, calibrated.pack)
        client = hub.client(timeout=30.0, retries=0)
        try:
            client.newperson("madonna", ["staff"], (madonna / "val_1.jpg").read_bytes())
            # 0.284 on this pack: over its own reject threshold (0.2509), so confidence >= 40; the
            # default pack's reject (0.3074) would give < 40
            out = client.verify("madonna", (madonna / "val_4.jpg").read_bytes())
        finally:
            client.close()
    assert out["ismatch"] is False and 40 <= out["confidence"] < 70


def test_the_hub_logs_no_url_inputs_signature(models_dir, faces_dir, tmp_path):
    """httpx logged each url input whole at INFO (the hub's default level): a presigned image
    url's signature and token went to the journal, good to whoever read it until they expired.
    Its lines come at debug only, and even there without the query."""
    import http.server
    import socketserver
    import threading

    from edge.dev.devstack import HubProc

    photo = (faces_dir / "five_celebrity" / "Madonna" / "val_1.jpg").read_bytes()

    class Images(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(photo)))
            self.end_headers()
            self.wfile.write(photo)

        def log_message(self, *args):
            pass

    images = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Images)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    port = images.server_address[1]
    url = f"http://127.0.0.1:{port}/bucket/madonna.jpg?X-Amz-Signature=SIGSECRET0123&token=TOKSECRET42"
    try:
        for level in ("info", "debug"):
            hub = HubProc(tmp_path / level, models_dir=models_dir, log_level=level,
                          sections={"url_fetch": {"allow": [f"127.0.0.1:{port}"]}})
            (tmp_path / level).mkdir()
            hub.start()
            try:
                client = hub.client()
                answer = client.call("detect", {"url": url})
                assert len(answer["face"]) == 1, answer
                client.close()
            finally:
                hub.stop()
            logged = (tmp_path / level / "hub.log").read_text()
            assert "SECRET" not in logged
            assert ("HTTP Request: GET http://127.0.0.1" in logged) == (level == "debug"), logged
    finally:
        images.shutdown()
        images.server_close()
