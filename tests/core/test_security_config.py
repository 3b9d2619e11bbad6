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
@pytest.mark.parametrize("key", ["...", "\u2026", "change-me-32-random-characters--", "SecretKey"])
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


@pytest.mark.parametrize("role, text, key", [
    # the badge reader's key limited to claims: `call` for `calls` left it every call
    ("edge", '[[api.credentials]]\nappid = "2"\nsecret_id = "AKID2"\nsecret_key = "{k}"\ncall = ["claim"]\n',
     "api.credentials.0.call"),
    ("edge", '[identify]\ngroup = ["staff"]\n', "identify.group"),  # every group synced and let in
    ("edge", '[mqtt]\ncommands_device_bond = true\n', "mqtt.commands_device_bond"),
    ("edge", '[door]\nremote_unlock_key = ["AKID2"]\n', "door.remote_unlock_key"),
    ("hub", '[liveness]\nmod = "require"\n', "liveness.mod"),  # attacks left unrefused
    # a door's key bound to its edge: `edgeid` gave the door a key for the whole appid
    ("hub", '[[credentials]]\nappid = "7"\nsecret_id = "AKID7"\nsecret_key = "{k}"\nedgeid = "door-7"\n',
     "credentials.0.edgeid"),
    ("hub", '[server]\ntls_crt = "/etc/hub.pem"\n', "server.tls_crt"),  # plain http served
])
def test_a_misspelt_key_in_a_section_is_refused_with_its_path(tmp_path, role, text, key):
    """Only an unknown section was refused: an unknown key inside one was dropped without a word
    and the setting kept its default, often the open one (the rows above). docs/door.md promised
    that wrong values stop the daemon with the key's path."""
    cfg = _private(tmp_path / f"{role}.toml", text.format(k="a-real-generated-key-0123456789"))
    loader = edge_config.load if role == "edge" else hub_config.load
    with pytest.raises(ConfigError, match="Extra inputs are not permitted") as refused:
        loader(cfg)
    assert key in str(refused.value)



def test_a_secrets_file_hub_edgekey_wrote_still_loads(tmp_path):
    """`hub edgekey` wrote `calls = []` (a field of the edge's local API keys) into every key it
    added: with unknown keys refused, the hub would have refused its own secrets file. It writes
    a hub key's fields only now, and the files written before still load; a hub key that names
    calls is refused (a hub key has no call limit, and a silent one would be taken as one)."""
    from edge.hub.config import read_secrets_file
    from edge.hub.edge_keys import add_edge_key

    written = tmp_path / "new.toml"
    add_edge_key(written, "7", "door-7", ("staff",))
    assert "calls" not in written.read_text() and read_secrets_file(written)[0].edge_id == "door-7"
    before = _private(tmp_path / "old.toml", '[[credentials]]\nappid = "7"\nsecret_id = "AKIDdoor7"\n'
                      'secret_key = "a-real-generated-key-0123456789"\nedge_id = "door-7"\ncalls = []\n')
    assert read_secrets_file(before)[0].edge_id == "door-7"
    limited = _private(tmp_path / "limited.toml", before.read_text().replace("calls = []", 'calls = ["sync"]'))
    with pytest.raises(ConfigError, match="calls: Extra inputs are not permitted"):
        read_secrets_file(limited)


def test_an_unknown_key_from_the_environment_names_its_variable(tmp_path, monkeypatch):
    """A hub-only variable left in a shared environment (EDGE_VERIFIER_STORAGE__URL) stopped the
    edge with `edge.toml: ... storage.url: Extra inputs are not permitted`: nobody found it in
    the file. The variable is named."""
    cfg = _private(tmp_path / "edge.toml", "[device]\nid = \"door-1\"\n")
    monkeypatch.setenv("EDGE_VERIFIER_STORAGE__URL", "postgresql://x@y/z")
    with pytest.raises(ConfigError, match=r"EDGE_VERIFIER_STORAGE__URL \(environment\): storage\.url: Extra"):
        edge_config.load(cfg)


def test_an_unknown_key_in_a_json_valued_variable_names_that_variable(tmp_path, monkeypatch):
    """A section set whole from one JSON-valued variable (EDGE_VERIFIER_DOOR='{...}') with a
    misspelt key inside was blamed on EDGE_VERIFIER_DOOR__UNLCK_S, a variable nobody had set."""
    cfg = _private(tmp_path / "edge.toml", "[device]\nid = \"door-1\"\n")
    monkeypatch.setenv("EDGE_VERIFIER_DOOR", '{"unlck_s": 3}')
    with pytest.raises(ConfigError, match=r"EDGE_VERIFIER_DOOR \(environment\): door\.unlck_s: Extra"):
        edge_config.load(cfg)


def test_a_password_in_a_configured_url_makes_the_file_one_to_keep_private(tmp_path):
    """A PostgreSQL password in the hub's [storage] url (the key to every face and card), or a
    camera's in the edge's [camera] source, sat in a file any local user could read: only keys
    counted as secrets. A url with a password counts; one with a user name alone does not (the
    docs keep the database's password in ~/.pgpass, hub.toml readable)."""
    def readable(name: str, text: str):
        path = tmp_path / name
        path.write_text(text)
        path.chmod(0o644)
        return path

    with pytest.raises(ConfigError, match="holds a secret"):
        hub_config.load(readable("hub-pw.toml", '[storage]\nurl = "postgresql://edge:s3cret@127.0.0.1/hub"\n'))
    with pytest.raises(ConfigError, match="holds a secret"):
        hub_config.load(readable("hub-param.toml", '[storage]\nurl = "postgresql://edge@db/hub?password=s3cret"\n'))
    assert hub_config.load(readable("hub.toml", '[storage]\nurl = "postgresql://edge@127.0.0.1/hub"\n'))
    with pytest.raises(ConfigError, match="holds a secret"):
        edge_config.load(readable("edge-cam.toml", '[device]\nid = "door-1"\n[camera]\n'
                                  'source = "opencv:rtsp://admin:s3cret@192.0.2.7/stream1"\n'))
    assert edge_config.load(readable("edge.toml", '[device]\nid = "door-1"\n[camera]\n'
                                     'source = "opencv:rtsp://admin@192.0.2.7/stream1?user=admin"\n'))


