"""The console's static files: fetched once by `edge-verifier ui fetch`, served from memory.

`ui fetch` runs `npm pack` for each package of assets.toml (the models' fetch code: the archive
is kept in the models cache and checked by sha256, then each file inside it by its own sha256)
and writes the files into the models directory's ui/. The hub reads them at start, checks each
against assets.toml again and serves them at /ui/static/<sha256 prefix>/<name> with a one-year
immutable cache: another version is another URL. Files missing or altered are not served, and the
hub says so once in its log; the pages still work without them (no script is needed: htmx only
enhances forms and links), unstyled.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

ASSETS = Path(__file__).with_name("assets.toml")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
log = logging.getLogger("edge.hub.ui")


@dataclass(frozen=True)
class StaticFile:
    name: str
    body: bytes
    sha256: str

    @property
    def url(self) -> str:
        return f"/ui/static/{self.sha256[:16]}/{self.name}"

    @property
    def media_type(self) -> str:
        return TYPES.get(Path(self.name).suffix, "application/octet-stream")


def default_dir(models_dir: str = "") -> Path:
    from edge.vision.pipeline import default_models_dir

    return (Path(models_dir) if models_dir else default_models_dir()) / "ui"


def expected() -> dict[str, str]:
    """name -> sha256 of every static file assets.toml pins."""
    from edge.modelpack.manifest import load_manifest

    return {f.role: f.sha256 for src in load_manifest(ASSETS) for f in src.files}


def load(directory: Path) -> dict[str, StaticFile]:
    """The files of `directory` that match assets.toml; logs once what is missing or altered."""
    found: dict[str, StaticFile] = {}
    missing = []
    for name, sha in expected().items():
        try:
            body = (directory / name).read_bytes()
        except OSError:
            missing.append(name)
            continue
        if hashlib.sha256(body).hexdigest() != sha:
            missing.append(f"{name} (altered)")
            continue
        found[name] = StaticFile(name, body, sha)
    if missing:
        log.warning("console static files missing in %s: %s; the pages work unstyled and without htmx "
                    "(run `edge-verifier ui fetch`)", directory, ", ".join(missing))
    return found


OWN = Path(__file__).with_name("js")  # the console's own scripts, committed with it
OWN_CSS = Path(__file__).with_name("css")  # and its own few style rules (a phone's width)


def own() -> dict[str, StaticFile]:
    """The console's own scripts and styles (edge/hub/ui/js/, css/), served like the fetched files."""
    found = {}
    for path in [*sorted(OWN.glob("*.js")), *sorted(OWN_CSS.glob("*.css"))]:
        body = path.read_bytes()
        found[path.name] = StaticFile(path.name, body, hashlib.sha256(body).hexdigest())
    return found


def fetch(dest: Path, cache: Path, say=print) -> list[Path]:
    """Fetch, check and write every static file into `dest`; the paths written."""
    from edge.modelpack.fetch import fetch_files
    from edge.modelpack.manifest import load_manifest

    files = fetch_files(load_manifest(ASSETS), cache, say)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (data, _src, _path) in files.items():
        target = dest / name
        tmp = target.with_name(f".{name}.new")
        tmp.write_bytes(data)
        tmp.replace(target)
        written.append(target)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", help="where to write the files (default: the models directory's ui/)")
    parser.add_argument("--cache", help="where the npm archives are kept (default: the models directory's cache/)")


def run(args) -> int:
    from edge.modelpack.errors import ModelBuildError

    dest = Path(args.dest) if args.dest else default_dir()
    cache = Path(args.cache) if args.cache else dest.parent / "cache"
    try:
        written = fetch(dest, cache, say=lambda m: print(m, file=sys.stderr))
    except ModelBuildError as exc:
        print(f"edge-verifier ui fetch: {exc}", file=sys.stderr)
        return 1
    print(f"edge-verifier ui fetch: {len(written)} files checked in {dest}", file=sys.stderr)
    return 0
