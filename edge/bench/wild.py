"""Faces as a door sees them, on any identity-labelled folder (issue 25).

`folder_faces` runs every photo of a folder (one sub-folder per person: LFW, ../shared/faces/cfp)
through the whole pipeline twice: once as it is (the enrolled photo: a hub enrols good photos)
and once degraded as a door camera would present it (`Degrade`: downscaled to a face size drawn
per photo, blurred, turned in the image plane), detected again from scratch on the degraded
image. Pose is not synthesised: it is measured from the landmarks, like size and sharpness, by
the quality gate (edge.vision.quality). Each probe keeps those measures, so results can be
split by condition band (edge.core.conditions) whatever degradation produced them.

`pair_tails` gives the 1:1 impostor tail per band (degraded probe of one person against the clean
photos of every other), `fit_margins` the margin each band needs over the shipped tail.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.conditions import Condition, all_bands, bands


@dataclass(frozen=True)
class Degrade:
    """Ranges drawn from per photo (seeded by the photo's name): target face size (shorter
    side of the box, px; log-uniform; a face is never enlarged), Gaussian blur sigma in the
    downscaled image (px), in-plane rotation (degrees)."""

    size: tuple[float, float] | None = None
    blur: tuple[float, float] | None = None
    rotate: tuple[float, float] | None = None

    @classmethod
    def parse(cls, spec: str | None) -> "Degrade | None":
        """"size=40:120,blur=0:1.5,rotate=-10:10" (each optional; "size=64" is a fixed value)."""
        if not spec:
            return None
        fields: dict[str, tuple[float, float]] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            if key not in ("size", "blur", "rotate") or not value:
                raise ValueError(f"--degrade takes size=LO:HI, blur=LO:HI, rotate=LO:HI, not {part!r}")
            lo, _, hi = value.partition(":")
            a, b = float(lo), float(hi or lo)
            if b < a or (key == "size" and a < 8) or (key == "blur" and a < 0):
                raise ValueError(f"--degrade {key}: bad range {value!r}")
            fields[key] = (a, b)
        return cls(**fields)

    def label(self) -> str:
        return ",".join(f"{k}={v[0]:g}:{v[1]:g}" for k, v in
                        (("size", self.size), ("blur", self.blur), ("rotate", self.rotate)) if v)

    def draw(self, name: str, seed: int) -> tuple[float | None, float, float]:
        """(target face size or None, blur sigma, rotation) for one photo, reproducible."""
        h = int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(h)
        size = None
        if self.size:
            lo, hi = self.size
            size = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        sigma = float(rng.uniform(*self.blur)) if self.blur else 0.0
        angle = float(rng.uniform(*self.rotate)) if self.rotate else 0.0
        return size, sigma, angle


def degrade_image(bgr: np.ndarray, face_size: float, target: float | None, sigma: float,
                  angle: float) -> np.ndarray:
    """The photo as a door would see it: scaled so the face's size becomes `target` (never
    enlarged; INTER_AREA, as a camera's smaller sensor would sample it), blurred, rotated
    about the centre."""
    import cv2

    out = bgr
    if target is not None and face_size > target:
        scale = target / face_size
        w = max(int(round(bgr.shape[1] * scale)), 1)
        h = max(int(round(bgr.shape[0] * scale)), 1)
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
    if sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    if angle:
        h, w = out.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def _log(msg: str) -> None:
    print(f"[wild] {msg}", file=sys.stderr, flush=True)


def _centre_face(faces, shape):
    """The labelled face of a photo: these sets centre the person (as bench lfw does)."""
    centre = np.array([shape[1] / 2, shape[0] / 2])
    return min(faces, key=lambda f: np.linalg.norm(f.landmarks.mean(0) - centre) - 0.2 * f.box[2])


@dataclass
class FolderFaces:
    """Per photo: the clean embedding (for enrolment), the probe's embedding and measures.
    `found` is False where no face was found in the degraded photo (the door saw nobody)."""

    names: list[str]
    clean: np.ndarray  # (n, d) unit vectors
    probe: np.ndarray  # (n, d) unit vectors (zeros where not found)
    found: np.ndarray  # (n,) bool: a face found in the probe
    gate_ok: np.ndarray  # (n,) bool: the probe passes the quality gate
    size: np.ndarray
    iod: np.ndarray  # inter-ocular distance, px
    yaw: np.ndarray
    pitch: np.ndarray
    sharpness: np.ndarray

    # With `mirror`: the embeddings of the crop and of its horizontal mirror averaged, and the
    # seconds the embedder spent on the crops and on their mirrors, timed side by side.
    clean_m: np.ndarray | None = None
    probe_m: np.ndarray | None = None
    embed_s: np.ndarray | None = None  # [crops, mirrors]

    @property
    def has_face(self) -> np.ndarray:
        """(n,) bool: a face was found in the clean photo (it can be enrolled)."""
        return np.linalg.norm(self.clean, axis=1) > 0

    @property
    def usable(self) -> np.ndarray:
        """(n,) bool: a probe the door decides on (a face in the clean photo and in the probe,
        past the quality gate)."""
        return self.found & self.gate_ok & self.has_face

    def condition(self, i: int) -> Condition:
        return Condition(float(self.size[i]), float(self.yaw[i]), float(self.pitch[i]), float(self.sharpness[i]))

    def band_labels(self) -> dict[str, np.ndarray]:
        """{measure: band label per photo}."""
        per = [bands(self.condition(i)) for i in range(len(self.names))]
        return {m: np.array([b[m] for b in per]) for m in ("size", "pose", "sharpness")}


# A set's list of its people who are also in LFW (CFP ships one): left out, so that a figure on
# that set is one on faces the thresholds (read off LFW) never saw; 151 of CFP's 500 people were.
SHARED_WITH_LFW = "ALSO_IN_LFW.txt"


def folder_names(data: Path, identities: int | None, seed: int) -> list[str]:
    """person/file of every photo (jpg, png) of `data`, or of `identities` persons drawn at random;
    the persons its SHARED_WITH_LFW lists left out."""
    shared_file = data / SHARED_WITH_LFW
    shared = set(shared_file.read_text().split()) if shared_file.is_file() else set()
    names = sorted(str(p.relative_to(data)) for p in data.glob("*/*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.parent.name not in shared)
    if identities:
        persons = sorted({n.split("/")[0] for n in names})
        rng = np.random.default_rng(seed)
        keep = set(rng.choice(persons, size=min(identities, len(persons)), replace=False).tolist())
        names = [n for n in names if n.split("/")[0] in keep]
    return names


def _embed(pipe, crop: np.ndarray, mirror: bool, clock: list[float]) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop's embedding, and with `mirror` the mean of it and its mirror's (renormalised)."""
    t0 = time.perf_counter()
    v = pipe.embedder.infer(crop)
    t1 = time.perf_counter()
    clock[0] += t1 - t0
    if not mirror:
        return v, None
    w = pipe.embedder.infer(np.ascontiguousarray(crop[:, ::-1]))
    clock[1] += time.perf_counter() - t1
    m = v + w
    return v, m / max(float(np.linalg.norm(m)), 1e-12)


