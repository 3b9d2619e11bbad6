"""Fixtures of the hub tests (real parts, started for the test session).

`hub_server`: a REAL hub (uvicorn in a thread) on a free loopback port with the built models,
once on a temp SQLite store and once on a PostgreSQL database of the session's throwaway cluster
(every test using it runs on both backends); `.url .appid .secret_id .secret_key .store_path`.
`hub_client`: a `CloudClient` signed for it. `start_hub(tmp_path, **limits)` starts another
one with its own store and limits (tiny count limits, a rate limit, an allow-list...).
"""

from __future__ import annotations

import secrets
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import MODELS, free_port, wait_until
from tests.support.broker import enrol_five

APPID = "1000001"
SECRET_ID = "AKIDhubtest0000000000000000000000001"
OTHER_APPID = "1000002"
OTHER_SECRET_ID = "AKIDhubtest0000000000000000000000002"


@dataclass
class HubServer:
    url: str
    appid: str
    secret_id: str
    secret_key: str
    store_path: Path
    store_url: str = ""
    other_appid: str = OTHER_APPID
    other_secret_id: str = OTHER_SECRET_ID
    other_secret_key: str = ""
    app: object = field(default=None, repr=False)
    store: object = field(default=None, repr=False)

    def client(self, **kw):
        from edge.api.client import CloudClient

        return CloudClient(self.url, self.appid, self.secret_id, self.secret_key, **kw)

    def key_for(self, cred):
        """An edge's [hub] (write_edge_config's `hub`): this hub's url and the key `cred`."""
        from edge.dev.devstack import HubKey

        return HubKey(self.url, cred.appid, cred.secret_id, cred.secret_key)


def served_fingerprint(client) -> str:
    """The fingerprint the hub stores: a sync asking with another is told them (code 21)."""
    from edge.api.client import FingerprintMismatch

    with pytest.raises(FingerprintMismatch) as mismatch:
        client.sync(0, "no-such-fingerprint")
    return mismatch.value.data["fingerprints"][0]


def bind_edge_key(hub_dir: Path, storage: Path):
    """A key of APPID bound to the edge whose [storage] path is `storage` (its id made there as
    its daemon would), in the secrets file of the hub start_hub(hub_dir) starts: call it before."""
    from edge.daemon.edge_id import own_edge_id
    from edge.hub.edge_keys import add_edge_key

    return add_edge_key(Path(hub_dir) / "hub-secrets.toml", APPID, own_edge_id(storage, APPID))


def hub_settings(store_path: Path, port: int, secret_key: str, other_key: str, store_url: str = "", **sections):
    """HubSettings for a test hub; `sections` maps a section name to overrides. Its secrets file
    (beside the store, made once) holds the face crop key, so a restarted hub reads its crops."""
    from edge.hub.config import HubSettings
    from edge.hub.face_crops import add_key

    secrets_file = Path(store_path).parent / "hub-secrets.toml"
    add_key(secrets_file)  # once: a second call keeps the key
    values = {
        "secrets_file": str(secrets_file),
        "server": {"host": "127.0.0.1", "port": port},
        "storage": {"path": str(store_path), "url": store_url},
        "credentials": [
            {"appid": APPID, "secret_id": SECRET_ID, "secret_key": secret_key},
            {"appid": OTHER_APPID, "secret_id": OTHER_SECRET_ID, "secret_key": other_key},
        ],
        "limits": {"rate_per_s": 0},
        "vision": {"models_dir": str(MODELS), "precision": "int8"},
    }
    for name, overrides in sections.items():
        values[name] = {**values.get(name, {}), **overrides}
    return HubSettings(**values)


@contextmanager
def start_hub(tmp_dir: Path, store_url: str = "", **sections) -> Iterator[HubServer]:
    """A real hub on a free loopback port until the block exits (SQLite in `tmp_dir` unless
    `store_url` names another store)."""
    from edge.hub.server import build_app

    port = free_port()
    key, other = secrets.token_hex(16), secrets.token_hex(16)
    store_path = Path(tmp_dir) / "hub.sqlite3"
    settings = hub_settings(store_path, port, key, other, store_url, **sections)
    app, store = build_app(settings)
    listener = settings.server.listener()
    try:
        with serve_app(app, port, listener):
            yield HubServer(f"{listener.scheme}://127.0.0.1:{port}", APPID, SECRET_ID, key, store_path, store_url,
                            other_secret_key=other, app=app, store=store)
    finally:
        store.close()


