"""Fixtures of the PostgreSQL tests: one throwaway cluster for the test session (edge.pgcluster:
initdb + pg_ctl on a free loopback port, stopped at the end) and a fresh database per user.

Tests that need it skip with the reason when no cluster can be started here (no PostgreSQL
binaries: `make test` installs Debian's postgresql when it runs as root).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory) -> Iterator[str]:
    """URL of the session's cluster (superuser, database `postgres`)."""
    from edge.pgcluster import ClusterUnavailable, throwaway_cluster

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