def embedding_models(pipe) -> list[tuple[str, str]]:
    """The models that decide an embedding: detector, landmarks and embedder fingerprints (not
    the pack's liveness model, so rebuilding only that one reuses the cached embeddings), and the
    mirror pass when the pack has one (the same files embedding crop + mirror: int8-mirror)."""
    parts = sorted((role, fp) for role, fp in pipe.fingerprints.items() if role != "liveness")
    if getattr(pipe.embedder, "mirror", False):
        parts.append(("embedding", "mirror-mean"))
    return parts


def folder_faces(pipe, data: Path, names: list[str], degrade: Degrade | None, seed: int,
                 workers: int, cache: Path | None, mirror: bool = False) -> FolderFaces:
    """Clean and probe embeddings with the probes' measures (see the module docstring); kept
    under `cache` keyed by the models, the photos and the degradation."""
    from edge.vision.image import load_image

    # The models that decide an embedding, the photos and the degradation.
    models = embedding_models(pipe)
    key = hashlib.sha256("\n".join([repr(models), str(data.resolve()), *names,
                                    degrade.label() if degrade else "", str(seed)]
                                   + (["mirror"] if mirror else [])).encode()).hexdigest()[:16]
    path = cache / f"wild-{pipe.precision}-{key}.npz" if cache else None
    fields: tuple[str, ...] = ("clean", "probe", "found", "gate_ok", "size", "iod", "yaw", "pitch", "sharpness")
    if mirror:
        fields += ("clean_m", "probe_m", "embed_s")
    clock = [0.0, 0.0]
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if list(z["names"]) == names:
                _log(f"{pipe.precision}: {len(names)} photos from {path}")
                return FolderFaces(names, **{f: z[f] for f in fields})  # type: ignore[arg-type]

    def one(name: str):
        img = load_image(data / name)
        faces = pipe.detect(img)
        if not faces:
            return None
        face = _centre_face(faces, img.shape)
        clean, clean_m = _embed(pipe, face.aligned, mirror, clock)
        probe_face = face
        if degrade is not None:
            target, sigma, angle = degrade.draw(name, seed)
            small = degrade_image(img, float(min(face.box[2], face.box[3])), target, sigma, angle)
            found = pipe.detect(small)
            if not found:
                return clean, None, clean_m, None
            probe_face = _centre_face(found, small.shape)
            probe, probe_m = _embed(pipe, probe_face.aligned, mirror, clock)
        else:
            probe, probe_m = clean, clean_m
        q = probe_face.quality
        lm = probe_face.landmarks
        iod = float(np.linalg.norm(lm[1] - lm[0]))
        return clean, (probe, q.ok, q.size, iod, q.yaw, q.pitch, q.sharpness), clean_m, probe_m

    t0 = time.monotonic()
    rows = []
    with ThreadPoolExecutor(workers) as pool:
        for i, r in enumerate(pool.map(one, names)):
            rows.append(r)
            if (i + 1) % 200 == 0 or i + 1 == len(names):
                _log(f"{pipe.precision} {degrade.label() if degrade else 'clean'}: {i + 1}/{len(names)} "
                     f"photos ({time.monotonic() - t0:.0f} s)")
    dim = next(r[0].shape[0] for r in rows if r is not None)
    n = len(names)
    clean = np.zeros((n, dim), np.float32)
    probe = np.zeros((n, dim), np.float32)
    found = np.zeros(n, bool)
    gate_ok = np.zeros(n, bool)
    meas = np.zeros((5, n), np.float32)
    clean_m = np.zeros((n, dim), np.float32) if mirror else None
    probe_m = np.zeros((n, dim), np.float32) if mirror else None
    for i, r in enumerate(rows):
        if r is None:  # no face even in the clean photo: neither enrolled nor probed
            continue
        clean[i] = r[0]
        if clean_m is not None:
            clean_m[i] = r[2]
        if r[1] is not None:
            probe[i], gate_ok[i] = r[1][0], r[1][1]
            found[i] = True
            meas[:, i] = r[1][2:]
            if probe_m is not None:
                probe_m[i] = r[3]
    out = FolderFaces(names, clean, probe, found, gate_ok, *meas, clean_m=clean_m, probe_m=probe_m,
                      embed_s=np.array(clock) if mirror else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, names=np.array(names), **{f: getattr(out, f) for f in fields})
        tmp.replace(path)
    return out


