"""The dev stack writes its configs with a TOML writer: any path stays the path it was."""

from __future__ import annotations

from edge.daemon.config import load
from edge.dev.devstack import edge_config, write_toml


def test_a_path_with_quotes_and_backslashes_reaches_the_daemon_settings_unchanged(tmp_path):
    odd = tmp_path / 'door "A"\\ data'  # an f-string TOML line would break on the quote
    frames = tmp_path / "it's\\frames"

    class Hub:
        url, appid, secret_id, secret_key = "http://127.0.0.1:9", "1", "AKIDx", 'k"e\\y' * 4

    cfg = write_toml(tmp_path / "edge.toml", edge_config(
        device="door-1", source=f"files:{frames}/*", storage=odd, api_port=8080, hub=Hub,
        identify={"groups": ["staff"]}), private=True)
    settings = load(cfg)
    assert settings.storage.path == odd
    assert settings.camera.source == f"files:{frames}/*"
    assert settings.hub.secret_key == Hub.secret_key and settings.identify.groups == ["staff"]
    assert settings.mqtt.enabled is False
    assert cfg.stat().st_mode & 0o777 == 0o600
