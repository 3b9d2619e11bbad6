"""`edge-verifier hub reembed --config hub.toml --pack NAME`: re-embed every stored face with a pack.

From the face crops the hub keeps (edge.hub.face_crops), so without new photos.

Each new embedding is stored under that pack's embedder fingerprint beside the ones the hub
serves, in batches, each committed with its change-log rows: a crash loses at most one batch,
and a rerun does only the faces still lacking the fingerprint (those enrolled meanwhile too).
The running hub keeps serving its own pack meanwhile (separate connections: SQLite WAL or
PostgreSQL). Faces with no crop (enrolled before crops were kept, or with
`keep_face_crops = false`) and crops that do not open with the key are listed by id: they
need a new photo. A progress line per batch on stderr; a JSON report on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

BATCH = 64


@dataclass
class Report:
    pack: str
    fingerprint: str
    faces: int = 0  # every face of every appid, at the start
    had_it: int = 0  # faces that had an embedding of the fingerprint at the start
    embedded: int = 0  # embedded by this run
    no_crop: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    complete: bool = False  # every face has the fingerprint now, but those with no crop
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of which in the embedder: the rest is reading, opening, storing

    def as_json(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out["faces_per_s"] = round(self.embedded / self.seconds, 2) if self.seconds > 0 else None
        out["seconds"] = round(self.seconds, 2)
        out["embed_seconds"] = round(self.embed_seconds, 2)
        return out


def reembed(store, pipeline, cipher, pack: str, *, batch: int = BATCH, limit: int | None = None,
            progress: Callable[[str], None] = lambda msg: None) -> Report:
    """Embed with `pipeline` (a loaded edge.vision.Pipeline) every face of `store` lacking its
    fingerprint, at most `limit` of them (None: all)."""
    fingerprint = pipeline.fingerprint
    report = Report(pack, fingerprint)
    report.faces, report.had_it = store.embedding_coverage(fingerprint)
    todo = report.faces - report.had_it
    progress(f"pack {pack} (embedder {fingerprint}): {report.had_it} of {report.faces} faces have it, "
             f"{todo} to embed")
    skipped: set[str] = set()  # face ids listed in no_crop / unreadable
    t0 = time.monotonic()

    def room() -> bool:
        return limit is None or report.embedded < limit

    passes_again = True
    while passes_again and room():
        # Face ids are random: a face enrolled during a pass may sort before the cursor, so
        # passes repeat until one embeds nothing.
        before, after = report.embedded, ""
        while room() and (rows := store.faces_to_embed(fingerprint, after, batch)):
            after = rows[-1].face_id
            vectors: dict[str, dict] = {}
            for row in rows:
                if row.face_id in skipped:
                    continue
                if limit is not None and report.embedded + sum(map(len, vectors.values())) >= limit:
                    break
                crop = _open(cipher, row, report, skipped)
                if crop is not None:
                    started = time.monotonic()
                    vectors.setdefault(row.appid, {})[row.face_id] = pipeline.embedder.infer(crop)
                    report.embed_seconds += time.monotonic() - started
            for appid, by_face in vectors.items():
                report.embedded += len(store.add_embeddings(appid, fingerprint, by_face))
            rate = report.embedded / max(time.monotonic() - t0, 1e-9)
            progress(f"embedded {report.embedded}/{todo} ({rate:.1f} faces/s), no crop {len(report.no_crop)}, "
                     f"unreadable {len(report.unreadable)}")
        passes_again = report.embedded > before
    report.seconds = time.monotonic() - t0
    faces, covered = store.embedding_coverage(fingerprint)
    # faces whose crop does not open (another key: a lost one replaced) are not done: the key
    # they were sealed with may yet be restored
    report.complete = covered + len(skipped) >= faces and not report.unreadable
    return report


def _open(cipher, row, report: Report, skipped: set[str]):
    """The face's crop, or None (listed in the report) when it has none or it does not open."""
    from edge.hub.face_crops import CropError

    ident = {"appid": row.appid, "person_id": row.person_id, "face_id": row.face_id}
    if row.crop is None:
        report.no_crop.append(ident)
    elif cipher is None:
        report.unreadable.append({**ident, "error": "no face crop key"})
    else:
        try:
            return cipher.open(row.appid, row.face_id, row.crop)
        except CropError as exc:
            report.unreadable.append({**ident, "error": str(exc)})
    skipped.add(row.face_id)
    return None


def add_arguments(parser) -> None:
    from edge.vision.packs import PACKS

    parser.add_argument("--config", required=True, help="the hub's TOML (its store and secrets_file)")
    parser.add_argument("--pack", required=True, choices=PACKS, help="the model pack to embed with")
    parser.add_argument("--models-dir", help="folder holding that pack (default: the hub's [vision] models_dir); "
                        "a new build goes in its own folder while the hub serves the old one")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"faces per committed batch (default {BATCH})")
    parser.add_argument("--limit", type=int, help="stop after embedding this many faces (a rerun continues)")
    parser.add_argument("--threads", type=int, help="inference threads (default: the hub's [vision] threads)")


def run(args) -> int:
    from edge.core.errors import ApiError
    from edge.core.settings import ConfigError
    from edge.hub import config
    from edge.hub.face_crops import CropCipher
    from edge.hub.store import open_store
    from edge.vision import Pipeline
    from edge.vision.packs import ModelPackError

    def progress(msg: str) -> None:
        print(f"[reembed] {msg}", file=sys.stderr, flush=True)

    if args.batch < 1 or (args.limit is not None and args.limit < 1):
        print("edge-verifier hub reembed: --batch and --limit are at least 1", file=sys.stderr)
        return 2
    try:
        settings = config.load(args.config)
        key = settings.face_crop_key()
        pipeline = Pipeline.load(args.models_dir or settings.vision.models_dir, precision=args.pack,
                                 threads=args.threads if args.threads is not None else settings.vision.threads)
        store = open_store(settings.storage.url, settings.storage.path)
    except KeyError:  # models.json lists no such pack
        folder = args.models_dir or settings.vision.models_dir
        print(f"edge-verifier hub reembed: pack {args.pack} is not in {folder}/models.json: build it in a folder "
              "of its own (`edge-verifier models build --models-dir DIR`) and pass --models-dir DIR", file=sys.stderr)
        return 2
    except (ConfigError, ModelPackError, OSError, RuntimeError, ValueError) as exc:
        print(f"edge-verifier hub reembed: {exc}", file=sys.stderr)
        return 2
    try:
        report = reembed(store, pipeline, CropCipher(key) if key else None, args.pack, batch=args.batch,
                         limit=args.limit, progress=progress)
    except ApiError as exc:  # a storage failure: what was committed stays, a rerun continues
        print(f"edge-verifier hub reembed: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(json.dumps(report.as_json(), indent=2))
    if report.no_crop or report.unreadable:
        progress(f"{len(report.no_crop) + len(report.unreadable)} face(s) cannot be embedded with {args.pack} "
                 "(listed in no_crop / unreadable): they need a new photo")
    return 0