def _score_at(imp: np.ndarray, far: float) -> float | None:
    """The cosine a share `far` of impostor pairs reaches (None: too few pairs to tell)."""
    if imp.size * far < 3:
        return None
    return round(float(np.quantile(imp, 1 - far, method="higher")), 4)


def pair_tails(ff: FolderFaces, person: np.ndarray, accept: float | np.ndarray, fars=(1e-3, 1e-4, 1e-5),
               max_pairs: int | None = None, seed: int = 0, keep: np.ndarray | None = None,
               reject: float | None = None) -> dict:
    """1:1 per band: degraded probe of one person against the clean photos of every other
    (impostor) and against the other clean photos of the same person (genuine); the probes are
    those a door would decide on (`keep`, default: found and passing the quality gate). Per
    band: impostor pairs, the score at each FAR, the share accepted at `accept` (one threshold,
    or one per photo: the condition's), and the genuine accept rate there."""
    has_face = ff.has_face
    usable = ff.found & ff.gate_ok if keep is None else keep
    probes = np.flatnonzero(usable)
    accept_of = np.broadcast_to(np.asarray(accept, np.float32), (len(ff.names),))
    if max_pairs and len(probes) * len(ff.names) > max_pairs:
        rng = np.random.default_rng(seed)
        probes = np.sort(rng.choice(probes, size=max(1, max_pairs // len(ff.names)), replace=False))
    gallery = np.flatnonzero(has_face)
    sims = ff.probe[probes] @ ff.clean[gallery].T
    same = person[probes][:, None] == person[gallery][None, :]
    itself = probes[:, None] == gallery[None, :]
    acc = np.broadcast_to(accept_of[probes][:, None], sims.shape)
    labels = ff.band_labels()
    out: dict = {}
    groups = [("all", "all", np.ones(len(probes), bool))]
    for measure, names in all_bands().items():
        groups += [(measure, b, labels[measure][probes] == b) for b in names]
    for measure, band, sel in groups:
        s, sm, it, a = sims[sel], same[sel], itself[sel], acc[sel]
        imp, imp_acc = s[~sm], a[~sm]
        gen, gen_acc = s[sm & ~it], a[sm & ~it]
        entry = {"probes": int(sel.sum()), "impostor_pairs": int(imp.size), "genuine_pairs": int(gen.size)}
        if imp.size:
            entry["score_at_far"] = {f"{f:g}": _score_at(imp, f) for f in fars}
            entry["far_at_accept"] = float(np.mean(imp >= imp_acc))
        if gen.size:
            entry["genuine_accept"] = round(float(np.mean(gen >= gen_acc)), 4)
            if reject is not None:
                entry["genuine_reject"] = round(float(np.mean(gen < reject)), 4)
        out[f"{measure}:{band}" if measure != "all" else "all"] = entry
    return out


def fit_margins(tails: dict, reference: float, far: str = "0.0001") -> dict[str, float]:
    """The cosine each band's impostor tail needs above `reference` (the shipped tail's score
    at that FAR) to hold it: rounded up to 4 decimals, never negative, None-valued bands
    (too few pairs) left out."""
    out = {}
    for band, entry in tails.items():
        v = (entry.get("score_at_far") or {}).get(far)
        if band == "all" or v is None:
            continue
        out[band] = max(0.0, math.ceil((v - reference) * 1e4 - 1e-9) / 1e4)
    return out
