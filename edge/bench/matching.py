"""`edge-verifier bench matching`: what `[identify] rule` costs per identify, side by side.

`Gallery.identify` alone (no model) over a door's gallery of N persons x K faces, under each
identify rule (edge.core.false_admit.IDENTIFY_RULES) with the int8 pack's thresholds, on the same
probes; the rules alternate round by round, so a ratio of their medians is one run's, not two
runs' apart. The faces are random unit vectors: matching's cost depends on the sizes, not on the
values.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def add_arguments(parser) -> None:
    parser.add_argument("--persons", default="400,20000", help="gallery sizes N (comma-separated)")
    parser.add_argument("--photos", type=int, default=3, help="faces per person K")
    parser.add_argument("--probes", type=int, default=200, help="identify calls per rule and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the rules alternate their order")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")


def _gallery(persons: int, photos: int, rule: str, rng: np.random.Generator):
    from edge.core.matcher import Enrolled, Gallery, thresholds_for

    vectors = rng.standard_normal((persons * photos, 128)).astype(np.float32)
    faces = [Enrolled(f"p{i // photos}", f"f{i}", vectors[i], ("door",)) for i in range(len(vectors))]
    return Gallery(faces, thresholds_for("int8", false_admit_rate=1e-3, rule=rule))


def identify_ms(gallery, probes: np.ndarray) -> list[float]:
    """Each probe's identify in the door's group, in ms."""
    out = []
    for v in probes:
        t0 = time.perf_counter()
        gallery.identify(v, ["door"])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run(args) -> int:
    from edge.core.false_admit import IDENTIFY_RULES

    try:
        sizes = [int(v) for v in args.persons.split(",")]
        if min(sizes) < 2 or args.photos < 1 or args.probes < 1 or args.rounds < 1:
            raise ValueError("--persons >= 2, --photos, --probes and --rounds >= 1")
    except ValueError as exc:
        print(f"edge-verifier bench matching: error: {exc}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(3)
    result: dict = {"photos_per_person": args.photos, "probes": args.probes, "rounds": args.rounds,
                    "pack": "int8", "results": []}
    for n in sizes:
        galleries = {rule: _gallery(n, args.photos, rule, np.random.default_rng([3, n])) for rule in IDENTIFY_RULES}
        probes = rng.standard_normal((args.probes, 128)).astype(np.float32)
        times: dict[str, list[float]] = {rule: [] for rule in IDENTIFY_RULES}
        for g in galleries.values():
            identify_ms(g, probes[:5])  # warm-up: the first call per gallery sorts its rows by person
        for r in range(args.rounds):
            order = IDENTIFY_RULES if r % 2 == 0 else IDENTIFY_RULES[::-1]
            for rule in order:
                times[rule] += identify_ms(galleries[rule], probes)
        print(f"[matching] {n} persons x {args.photos}: done", file=sys.stderr, flush=True)
        entry = {"persons": n, "faces": n * args.photos}
        for rule, t in times.items():
            entry[rule] = {"p50_ms": round(float(np.percentile(t, 50)), 3),
                           "p99_ms": round(float(np.percentile(t, 99)), 3)}
        entry["ratio_p50"] = round(entry[IDENTIFY_RULES[1]]["p50_ms"] / entry[IDENTIFY_RULES[0]]["p50_ms"], 2)
        result["results"].append(entry)
    print(json.dumps(result))
    return 0