@pytest.mark.parametrize("url,secret", [
    ("postgresql://edge@db/hub?target_session_attrs=read-write", False),  # libpq's own parameters
    ("postgresql://edge@db/hub?sslkey=/etc/hub/client.key&sslmode=verify-full", False),
    ("postgresql://edge@db/hub?passfile=/etc/hub/pgpass", False),
    ("postgresql://edge@db/hub?require_auth=scram-sha-256", False),
    ("opencv:rtsp://192.0.2.7:554/live@main", False),  # an @ in the path, a port
    ("opencv:http://192.0.2.7/cgi?signal=1&channel=2", False),
    ("opencv:rtsp://admin:pa/ss@192.0.2.7/x", True),  # a password holding an unencoded /
    ("opencv:rtsp://admin:p@ss@192.0.2.7/x", True),  # ... or an @
    ("opencv:http://192.0.2.7/user=admin&password=s3cret&channel=1", True),  # Dahua's path parameters
    ("postgresql://edge@db/hub?sslpassword=s3cret", True),
    ("opencv:rtsp://[fd00::64]/live@main", False),  # an IPv6 host's colons, an @ in the path
    ("files:/srv/photos/key=1/*.jpg", False),  # a glob, no url
    ("opencv:rtsp://admin:@192.0.2.7/x", False),  # an empty password
    ("opencv:rtsp://admin:s3cret@[fd00::64]/x", True),
    ("https://bucket.example/x.jpg?X-Amz-Signature=abc", True),
])
def test_which_urls_hold_a_secret(url, secret):
    """The first rule counted any parameter whose name held `pass`, `key`, `sig`, `auth`: a hub
    whose config names its client key's path (`sslkey=`), its password file (`passfile=`) or a
    session attribute, readable as the docs allow, was refused at start after the upgrade."""
    from edge.core.redact import holds_password

    assert holds_password(url) is secret


def test_a_broker_client_key_others_can_read_is_refused(tmp_path):
    """[mqtt] key_file is the door's login to the broker (mutual TLS): readable by any local user,
    it let them publish an accept on the door's topic. It was passed to paho unchecked, where
    [api] tls_key was refused; now it is too."""
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n")
    key.chmod(0o644)
    cfg = _private(tmp_path / "edge.toml", f'[device]\nid = "door-1"\n[mqtt]\ntls = true\nkey_file = "{key}"\n'
                   f'cert_file = "{tmp_path / "client.crt"}"\n')
    with pytest.raises(ConfigError, match="MQTT client key holds a secret .* accessible by group/others"):
        edge_config.load(cfg)
    key.chmod(0o600)
    assert edge_config.load(cfg).mqtt.key_file == str(key)


def test_the_state_folder_is_private_made_now_or_by_an_older_release(tmp_path):
    """Made with the umask (0755): its names and sizes say which keys there are and how busy a
    door's log is. A new folder is 0700; one an older release made loses others' access (the
    unit's StateDirectoryMode=0750 keeps its group's)."""
    import os

    from edge.core.settings import private_folder

    new = tmp_path / "new" / "state"
    private_folder(new)
    assert new.stat().st_mode & 0o777 == 0o700
    old = tmp_path / "old"
    old.mkdir()
    os.chmod(old, 0o755)
    private_folder(old)
    assert old.stat().st_mode & 0o777 == 0o750


def test_the_broker_client_key_is_checked_only_where_it_is_read(tmp_path):
    """[mqtt] key_file is read only with MQTT on and TLS: a config that names one with either off
    (a key not yet installed) starts."""
    cfg = _private(tmp_path / "edge.toml", '[device]\nid = "door-1"\n[mqtt]\nenabled = false\n'
                   f'key_file = "{tmp_path / "not-yet.key"}"\n')
    assert edge_config.load(cfg).mqtt.key_file.endswith("not-yet.key")


def test_a_password_given_by_the_environment_is_not_the_files_and_the_refusal_names_the_setting(
        tmp_path, monkeypatch):
    """The check ran on the settings after the environment's overrides: a readable hub.toml with
    no password was refused when the password came from EDGE_VERIFIER_STORAGE__URL (a root-only
    drop-in), and told to chmod a file the hub units' DynamicUser must read. The file's own values
    decide; a refusal names the setting and the ways out."""
    from edge.core.settings import ConfigError

    path = tmp_path / "hub.toml"
    path.write_text('[storage]\nurl = "postgresql://edge@127.0.0.1/hub"\n')
    path.chmod(0o644)
    monkeypatch.setenv("EDGE_VERIFIER_STORAGE__URL", "postgresql://edge:s3cret@127.0.0.1/hub")
    assert hub_config.load(path).storage.url.endswith("/hub")
    monkeypatch.delenv("EDGE_VERIFIER_STORAGE__URL")
    path.write_text('[storage]\nurl = "postgresql://edge:s3cret@127.0.0.1/hub"\n')
    with pytest.raises(ConfigError, match=r"\[storage\] url holds a password.*chmod 600 it.*~/.pgpass"):
        hub_config.load(path)
