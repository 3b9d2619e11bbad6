"""Fixtures of the PostgreSQL tests: one throwaway cluster for the test session (edge.dev.pgcluster:
initdb + pg_ctl on a free loopback port, stopped at the end) and a fresh database per user.

`hub_processes(tmp, url, n)` starts n real `edge-verifier hub` processes over one database.

Tests that need it skip with the reason when no cluster can be started here (no PostgreSQL
binaries: `make test` installs Debian's postgresql when it runs as root).
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.dev.devstack import wait_healthy
from tests.conftest import MODELS, ROOT, free_port


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory) -> Iterator[str]:
    """URL of the session's cluster (superuser, database `postgres`)."""
    from edge.dev.pgcluster import ClusterUnavailable, throwaway_cluster

    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"psycopg is not installed ({exc}): pip install -e '.[test]'")
    try:
        with throwaway_cluster(tmp_path_factory.mktemp("pg")) as url:
            yield url
    except ClusterUnavailable as exc:
        pytest.skip(f"no throwaway PostgreSQL cluster: {exc}")


def new_database(cluster_url: str) -> str:
    """A new empty database on the cluster; returns its URL."""
    import psycopg

    name = f"edge_{secrets.token_hex(6)}"
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database of the session's cluster, for one test."""
    return new_database(pg_cluster)


@dataclass
class HubProcess:
    """One `edge-verifier hub` OS process; signs its requests like `HubServer`."""

    url: str
    appid: str
    secret_id: str
    secret_key: str
    proc: subprocess.Popen

    def client(self, **kw):
        from edge.api.client import CloudClient

        return CloudClient(self.url, self.appid, self.secret_id, self.secret_key, **kw)


def _toml_value(value) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists of them read the same in TOML


def write_hub_config(path: Path, port: int, store_url: str, secret_key: str, **sections) -> Path:
    """A hub TOML for `edge-verifier hub --config`; `sections` overrides tables like start_hub."""
    from tests.support.hub import APPID, SECRET_ID

    tables = {
        "server": {"host": "127.0.0.1", "port": port},
        "storage": {"url": store_url},
        "limits": {"rate_per_s": 0},
        "vision": {"models_dir": str(MODELS), "precision": "int8"},
    }
    for name, overrides in sections.items():
        tables[name] = {**tables.get(name, {}), **overrides}
    from edge.hub.face_crops import add_key

    secrets_file = path.with_name("hub-secrets.toml")  # one crop key for the hubs of a test
    add_key(secrets_file)  # once: a second call keeps the key
    lines = [f"secrets_file = {_toml_value(str(secrets_file))}"]
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    lines += ["[[credentials]]", f'appid = "{APPID}"', f'secret_id = "{SECRET_ID}"', f'secret_key = "{secret_key}"']
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds a secret key: the hub refuses a readable one
    return path


@contextmanager
def hub_processes(tmp_dir: Path, store_url: str, count: int = 2, **sections) -> Iterator[list[HubProcess]]:
    """`count` real hub processes (`python -m edge hub`), each on its own loopback port, over the
    same database; stopped with SIGTERM when the block exits."""
    from tests.support.hub import APPID, SECRET_ID

    key = secrets.token_hex(16)
    hubs: list[HubProcess] = []
    try:
        for i in range(count):
            port = free_port()
            cfg = write_hub_config(Path(tmp_dir) / f"hub{i}.toml", port, store_url, key, **sections)
            log = open(Path(tmp_dir) / f"hub{i}.log", "wb")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge", "hub", "--config", str(cfg), "--log-level", "warning"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            hubs.append(HubProcess(f"http://127.0.0.1:{port}", APPID, SECRET_ID, key, proc))
        for hub in hubs:
            if not wait_healthy(int(hub.url.rsplit(":", 1)[1]), hub.proc):
                logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(Path(tmp_dir).glob("hub*.log")))
                raise RuntimeError(f"hub process at {hub.url} did not become healthy:\n{logs}")
        yield hubs
    finally:
        for hub in hubs:
            hub.proc.send_signal(signal.SIGTERM)
        for hub in hubs:
            try:
                hub.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                hub.proc.kill()
                hub.proc.wait(timeout=10)




@pytest.fixture(params=["sqlite", "postgresql"])
def hub_store(request, tmp_path):
    """An empty hub store, once on SQLite (in tmp_path) and once on a fresh PostgreSQL database."""
    from edge.hub.store import open_store

    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""
    store = open_store(url, str(tmp_path / "hub.sqlite3"))
    yield store
    store.close()
