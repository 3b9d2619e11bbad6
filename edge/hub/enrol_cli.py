"""`edge-verifier enrol --config hub.toml SOURCE`: enrol many persons into the hub's store.

SOURCE is a folder with one sub-folder per person (the folder's name is the person_id, its
JPEG/PNG photos that person's; `--group` names their group), or a CSV file of
`path,person_id,name,group` rows (paths relative to the CSV; a first row `path,...` is a header).
Each person goes through edge.hub.enrolment, the code path of the console's upload page: the
quality gate's verdict per photo, look-alikes of other persons (held back unless
`--accept-look-alikes`), the API's limits and near-identical rule.

Resumable: every photo stored or refused by the gate is written (its sha256) to the state file
(`--state`, default enrol-state.jsonl in the current folder) as soon as its person is done, and
a later run skips those photos; held or failed persons are tried again. Progress goes to stderr,
one line per person, then a summary (JSON on stdout with --json). Run it beside a running hub:
the store is shared (SQLite in WAL mode, or PostgreSQL).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="hub TOML (its [storage] and [vision])")
    parser.add_argument("source", help="a folder of one folder per person, or a CSV of path,person_id,name,group")
    parser.add_argument("--group", help="the group of the persons of a folder source (a CSV names its own)")
    parser.add_argument("--appid", help="the appid to enrol into (default: the only one configured)")
    parser.add_argument("--state", default="enrol-state.jsonl", help="the resume file (default: %(default)s)")
    parser.add_argument("--accept-look-alikes", action="store_true",
                        help="enrol a person even when a photo looks like another person")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def read_source(source: Path, group: str | None) -> dict[str, dict]:
    """person_id -> {"name", "group", "paths"} in the source's order. ValueError when malformed."""
    persons: dict[str, dict] = {}
    if source.is_dir():
        if not group:
            raise ValueError("a folder source needs --group")
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
            if paths:
                person_id = unicodedata.normalize("NFC", folder.name)
                persons[person_id] = {"name": person_id.replace("_", " "), "group": group, "paths": paths}
        return persons
    # utf-8-sig: the byte order mark Excel's "CSV UTF-8" starts with made the header a person
    with open(source, newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        for i in itertools.count():
            try:
                row = next(rows, None)
            except csv.Error as exc:  # a field over the csv module's 128 KB: a traceback before
                raise ValueError(f"{source}:{i + 1}: {exc}") from None
            if row is None:
                break
            if not row or (i == 0 and row[0].strip().lower() == "path"):
                continue
            if len(row) != 4:
                raise ValueError(f"{source}:{i + 1}: expected path,person_id,name,group")
            if any("\x00" in c for c in row):  # the API refuses it; stored, PostgreSQL failed the write
                raise ValueError(f"{source}:{i + 1}: a NUL character")
            # NFC: "zoë" typed and "zoë" from a macOS file name are one person, not two
            path, person_id, name, row_group = (unicodedata.normalize("NFC", c.strip()) for c in row)
            entry = persons.setdefault(person_id, {"name": name, "group": row_group or group, "paths": []})
            entry["paths"].append((source.parent / path).resolve())
    return persons


def done_key(appid: str, person_id: str, sha256: str) -> str:
    """A photo done for this person of this appid: the state said "done" by the photo's hash
    alone, so a person deleted since, another hub, or the same photo under another id read
    "already done" and was never enrolled."""
    return f"{appid}\x00{person_id}\x00{sha256}"


def load_state(path: Path) -> set[str]:
    done: set[str] = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
                if isinstance(entry.get("appid"), str):  # lines of older versions: done again (near-identical)
                    done.update(done_key(entry["appid"], str(entry["person_id"]), sha) for sha in entry["done"])
            except (ValueError, AttributeError, KeyError, TypeError):
                continue  # a line cut by a crash: its person is simply done again
    return done


def _shown(text: str) -> str:
    """`text` for the terminal: control characters escaped (a file named with an escape sequence
    recoloured the operator's terminal); letters of any script as they are."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def _exists(service, appid: str, person_id: str) -> bool:
    """Whether the store has the person (any refusal: not known to; enrol then says why)."""
    from edge.core.errors import ApiError

    try:
        service.store.get_person(appid, person_id)
    except ApiError:
        return False
    return True


def open_service(settings):
    from edge.hub.server import face_crop_cipher
    from edge.hub.service import HubService, VisionPacks
    from edge.hub.store import open_store

    store = open_store(settings.storage.url, settings.storage.path)
    vision = VisionPacks(settings.vision.models_dir, settings.vision.precision, settings.vision.also_embed,
                         settings.vision.threads)
    return HubService(store, vision, settings.limits, settings.thresholds(), crops=face_crop_cipher(settings))


def run(args) -> int:
    from edge.core.errors import ApiError
    from edge.core.settings import ConfigError
    from edge.hub import config, enrolment
    from edge.vision.image import read_image_file

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        settings = config.load(args.config)
        appids = sorted({c.appid for c in settings.all_credentials()})
        appid = args.appid or (appids[0] if len(appids) == 1 else "")
        if not appid or appid not in appids:
            raise ConfigError(f"name a configured appid with --appid (configured: {', '.join(appids) or 'none'})")
        persons = read_source(Path(args.source), args.group)
        service = open_service(settings)
    except (ConfigError, ValueError, OSError) as exc:
        say(f"edge-verifier enrol: {exc}")
        return 2
    state_path = Path(args.state)
    done = load_state(state_path)
    summary: Counter = Counter()
    refused: Counter = Counter()
    held: list[dict] = []
    started = time.monotonic()
    try:
        with open(state_path, "a") as state:
            for n, (person_id, entry) in enumerate(persons.items(), 1):
                photos, readable = [], 0
                enrolled = _exists(service, appid, person_id)  # done only for a person the store has
                for path in entry["paths"]:
                    if len(photos) == service.limits.faces_per_person:
                        say(f"  {_shown(person_id)}: photos past [limits] faces_per_person "
                            f"({service.limits.faces_per_person}) left out")
                        break
                    try:
                        data = read_image_file(path)
                    except ApiError as exc:
                        say(f"  {_shown(str(path))}: unreadable ({exc.message})")
                        summary["unreadable_files"] += 1
                        continue
                    readable += 1
                    if not (enrolled and done_key(appid, person_id, hashlib.sha256(data).hexdigest()) in done):
                        photos.append((Path(path).name, data))
                if not readable:
                    summary["persons_failed"] += 1
                    say(f"[{n}/{len(persons)}] {_shown(person_id)}: not enrolled: no readable photo")
                    continue
                if not photos:
                    summary["persons_skipped"] += 1
                    say(f"[{n}/{len(persons)}] {_shown(person_id)}: already done")
                    continue
                try:
                    outcome = enrolment.enrol(service, appid, person_id, entry["name"], [entry["group"]], photos,
                                              accept_look_alikes=args.accept_look_alikes)
                except ApiError as exc:
                    summary["persons_failed"] += 1
                    say(f"[{n}/{len(persons)}] {_shown(person_id)}: not enrolled: {exc.message}")
                    continue
                for v in outcome.verdicts:
                    if not v.ok:
                        refused[v.reason or "?"] += 1
                        say(f"  {_shown(v.name)}: refused: {v.explanation}")
                if outcome.saved:
                    finished = [v.sha256 for v in outcome.verdicts if v.ok or v.reason in enrolment.REASONS]
                    state.write(json.dumps({"appid": appid, "person_id": person_id, "done": finished}) + "\n")
                    state.flush()
                    done.update(done_key(appid, person_id, sha) for sha in finished)
                    summary["persons_created" if outcome.created else "persons_extended"] += 1
                    summary["faces_stored"] += len(outcome.face_ids)
                    say(f"[{n}/{len(persons)}] {_shown(person_id)}: {len(outcome.face_ids)} face(s) stored")
                else:
                    summary["persons_held"] += 1
                    held.append({"person_id": person_id, "why": outcome.held, "look_alikes": outcome.look_alikes})
                    say(f"[{n}/{len(persons)}] {_shown(person_id)}: not saved: {outcome.held}")
    finally:
        service.store.close()
    report = {"appid": appid, "persons": len(persons), **summary, "photos_refused": dict(refused), "held": held,
              "seconds": round(time.monotonic() - started, 1)}
    say("enrol: " + ", ".join(f"{k} {v}" for k, v in report.items() if isinstance(v, (int, float)) and k != "appid"))
    if args.json:
        print(json.dumps(report))
    return 0