@contextmanager
def hub_with_five_enrolled(tmp_dir: Path, faces_dir: Path, **sections) -> Iterator[HubServer]:
    """start_hub (with `sections`) and the five_celebrity people enrolled (enrol_five); the
    enrolling client is closed."""
    with start_hub(tmp_dir, **sections) as hub:
        client = hub.client(timeout=30.0, retries=0)
        try:
            enrol_five(client, faces_dir)
        finally:
            client.close()
        yield hub


@contextmanager
def serve_app(app, port: int, listener=None) -> Iterator[None]:
    """Serve an ASGI app with uvicorn on 127.0.0.1:`port` (TLS and limits of `listener`, an
    edge.api.serving.Listener, default ones if None) until the block exits."""
    import dataclasses

    import uvicorn

    from edge.api.serving import Listener, uvicorn_config

    listener = dataclasses.replace(listener or Listener(), host="127.0.0.1", port=port)
    server = uvicorn.Server(uvicorn_config(app, listener, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"api-{port}", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 30, every=0.02)
    if not server.started:
        raise RuntimeError(f"test server on port {port} did not start")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def hub_server(request, tmp_path_factory, models_dir) -> Iterator[HubServer]:
    url = ""
    if request.param == "postgresql":
        from tests.support.pg import new_database

        url = new_database(request.getfixturevalue("pg_cluster"))
    with start_hub(tmp_path_factory.mktemp("hub"), url) as hub:
        yield hub


@pytest.fixture(scope="session")
def hub_client(hub_server):
    client = hub_server.client(timeout=30.0, retries=0)
    yield client
    client.close()


def post(hub: HubServer, op: str, *, json: dict | None = None, files=None, data: bytes | None = None,
         headers: dict | None = None, authorization: str | None = None, appid: str | None = None,
         content_type: str | None = None) -> dict:
    """A raw request shaped like the vendor SDKs' (python-requests); returns the parsed JSON.

    `authorization=None` signs for the hub's appid; pass "" to send no header at all.
    """
    import requests

    from edge.core.signature import sign

    hdrs = dict(headers or {})
    if authorization is None:
        hdrs["Authorization"] = sign(appid or hub.appid, hub.secret_id, hub.secret_key)
    elif authorization:
        hdrs["Authorization"] = authorization
    if content_type:
        hdrs["Content-Type"] = content_type
    resp = requests.post(f"{hub.url}/face/{op}", json=json, files=files, data=data, headers=hdrs, timeout=60)
    body = resp.json()
    body["_status"] = resp.status_code
    return body


def sdk_files(fields: dict, images: dict[str, bytes] | None = None) -> list:
    """multipart parts as the vendor's Python SDK builds them: every field filename-bearing."""
    parts = []
    for key, value in fields.items():
        if isinstance(value, list):
            parts += [(f"{key}[{i}]", (f"{key}[{i}]", str(v))) for i, v in enumerate(value)]
        else:
            parts.append((key, (key, str(value))))
    for name, blob in (images or {}).items():
        parts.append((name, (f"{name}.jpg", blob, "image/jpeg")))
    return parts


def answer_to(address: tuple[str, int], request: bytes, timeout: float = 10) -> bytes:
    """Send raw `request` in one write and read until the server closes (every read has a
    deadline; a reset or a refusal mid-request ends the answer)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return answer


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the server closes (or resets) the connection within `seconds`."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def older_sqlite_store(path: Path, version: int, *without: str) -> int:
    """A hub SQLite store at `path` as a version before this code's wrote it (the tables
    `without` not yet there, `PRAGMA user_version` = `version`); this code's version, which the
    next open upgrades it to."""
    import sqlite3

    from edge.hub.store import SqliteStore
    from edge.hub.store.sqlite import SCHEMA_VERSION

    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.executescript("".join(f"DROP TABLE {t}; " for t in without) + f"PRAGMA user_version = {version};")
    conn.close()
    return SCHEMA_VERSION
