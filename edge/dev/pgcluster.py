"""A throwaway PostgreSQL cluster, for the tests and `bench hub --store`.

    with throwaway_cluster() as url:     # postgresql://edge@%2Ftmp%2Fedge-pg-XXXX:PORT/postgres
        ...

`initdb` makes a cluster in a temporary folder, `pg_ctl` starts it with its socket in that
private folder and no TCP listener (trust authentication: only the account that runs it, and
root, can reach the socket; on 127.0.0.1 any local user could log in as its superuser) and stops
it, and the folder goes. Durability is switched off (fsync, synchronous_commit): nothing in
a throwaway cluster must survive a power cut, and the tests stay quick.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` account (Debian's
postgresql package creates it) and lives in a folder of /tmp that account can enter.
`ClusterUnavailable` says why when neither is possible (no binaries, root without that account).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from edge.dev.localenv import free_port

SUPERUSER = "edge"


class ClusterUnavailable(RuntimeError):
    """No throwaway cluster can be started here (the message says why and what to install)."""


def pg_binary(name: str) -> str | None:
    """`initdb`/`pg_ctl` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def _owner() -> pwd.struct_passwd | None:
    """The account the cluster runs as: None for the current one, `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterUnavailable("initdb refuses to run as root and there is no `postgres` account "
                                 "(apt-get install postgresql creates it)") from None


@contextmanager
def throwaway_cluster(parent: str | Path | None = None, *, start_timeout_s: int = 30) -> Iterator[str]:
    """Start a cluster; yield its URL (superuser `edge`, database `postgres`); stop and remove it."""
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise ClusterUnavailable("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
    owner = _owner()
    # As root the folder must be one the postgres account can reach: pytest's are private to root.
    base = Path(tempfile.mkdtemp(prefix="edge-pg-", dir=None if owner else parent))
    run_as: dict = {}
    if owner:
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    data = base / "data"
    try:
        _run([initdb, "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync",
              "--no-instructions"], base, run_as)
        port = _start(pg_ctl, data, base, run_as, start_timeout_s)
        try:
            # its socket in the private folder, no TCP listener: with trust auth, a listener on
            # 127.0.0.1 let any local user in as the superuser (COPY ... FROM PROGRAM runs commands)
            yield f"postgresql://{SUPERUSER}@{quote(str(base), safe='')}:{port}/postgres"
        finally:
            subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], check=False, cwd=base,
                           capture_output=True, timeout=60, **run_as)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _start(pg_ctl: str, data: Path, base: Path, run_as: dict, timeout_s: int) -> int:
    """pg_ctl start on a free port (another one when a racing process took it); returns it."""
    for _ in range(3):
        port = free_port()
        options = (f"-c listen_addresses='' -p {port} -k {base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        done = subprocess.run([pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w",
                               "-t", str(timeout_s), "-o", options, "start"],
                              cwd=base, check=False, capture_output=True, text=True, timeout=timeout_s + 30, **run_as)
        if done.returncode == 0:
            return port
    log = (base / "server.log").read_text(errors="replace")[-2000:] if (base / "server.log").exists() else ""
    raise ClusterUnavailable(f"pg_ctl start failed: {done.stderr.strip()} {log}")


def _run(cmd: list[str], cwd: Path, run_as: dict) -> None:
    done = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=120, **run_as)
    if done.returncode != 0:
        raise ClusterUnavailable(f"{Path(cmd[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
