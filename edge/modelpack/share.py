"""One model pack per site: the hub lists and serves the packs it stores embeddings for, and
an edge pulls the one it runs (`edge-verifier models pull`, or `run` by itself).

Wire (signed like every face API call): `/face/packs` lists each pack with its files' names,
sizes and sha256 and the models.json entries that describe them; `/face/packfile` returns one
file's bytes from an offset, at most CHUNK bytes a call (base64 in the JSON envelope), so a
download is resumable, shows progress and needs no other route or framing. The edge checks each
file's size and sha256 and the pack's fingerprint recomputed from them, then installs: files
first (each by rename), models.json last, so a folder is never described by an index it does
not match; a failed install puts back the files it replaced, and a power cut mid-install is
caught by the next start's sha256 check (edge.vision.Pipeline.load).

The hub is trusted with the pack it serves, no further: its listing names model files only
(MODEL_FILE), of a pack's roles, within MAX_FILE_BYTES each, checked before any file of this
machine is read or written. A name like `manifest.toml` once installed the hub's build manifest
in a checkout's models/, whose next `models build` ran the package it named.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from edge.modelpack import versions
from edge.modelpack.fetch import sha256_file

CHUNK = 1 << 20  # bytes per /face/packfile answer (1.4 MB of JSON)
PULL_TIMEOUT_S = 30.0  # per chunk: a Pi on a slow link still gets 1 MB through
# At start, with models installed: how long the hub may take to list its packs before the edge
# starts on the models it has. A hub that accepted and never answered held the start 2 minutes
# (a 30 s timeout, 4 tries): past systemd's start timeout, the door never came up.
START_CHECK_S = 10.0
MODEL_FILE = re.compile(r"[a-z0-9][a-z0-9-]*\.(fp32|int8)\.onnx")
ROLES = frozenset({"detector", "landmarks", "embedder", "liveness"})
NEEDED_ROLES = frozenset({"detector", "landmarks", "embedder"})
MAX_FILE_BYTES = 256 << 20  # the largest model is 37 MB


class PullError(Exception):
    """The pack cannot be pulled or did not verify; nothing was installed."""


def _index(models_dir: Path) -> dict:
    return json.loads((Path(models_dir) / "models.json").read_text())


def pack_fingerprint(files: dict[str, str], sha256: dict[str, str], embedding: str | None = None) -> str:
    """A pack's fingerprint from its role -> file map and the files' sha256 themselves, and its
    models.json "embedding" when it has one: versions.pack_fingerprint, which models build uses."""
    return versions.pack_fingerprint(files, {name: {"sha256": digest} for name, digest in sha256.items()},
                                     embedding)


def listing(models_dir: Path, packs: Iterable[str]) -> list[dict]:
    """What /face/packs answers: each pack with its files and the models.json that describes it alone."""
    meta = _index(models_dir)
    out = []
    for name in packs:
        pack = meta["packs"][name]
        names = sorted(set(pack["files"].values()))
        index = {**{k: v for k, v in meta.items() if k not in ("models", "packs")},
                 "models": {f: meta["models"][f] for f in names}, "packs": {name: pack}}
        out.append({
            "name": name, "fingerprint": pack["fingerprint"], "embedder_fingerprint": pack["embedder_fingerprint"],
            "files": [{"name": f, "size": (Path(models_dir) / f).stat().st_size,
                       "sha256": meta["models"][f]["sha256"]} for f in names],
            "index": index,
        })
    return out


def read_chunk(models_dir: Path, packs: Iterable[str], pack: str, name: str, offset: int) -> dict | None:
    """What /face/packfile answers, or None when `name` is not a file of a served `pack`: only
    listed names are ever opened, so no path the caller writes reaches the file system."""
    meta = _index(models_dir)
    if pack not in packs or name not in meta["packs"].get(pack, {}).get("files", {}).values():
        return None
    path = Path(models_dir) / name
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(min(offset, size))
        data = fh.read(CHUNK)
    return {"pack": pack, "name": name, "offset": min(offset, size), "size": size,
            "sha256": meta["models"][name]["sha256"], "data": base64.b64encode(data).decode()}


def installed(models_dir: Path, pack: dict) -> bool:
    """True when `models_dir` holds exactly this listed pack (every file's sha256 checked)."""
    try:
        meta = _index(models_dir)
        if meta["packs"][pack["name"]]["fingerprint"] != pack["fingerprint"]:
            return False
    except (OSError, ValueError, KeyError):
        return False
    for f in pack["files"]:
        path = Path(models_dir) / f["name"]
        if not path.is_file() or sha256_file(path) != f["sha256"]:
            return False
    return True


def _log(msg: str) -> None:
    print(f"[models pull] {msg}", file=sys.stderr, flush=True)


def _download(client, pack: str, f: dict, dest: Path, log: Callable[[str], None]) -> None:
    h = hashlib.sha256()
    offset, size, shown = 0, int(f["size"]), -1
    with open(dest, "wb") as out:
        while offset < size:
            chunk = client.packfile(pack, f["name"], offset)
            data = base64.b64decode(chunk.get("data", ""), validate=True)
            if chunk.get("offset") != offset or not data or offset + len(data) > size:
                raise PullError(f"{f['name']}: the hub answered offset {chunk.get('offset')} with {len(data)} bytes "
                                f"at {offset} of {size}")
            out.write(data)
            h.update(data)
            offset += len(data)
            percent = offset * 100 // size
            if percent // 10 != shown // 10 or offset == size:
                log(f"{f['name']}: {offset / 1e6:.1f} / {size / 1e6:.1f} MB ({percent} %)")
                shown = percent
        out.flush()
        os.fsync(out.fileno())
    if h.hexdigest() != f["sha256"]:
        raise PullError(f"{f['name']}: sha256 {h.hexdigest()} is not the listed {f['sha256']}")


def pull(client, models_dir: Path, pack_name: str, log: Callable[[str], None] = _log) -> dict:
    """Install the hub's pack `pack_name` into `models_dir` unless it is there already; returns
    the listed pack. Raises PullError (nothing installed) or the client's errors."""
    models_dir = Path(models_dir)
    packs = {p.get("name"): p for p in client.packs().get("packs", [])}
    pack = packs.get(pack_name)
    if pack is None:
        raise PullError(f"the hub serves no pack {pack_name!r} (it serves {', '.join(map(str, packs)) or 'none'})")
    _check_listing(pack_name, pack)
    if installed(models_dir, pack):
        log(f"pack {pack_name} ({pack['fingerprint']}) is installed in {models_dir}")
        return pack
    names = [f["name"] for f in pack["files"]]
    index = pack["index"]
    total = sum(int(f["size"]) for f in pack["files"])
    log(f"pulling pack {pack_name} ({pack['fingerprint']}, {total / 1e6:.1f} MB) into {models_dir}")
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".pull-") as tmp:
        for f in pack["files"]:
            _download(client, pack_name, f, Path(tmp) / f["name"], log)
        # "recipe": a pulled folder is not a build of this machine's manifest: `models build` rebuilds it
        (Path(tmp) / "models.json").write_text(json.dumps({**index, "recipe": "pulled"}, indent=2) + "\n")
        _install(Path(tmp), models_dir, [*names, "models.json"])  # the index last
    log(f"installed pack {pack_name} ({pack['fingerprint']})")
    return pack


