"""Secrets in configuration: no usable example key, and no secret in a file others can read.

`edge-verifier config example hub` used to print a working [[credentials]] block (appid 1000001,
key change-me-32-random-characters--): a hub started from it served that tenant to anyone who
had read the example. Config files holding a secret key were accepted at mode 0644.
"""

from __future__ import annotations

import subprocess

import pytest

from edge.core.settings import ConfigError
from edge.daemon import config as edge_config
from edge.hub import config as hub_config
from tests.support.broker import EDGE_VERIFIER


def _private(path, text: str):
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


def test_a_hub_started_from_the_printed_example_refuses_to_start_without_a_generated_key(tmp_path):
    example = subprocess.run([str(EDGE_VERIFIER), "config", "example", "hub"], capture_output=True, text=True,
                             check=True).stdout
    cfg = _private(tmp_path / "hub.toml", example.replace("/var/lib/edge-verifier-hub", str(tmp_path)))
    run = subprocess.run([str(EDGE_VERIFIER), "hub", "--config", str(cfg), "--port", "1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "secret_key" in run.stderr and "generate" in run.stderr


@pytest.mark.parametrize("key", ["change-me-32-random-characters--", "", "  "])
def test_published_example_and_empty_keys_are_refused(tmp_path, key):
    cfg = _private(tmp_path / "hub.toml",
                   f'[[credentials]]\nappid = "1000001"\nsecret_id = "AKIDx"\nsecret_key = "{key}"\n')
    with pytest.raises(ConfigError, match="secret_key"):
        hub_config.load(cfg)


def test_an_edge_started_from_the_printed_example_refuses_its_published_hub_key(tmp_path):
    # The example's [hub] key ("...") signed the edge's /edge/claim and cmd/verify (the local API and
    # the commands default to the [hub] credentials): whoever read the example could claim a face.
    example = subprocess.run([str(EDGE_VERIFIER), "config", "example", "edge"], capture_output=True, text=True,
                             check=True).stdout
    cfg = _private(tmp_path / "edge.toml", example.replace("/var/lib/edge-verifier", str(tmp_path)))
    run = subprocess.run([str(EDGE_VERIFIER), "run", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "[hub] appid 100001" in run.stderr and "published example key" in run.stderr


@pytest.mark.parametrize("section", [
    '[hub]\nurl = "https://hub"\nappid = "1"\nsecret_id = "AKID1"\nsecret_key = "{key}"\n',
    '[[api.credentials]]\nappid = "2"\nsecret_id = "AKID2"\nsecret_key = "{key}"\n',
], ids=["hub", "api"])
@pytest.mark.parametrize("key", ["...", "change-me-32-random-characters--", "SecretKey"])
def test_every_credential_of_the_edge_refuses_a_published_example_key(tmp_path, section, key):
    cfg = _private(tmp_path / "edge.toml", section.format(key=key))
    with pytest.raises(ConfigError, match="published example key") as refused:
        edge_config.load(cfg)
    assert key not in str(refused.value).replace("published example key", "")


def test_a_hub_config_with_credentials_readable_by_others_is_refused(tmp_path):
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[[credentials]]\nappid = "7"\nsecret_id = "AKIDseven"\n'
                   'secret_key = "a-real-generated-key-0123456789"\n')
    cfg.chmod(0o644)
    with pytest.raises(ConfigError, match="group/others"):
        hub_config.load(cfg)
    cfg.chmod(0o600)
    assert hub_config.load(cfg).all_credentials()[0].appid == "7"


def test_a_hub_config_without_secrets_may_stay_world_readable(tmp_path):
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'secrets_file = "{_private(tmp_path / "s.toml", "")}"\n[server]\nport = 8090\n')
    cfg.chmod(0o644)
    hub_config.load(cfg)


def test_an_edge_config_holding_the_hub_secret_readable_by_others_is_refused(tmp_path):
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[hub]\nurl = "https://hub"\nappid = "1"\nsecret_id = "AKID1"\nsecret_key = "k-0123456789abcdef"\n')
    cfg.chmod(0o640)
    with pytest.raises(ConfigError, match="group/others"):
        edge_config.load(cfg)
    cfg.chmod(0o600)
    assert edge_config.load(cfg).hub.secret_key == "k-0123456789abcdef"
