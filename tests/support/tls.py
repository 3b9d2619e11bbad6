"""A throwaway certificate authority made at test time (trustme), and server certificates from it.

trustme (on `cryptography`) is made for exactly this: a CA and leaf certificates in memory in
milliseconds, with no openssl command line to shell out to and nothing to skip when it is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate clients trust
    cert: Path  # server certificate chain for 127.0.0.1 and localhost
    key: Path  # its private key, mode 0600


def issue(tmp_dir: Path, ca=None, name: str = "server") -> TlsFiles:
    """Write a CA (new unless given) and a server certificate for 127.0.0.1/localhost to `tmp_dir`."""
    import trustme

    ca = ca or trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost", "::1")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = tmp_dir / f"{name}-ca.pem", tmp_dir / f"{name}.pem", tmp_dir / f"{name}.key"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_path.touch(mode=0o600)
    os.chmod(key_path, 0o600)
    leaf.private_key_pem.write_to_path(str(key_path))
    return TlsFiles(ca_path, cert_path, key_path)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    return issue(tmp_path_factory.mktemp("tls"))
