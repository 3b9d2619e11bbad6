"""`bench door --data DIR --degrade ...`: the door on any identity-labelled folder, by condition band.

Galleries enrol clean photos (a hub enrols good photos); each approach is one probe photo as a
door sees it (edge.bench.wild: downscaled, blurred, turned; detected again from scratch) that
found a face passing the quality gate, so it is decided exactly where the daemon would decide.
Results are split by the probe's condition bands (edge.core.conditions: size, pose,
sharpness). Each `--conditions` variant is run side by side on the same galleries: `none` is
today's single threshold, `shipped` the band margins and door limits of edge.core.false_admit,
a JSON file another set's fit (cross-set: fitted on one set, tested on the other).

Reported per pack: the 1:1 impostor tail per band (score at FAR 1e-3/1e-4/1e-5, FAR and genuine
accept at the accept threshold applied), FPIR/FNIR per N x K and per band, and `fitted`: the
margins this set asks for over the shipped LFW tail (edge.bench.wild.fit_margins).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge.bench.bounds import upper95
from edge.core.conditions import all_bands


def add_arguments(parser) -> None:
    from edge.bench.door import add_arguments as door_arguments
    from edge.bench.door_claims import add_arguments as claims_arguments
    from edge.bench.door_tracks import add_arguments as tracks_arguments

    door_arguments(parser)
    tracks_arguments(parser)
    claims_arguments(parser)


def run(args) -> int:
    """`bench door`: strangers' real recordings with --tracks (edge.bench.door_tracks); rules
    against templates with --templates (edge.bench.door_templates); by
    condition band with --degrade, --identities or --bands; else on LFW as before."""
    from edge.bench import door
    from edge.bench.lfw import default_data_dir

    data = args.data or default_data_dir()
    if args.tracks is not None:
        from edge.bench import door_tracks

        return door_tracks.run(args)
    if args.claims:
        from edge.bench import door_claims

        return door_claims.run(args, data)
    if args.templates:
        from edge.bench import door_templates

        return door_templates.run(args, data)
    if data.is_dir() and (args.degrade or args.identities or args.bands):
        return run_wild(args, data)
    return door.run(args)


def _log(msg: str) -> None:
    print(f"[door] {msg}", file=sys.stderr, flush=True)


def _variants(spec: str) -> dict[str, dict]:
    """{name: {"margins": ..., "limits": ...} or None for the shipped tables}."""
    out: dict[str, dict] = {}
    for item in (v.strip() for v in spec.split(",") if v.strip()):
        if item == "none":
            out[item] = {"margins": {}, "limits": {}}
        elif item == "shipped":
            out[item] = {}
        else:
            doc = json.loads(Path(item).read_text())
            doc = doc.get("fitted", doc)
            out[Path(item).stem] = {"margins": {str(k): float(v) for k, v in doc.get("margins", {}).items()},
                                    "limits": {str(k): float(v) for k, v in doc.get("limits", {}).items()}}
    return out


def _thresholds(pack: str, rate: float, variant: dict):
    from dataclasses import replace

    from edge.core.matcher import thresholds_for

    t = thresholds_for(pack, false_admit_rate=rate or None)
    if not variant:
        return t
    return replace(t, band_margins=tuple(sorted(variant["margins"].items())),
                   limits=tuple(sorted(variant["limits"].items())))


def run_wild(args, data: Path) -> int:
    from edge.bench.door import (
        _Progress,
        det_curve,
        door_margins,
        door_options,
        draw_door,
        fnir_at_fpir,
        per_band,
        run_door,
    )
    from edge.bench.lfw import cache_dir, labelled_photos
    from edge.bench.wild import Degrade, fit_margins, folder_faces, pair_tails
    from edge.core.false_admit import IMPOSTOR_TAILS, score_at_far
    from edge.vision.pipeline import Pipeline

    try:
        degrade = Degrade.parse(args.degrade)
        variants = _variants(args.conditions)
    except (ValueError, OSError) as exc:
        print(f"edge-verifier bench door: error: {exc}", file=sys.stderr)
        return 2
    if [int(v) for v in args.frames.split(",")] != [1]:
        print("edge-verifier bench door: error: by condition band, approaches are one photo (--frames 1)",
              file=sys.stderr)
        return 2
    workers, packs, rate, sizes, photos = door_options(args)
    names, person = labelled_photos(data, args.identities, args.seed)
    result: dict = {"data": str(data), "degrade": degrade.label() if degrade else None,
                    "identities_drawn": args.identities, "photos": len(names), "galleries": args.galleries,
                    "false_admit_rate": rate, "seed": args.seed,
                    "bands_by": {"size": "face box, shorter side, px", "pose": "max |yaw|, |pitch|, degrees "
                                 "(from the 5 landmarks)", "sharpness": "Laplacian variance of the aligned crop"},
                    "decision_code": "in-process: edge.core.matcher, edge.core.conditions, edge.daemon.decide",
                    "packs": {}}
    curves: dict = {}
    for pack in packs:
        pipe = Pipeline.load(args.models_dir, precision=pack, threads=1)
        ff = folder_faces(pipe, data, names, degrade, args.seed, workers, cache_dir(), mirror=args.mirror)
        has_face, usable = ff.has_face, ff.usable
        gate_reasons = {"no_face_clean": int((~has_face).sum()), "no_face_probe": int((has_face & ~ff.found).sum()),
                        "quality_gate": int((has_face & ff.found & ~ff.gate_ok).sum())}
        labels = ff.band_labels()
        conds = [ff.condition(i) for i in range(len(names))]
        by_person: dict[str, list[int]] = {}
        for i in np.flatnonzero(has_face):
            by_person.setdefault(str(person[i]), []).append(int(i))
        by_person_np = {p: np.array(r) for p, r in by_person.items()}
        entry: dict = {"photos_with_face": int(has_face.sum()), "probes_decided": int(usable.sum()),
                       "probes_not_decided": gate_reasons,
                       "probe_measures": {m: [round(float(np.percentile(v[usable], q)), 1) for q in (5, 50, 95)]
                                          for m, v in (("size", ff.size), ("iod", ff.iod), ("yaw", ff.yaw),
                                                       ("pitch", ff.pitch), ("sharpness", ff.sharpness))},
                       "pairs": {}, "results": []}
        # 1:1 per band at today's accept threshold, and at each variant's.
        for vname, variant in {"today": {"margins": {}, "limits": {}}, **variants}.items():
            t = _thresholds(pack, rate, variant)
            judged = [t.judge(c) for c in conds]
            accept = np.array([t.accept + j.margin for j in judged], np.float32)
            keep = ff.found & ff.gate_ok & np.array([j.withhold is None for j in judged])
            entry["pairs"][vname] = pair_tails(ff, person, accept, max_pairs=args.pairs, seed=args.seed, keep=keep,
                                                 reject=t.reject)
            entry["pairs"][vname]["all"]["withheld_probes"] = int((ff.found & ff.gate_ok & ~keep).sum())
        tail = IMPOSTOR_TAILS[pack]
        fitted = {f: fit_margins(entry["pairs"]["today"], score_at_far(tail, float(f)), f) for f in ("0.0001", "1e-05")}
        entry["fitted"] = {"margins": {b: max(fitted["0.0001"].get(b, 0.0), fitted["1e-05"].get(b, 0.0))
                                       for b in set(fitted["0.0001"]) | set(fitted["1e-05"])},
                           "by_far": fitted, "limits": {},
                           "reference": {f: round(score_at_far(tail, float(f)), 4) for f in ("0.0001", "1e-05")}}
        door_fit: dict[str, float] = {}
        for n in sizes:
            for k in photos:
                rng = np.random.default_rng([args.seed, n, k, 1])
                try:
                    doors = [draw_door(rng, by_person_np, n, k, 1) for _ in range(args.galleries)]
                except ValueError as exc:
                    entry["results"].append({"persons": n, "photos_per_person": k, "skipped": str(exc)})
                    _log(f"{pack} N={n} K={k}: skipped: {exc}")
                    continue
                # Only probes the door would decide: a face found that passes the quality gate.
                doors = [(e, [(p, r) for p, r in m if usable[r].all()], [r for r in nm if usable[r].all()])
                         for e, m, nm in doors]
                for vname, variant in variants.items():
                    t = _thresholds(pack, rate, variant)
                    total = sum(len(m) + len(nm) for _, m, nm in doors)
                    progress = _Progress(total, f"{pack} N={n} K={k} conditions={vname}")
                    runs = [run_door(ff.clean, e, m, nm, t, "off", "best", None, progress, probe=ff.probe,
                                     conditions=conds, rate_per=args.rate_per) for e, m, nm in doors]
                    nm_rows = np.concatenate([[int(r[0]) for r in nm] for _, _, nm in doors])
                    m_rows = np.concatenate([[int(r[0]) for _, r in m] for _, m, _ in doors])
                    cat = {key: np.concatenate([r[key] for r in runs]) for key in
                           ("_nm", "_mated", "_nm_admit", "_nm_withheld", "_m_ok", "_m_withheld")}
                    non_mated, mated = len(nm_rows), len(m_rows)
                    res = {"persons": n, "photos_per_person": k, "conditions": vname,
                           "threshold": runs[0]["threshold"], "non_mated": non_mated, "mated": mated,
                           "false_admits": int(cat["_nm_admit"].sum()),
                           "fpir": round(float(cat["_nm_admit"].mean()), 6),
                           "fpir_upper95": round(upper95(int(cat["_nm_admit"].sum()), non_mated) or 0.0, 6),
                           "fnir": round(1 - float(cat["_m_ok"].mean()), 4),
                           "withheld": {"non_mated": int(cat["_nm_withheld"].sum()),
                                        "mated": int(cat["_m_withheld"].sum())},
                           "misidentified": sum(r["misidentified"] for r in runs),
                           "fnir_at_fpir": {f"{f:g}": (None if (v := fnir_at_fpir(cat["_nm"], cat["_mated"], f))
                                                       is None else round(v, 4)) for f in (1e-2, 1e-3)},
                           "bands": per_band(labels, nm_rows, m_rows, cat["_nm_admit"], cat["_nm_withheld"],
                                              cat["_m_ok"], cat["_m_withheld"])}
                    if vname == "none":  # identify's own tail per band, at today's threshold
                        for band, m in door_margins(labels, nm_rows, cat["_nm"], res["threshold"], rate).items():
                            door_fit[band] = max(door_fit.get(band, 0.0), m)
                    entry["results"].append(res)
                    worst = max(((b, e["fpir"]) for b, e in res["bands"].items() if e["fpir"] is not None),
                                key=lambda x: x[1], default=("-", 0.0))
                    _log(f"{pack} N={n} K={k} conditions={vname}: FPIR {res['fpir'] * 100:.3f} % "
                         f"({res['false_admits']}/{non_mated}), FNIR {res['fnir'] * 100:.2f} %, "
                         f"worst band {worst[0]} FPIR {worst[1] * 100:.3f} %, misidentified {res['misidentified']}")
                    if vname == next(iter(variants)):
                        for measure, names_ in all_bands().items():
                            for band in names_:
                                nsel = labels[measure][nm_rows] == band
                                msel = labels[measure][m_rows] == band
                                if nsel.sum() >= 10 and msel.sum() >= 1:  # a curve needs a few of each
                                    curves.setdefault((pack, n, k, measure), {})[band] = det_curve(
                                        cat["_nm"][nsel], cat["_mated"][msel])
        if door_fit:
            pair_fit = entry["fitted"]["margins"]
            entry["fitted"]["by_door"] = door_fit
            entry["fitted"]["margins"] = {b: max(pair_fit.get(b, 0.0), door_fit.get(b, 0.0))
                                          for b in sorted(set(pair_fit) | set(door_fit))}
        if args.mirror:
            entry["mirror"] = _mirror(ff, person, usable, has_face, by_person_np, pack, rate, args)
        result["packs"][pack] = entry
    if args.plot:
        result["plots"] = plot_bands(curves, args.plot, result)
    print(json.dumps(result))
    return 0


def _tar_at_far(probe, clean, person, usable, has_face, fars=(1e-4, 1e-3), accept: float | None = None) -> dict:
    """1:1 on every usable probe x enrolled photo: TAR at each FAR (threshold read off these
    impostor pairs), and the genuine accept / FAR at the shipped accept threshold."""
    p, g = np.flatnonzero(usable), np.flatnonzero(has_face)
    sims = probe[p] @ clean[g].T
    same = person[p][:, None] == person[g][None, :]
    gen = sims[same & (p[:, None] != g[None, :])]
    imp = np.sort(sims[~same])[::-1]
    out: dict = {"impostor_pairs": int(imp.size), "genuine_pairs": int(gen.size)}
    for far in fars:
        t = float(imp[int(far * imp.size)])
        out[f"tar_at_far_{far:g}"] = round(float(np.mean(gen > t)), 4)
        out[f"threshold_at_far_{far:g}"] = round(t, 4)
    if accept is not None:
        out["genuine_accept_at_shipped"] = round(float(np.mean(gen >= accept)), 4)
        out["far_at_shipped"] = float(np.mean(imp >= accept))
    return out


def _mirror(ff, person, usable, has_face, by_person, pack: str, rate: float, args) -> dict:
    """Plain against mirror-averaged embeddings on the same photos, galleries and probes."""
    from edge.bench.door import draw_door, fnir_at_fpir, run_door

    t = _thresholds(pack, rate, {"margins": {}, "limits": {}})
    out: dict = {"cost_ratio_embed": round(float(ff.embed_s.sum() / ff.embed_s[0]), 2),
                 "embed_s": [round(float(v), 1) for v in ff.embed_s]}
    for label, clean, probe in (("plain", ff.clean, ff.probe), ("mirror", ff.clean_m, ff.probe_m)):
        entry = {"pairs": _tar_at_far(probe, clean, person, usable, has_face, accept=t.accept), "doors": []}
        for n in [int(v) for v in args.persons.split(",")]:
            rng = np.random.default_rng([args.seed, n, 3, 1])
            try:
                doors = [draw_door(rng, by_person, n, 3, 1) for _ in range(args.galleries)]
            except ValueError:
                continue
            doors = [(e, [(p, r) for p, r in m if usable[r].all()], [r for r in nm if usable[r].all()])
                     for e, m, nm in doors]
            runs = [run_door(clean, e, m, nm, t, "off", "best", None, probe=probe, rate_per=args.rate_per)
                    for e, m, nm in doors]
            nm_all = np.concatenate([r["_nm"] for r in runs])
            m_all = np.concatenate([r["_mated"] for r in runs])
            fa = sum(r["false_admits"] for r in runs)
            entry["doors"].append({"persons": n, "photos_per_person": 3, "false_admits": fa,
                                   "fpir": round(fa / len(nm_all), 6),
                                   "fpir_upper95": round(upper95(fa, len(nm_all)) or 0.0, 6),
                                   "fnir": round(sum(r["misses"] for r in runs) / len(m_all), 4),
                                   "fnir_at_fpir_0.001": fnir_at_fpir(nm_all, m_all, 1e-3)})
        out[label] = entry
        _log(f"{pack} {label}: {entry['pairs']} {entry['doors']}")
    return out


def plot_bands(curves: dict, path: Path, meta: dict) -> list[str]:
    """One DET plot per measure (size, pose, sharpness), a curve per band: PATH-<measure>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.bench.det_plot import save_det

    written = []
    for (pack, n, k, measure), per_band in sorted(curves.items()):
        fig, ax = plt.subplots(figsize=(7, 5))
        for band, (fpir, fnir) in per_band.items():
            keep = fpir > 0
            ax.plot(fpir[keep], np.maximum(fnir[keep], 1e-4), label=f"{measure} {band}")
        written.append(save_det(
            fig, ax, path.with_name(f"{path.stem}-{pack}-{n}x{k}-{measure}.png"), vline=meta["false_admit_rate"],
            xlabel="FPIR (strangers admitted)", ylabel="FNIR (members not admitted as themselves)",
            title=f"bench door {Path(meta['data']).name} {meta['degrade'] or 'clean'}: {pack} N={n} K={k}"))
    return written