def _check_listing(pack_name: str, pack: dict) -> None:
    """PullError unless the hub's listing of `pack_name` is one this edge may install: model
    files only, of the pack's roles, of sane sizes, whose sha256 make the listed fingerprints
    (the pack's, each model's, the embedder's). Before any file here is read or written."""
    files, index = pack["files"], pack["index"]
    names = [f["name"] for f in files]
    entry = index["packs"][pack_name] if set(index["packs"]) == {pack_name} else None
    if (entry is None or any(not isinstance(n, str) or not MODEL_FILE.fullmatch(n) for n in names)
            or len(set(names)) != len(names) or set(names) != set(index["models"])
            or not NEEDED_ROLES <= set(entry["files"]) <= ROLES or set(entry["files"].values()) != set(names)
            or any(not isinstance(f["size"], int) or not 0 < f["size"] <= MAX_FILE_BYTES for f in files)):
        raise PullError(f"the hub's listing of {pack_name} is malformed")
    sha = {f["name"]: f["sha256"] for f in files}
    roles = entry["files"]
    embedder = versions.embedder_fingerprint(sha[roles["embedder"]], sha[roles["landmarks"]],
                                             index.get("alignment", ""), entry.get("embedding"))
    if (pack_fingerprint(roles, sha, entry.get("embedding")) != pack["fingerprint"]
            or entry["fingerprint"] != pack["fingerprint"]
            or any(index["models"][n].get("sha256") != sha[n] or index["models"][n].get("fingerprint") != sha[n][:16]
                   for n in names)
            or entry.get("embedder_fingerprint") != embedder or pack.get("embedder_fingerprint") != embedder):
        raise PullError(f"{pack_name}: the listed files do not make the listed fingerprint {pack['fingerprint']}")


def _install(tmp: Path, models_dir: Path, names: list[str]) -> None:
    """Move `names` from `tmp` into `models_dir`, each by rename; a step that fails puts back
    every file already replaced (kept in `tmp` meanwhile), so a failed install leaves the folder
    as it was. Only regular files are replaced."""
    for name in names:
        target = models_dir / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise PullError(f"{target} is not a regular file: not replaced")
    done: list[tuple[Path, Path | None]] = []  # (target, its former file kept in tmp, or None)
    try:
        for name in names:
            target, kept = models_dir / name, tmp / f"former-{name}"
            had = target.exists()
            if had:
                os.replace(target, kept)
            done.append((target, kept if had else None))
            os.replace(tmp / name, target)
    except OSError:
        for target, kept in reversed(done):
            if kept is not None:
                os.replace(kept, target)
            else:
                target.unlink(missing_ok=True)
        raise

def pull_from_hub(hub, models_dir: Path, pack_name: str, log: Callable[[str], None] = _log,
                  quick: bool = False) -> dict:
    """`pull` with a client made from the edge's [hub] settings (longer timeout, more retries;
    `quick`: one try of START_CHECK_S, for a start that has models to fall back on)."""
    from edge.api.client import CloudClient

    if not hub.url:
        raise PullError("[hub] url is not set: there is no hub to pull the models from")
    timeout, retries = (START_CHECK_S, 0) if quick else (max(PULL_TIMEOUT_S, hub.timeout), max(3, hub.retries))
    with CloudClient(hub.url, hub.appid, hub.secret_id, hub.secret_key, timeout=timeout, retries=retries,
                     ca_file=hub.ca_file) as client:
        return pull(client, models_dir, pack_name, log)


def pull_or_keep(hub, models_dir: Path | None, pack_name: str, log: Callable[[str], None] = _log) -> None:
    """What `edge-verifier run` does at start: the hub's pack when the folder (None: the default
    one) is empty or holds another (one pack per site); with the hub unreachable, the local
    models if there are any."""
    from edge.api.client import CloudError
    from edge.vision.packs import ModelPackError
    from edge.vision.pipeline import default_models_dir

    models_dir = Path(models_dir or default_models_dir())
    for left in models_dir.glob(".pull-*"):  # a pull killed part-way (a power cut) left it: nothing uses it
        shutil.rmtree(left, ignore_errors=True)
    has_models = (models_dir / "models.json").is_file()
    try:
        pull_from_hub(hub, models_dir, pack_name, log, quick=has_models)
    except (CloudError, PullError, OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # a malformed listing (a field missing, of another type) is a hub problem like any other
        if not has_models:
            raise ModelPackError(f"no models in {models_dir} and the hub's pack could not be pulled: {exc}") from None
        logging.getLogger("edge.modelpack").warning(
            "keeping the models in %s: the hub's pack could not be pulled: %s", models_dir, exc)
