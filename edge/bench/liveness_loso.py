"""Leave-one-source-out measurement of liveness: the figure that predicts an unseen screen.

For every group of sources (`liveness_sources.GROUPS`), everything that is fitted (a fusion's
weights, the frame threshold, the track threshold) is fitted on the other groups' frames only,
then applied to the left-out group's. Figures per left-out group, per attack type (ISO/IEC
30107-3: APCER per type, BPCER on live frames), per frame and per track (the daemon's window of
consecutive scored frames of one sequence), with the coverage: the share of the group's frames
that got a verdict at all (tight face crops give the context network no verdict).

A scorer is a list of features (`FEATURES`); one feature alone is thresholded as it is (its
sign fitted: which way is live), several are fused by a logistic regression. Thresholds follow
one rule: the highest that keeps every training source's BPCER at or under `target` (the
worst source, not the average, so a backlit webcam is not sacrificed to a well-lit one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from edge.vision import screen_cues
from edge.vision.liveness import FusedLiveness

TYPES = ("print", "replay")
CUES = tuple(f"context.{n}" for n in screen_cues.NAMES) + tuple(f"face.{n}" for n in screen_cues.NAMES)
# The track cue (edge.vision.track_motion): does the face move against a still background? It
# has a value only on frames of a continuous sequence where the face moved.
MOTION = "motion.independence"
# Features that may be missing on a frame that still gets a verdict when fused with others: a
# missing value is the training mean (it adds nothing; the frame keeps the other features'
# verdict). Alone, such a feature gives a verdict only where it has a value.
OPTIONAL = {MOTION}
# Sources whose camera was probably hand-held (full-frame phone videos): a moving camera moves
# the background too, which the motion cue reads as a picture. A door's camera is fixed.
HANDHELD = ("krzysiek", "trainingdata_replay")


def feature_value(rec: dict, name: str, model: str = "int8") -> float | None:
    """A frame's value of one feature, or None when it has none (no face, or gated)."""
    if name == "net":
        p = rec["score"].get(model)
        return None if p is None else FusedLiveness.logit(p)
    part, cue = name.split(".", 1)
    return rec.get(part, {}).get(cue)


def matrix(records: list[dict], names: list[str], model: str = "int8") -> tuple[np.ndarray, np.ndarray]:
    """(X, ok): the features of every record, ok where all of them exist; with several
    features, a missing OPTIONAL one is NaN in X and does not clear ok."""
    optional = OPTIONAL.intersection(names) if len(names) > 1 else set()
    X = np.zeros((len(records), len(names)))
    ok = np.ones(len(records), bool)
    for i, rec in enumerate(records):
        for j, name in enumerate(names):
            v = feature_value(rec, name, model)
            if v is not None:
                X[i, j] = v
            elif name in optional:
                X[i, j] = np.nan
            else:
                ok[i] = False
    return X, ok


def impute(X: np.ndarray, fill: np.ndarray | None = None) -> np.ndarray:
    """X with each NaN replaced by its column's `fill` (default: the mean of its values)."""
    if not np.isnan(X).any():
        return X
    if fill is None:
        fill = np.array([np.nanmean(c) if (~np.isnan(c)).any() else 0.0 for c in X.T])
    return np.where(np.isnan(X), fill[None, :], X)


def balanced_weights(groups: np.ndarray, live: np.ndarray) -> np.ndarray:
    """Each (group, class) cell weighs the same in total: no source dominates by its size."""
    w = np.zeros(len(groups))
    cells = {(g, y) for g, y in zip(groups, live)}
    for g, y in cells:
        sel = (groups == g) & (live == y)
        w[sel] = 1.0 / sel.sum()
    return w * len(w) / w.sum()


def fit_logistic(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1.0) -> FusedLiveness:
    """Weighted L2 logistic regression by Newton's method, on standardized features."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    Z = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    beta = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], l2)
    reg[-1] = 0.0  # the bias is not shrunk
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(Z @ beta, -30, 30)))
        grad = Z.T @ (w * (p - y)) + reg * beta
        hess = (Z * (w * p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-9 * np.eye(Z.shape[1])
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return FusedLiveness(names=[], mean=mean.tolist(), scale=scale.tolist(), weights=beta[:-1].tolist(),
                         bias=float(beta[-1]), threshold=0.0)


def threshold_worst_source(scores: np.ndarray, groups: np.ndarray, target: float, least: int | None = None) -> float:
    """The highest threshold (score >= it is live) that refuses at most `target` of the live
    scores of every group of at least `least` scores (MIN_FRAMES); the smaller groups pooled
    count as one when together they are that many (none large enough: all scores pooled). Alone,
    a tight-crop source's single live frame with a verdict was its own "5 %" cut and set the
    model's threshold in 9 of 10 folds: a cut is not estimated from a frame or two."""
    least = MIN_FRAMES if least is None else least
    sizes = {g: int((groups == g).sum()) for g in np.unique(groups)}
    small = np.isin(groups, [g for g, n in sizes.items() if n < least])
    sets = [scores[groups == g] for g, n in sizes.items() if n >= least]
    if small.sum() >= least or not sets:
        sets.append(scores[small] if sets else scores)

    def cut(values: np.ndarray) -> float:
        ordered = np.sort(values)
        return float(ordered[min(int(np.floor(target * len(ordered))), len(ordered) - 1)])

    return min(cut(v) for v in sets)


def rates(scores: np.ndarray, kinds: np.ndarray, threshold: float) -> dict:
    live = scores[kinds == "live"]
    out: dict = {"bpcer": round(float((live < threshold).mean()), 4) if len(live) else None, "apcer": {},
                 "counts": {"live": int(len(live))}}
    for t in TYPES:
        a = scores[kinds == t]
        out["apcer"][t] = round(float((a >= threshold).mean()), 4) if len(a) else None
        out["counts"][t] = int(len(a))
    return out


def windows(records: list[dict], usable: np.ndarray, window: int) -> Iterator[list[int]]:
    """Frame indices of non-overlapping runs of `window` usable frames of one sequence."""
    run: list[int] = []
    for i, rec in enumerate(records):
        if run and records[run[0]]["sequence"] != rec["sequence"]:
            run = []
        if not usable[i]:
            continue
        run.append(i)
        if len(run) == window:
            yield run
            run = []


def track_score(frame_scores: np.ndarray, rule: str) -> float:
    """A window's fused score: `mean` of the frames' scores, or their `median`, or `min`."""
    return float({"mean": np.mean, "median": np.median, "min": np.min}[rule](frame_scores))


@dataclass
class Scorer:
    """A way to score frames: one feature thresholded, or several fused."""
    name: str
    features: list[str]
    model: str = "int8"
    l2: float = 1.0
    fusion: FusedLiveness | None = field(default=None)

    def fit(self, records: list[dict], target: float) -> np.ndarray:
        """Fits on `records` (all usable); returns their scores."""
        X = impute(matrix(records, self.features, self.model)[0])
        live = np.array([r["kind"] == "live" for r in records], float)
        groups = np.array([r["group"] for r in records])
        fusion = fit_logistic(X, live, balanced_weights(groups, live), self.l2)
        fusion.names = list(self.features)
        self.fusion = fusion
        scores = fusion.logits(X)
        has_live = live.astype(bool)
        fusion.threshold = threshold_worst_source(scores[has_live], groups[has_live], target)
        return scores

    def score(self, records: list[dict]) -> np.ndarray:
        assert self.fusion is not None
        X, _ = matrix(records, self.features, self.model)
        return self.fusion.logits(impute(X, np.asarray(self.fusion.mean)))


def folds(groups: np.ndarray, usable: np.ndarray) -> Iterator[tuple[str, list[int], list[int]]]:
    """(left-out group, training frame indices, test frame indices): the training side never
    holds a frame of the left-out group, whichever frames are usable."""
    for g in sorted(set(groups.tolist())):
        yield g, np.flatnonzero(usable & (groups != g)).tolist(), np.flatnonzero(usable & (groups == g)).tolist()


def fit_veto(scores: np.ndarray, threshold: float, veto: np.ndarray, groups: np.ndarray, target: float) -> float:
    """The highest veto threshold (a live item with a veto value under it is refused; NaN: no
    value, never refused by it) that keeps every group's BPCER of the combined rule (refused by
    the score or by the veto) at or under `target`; -inf when no veto fits. All items live."""
    best = -np.inf
    for t in np.unique(veto[~np.isnan(veto)]):
        refused = (scores < threshold) | (veto < t)  # NaN < t is False: no value, no veto
        if all(refused[groups == g].mean() <= target for g in np.unique(groups)):
            best = float(t)
        else:
            break  # refusals only grow with t
    return best


def vetoed(scores: np.ndarray, veto: np.ndarray, veto_threshold: float) -> np.ndarray:
    """The scores with every item the veto refuses set to -inf (refused at any threshold)."""
    return np.where(veto < veto_threshold, -np.inf, scores)


def _track_veto(values: np.ndarray) -> float:
    """A track's veto value: the median of its frames' values that exist, NaN when none does."""
    have = values[~np.isnan(values)]
    return float(np.median(have)) if len(have) else float("nan")


def loso(records: list[dict], scorer_features: list[str], target: float, window: int,
         track_rule: str = "mean", model: str = "int8", l2: float = 1.0, veto: str | None = None) -> dict:
    """The leave-one-group-out figures of one scorer, per group and pooled over the folds.

    With `veto` (a feature, e.g. MOTION): a frame (track) the scorer calls live is refused when
    the feature's value (the median of the track's values) is under a threshold fitted, after the
    scorer's, as the highest that keeps every training group's BPCER of the two together at or
    under `target`; a frame (track) without a value is decided by the scorer alone."""
    _, usable = matrix(records, scorer_features, model)
    groups = np.array([r["group"] for r in records])
    kinds = np.array([r["kind"] for r in records])
    veto_of = np.array([np.nan if (v := feature_value(r, veto, model)) is None else v for r in records]) \
        if veto else np.full(len(records), np.nan)
    wins = list(windows(records, usable, window))
    per: dict = {}
    pooled_frames: list[tuple[float, str, float]] = []  # (score, kind, fold threshold)
    pooled_tracks: list[tuple[float, str, float]] = []
    curves: dict = {}
    for g, train, test in folds(groups, usable):
        entry: dict = {"frames_total": int((groups == g).sum()), "scored": len(test),
                       "coverage": round(len(test) / max(int((groups == g).sum()), 1), 4)}
        per[g] = entry
        train_recs = [records[i] for i in train]
        if not test or not any(r["kind"] == "live" for r in train_recs):
            continue
        scorer = Scorer(g, list(scorer_features), model, l2)
        train_scores = scorer.fit(train_recs, target)
        assert scorer.fusion is not None
        thr = scorer.fusion.threshold
        test_scores = scorer.score([records[i] for i in test])
        if veto:
            live_train = kinds[train] == "live"
            vthr = fit_veto(train_scores[live_train], thr, veto_of[train][live_train], groups[train][live_train],
                            target)
            test_scores = vetoed(test_scores, veto_of[test], vthr)
            entry["veto_threshold"] = round(vthr, 4)
        entry["frame"] = {"threshold": round(thr, 4), **rates(test_scores, kinds[test], thr),
                          "auc": _auc(test_scores, kinds[test])}
        pooled_frames += [(s, k, thr) for s, k in zip(test_scores, kinds[test])]
        curves[g] = (test_scores, kinds[test], thr)
        # Tracks: the track threshold fitted on the training sources' windows, same rule.
        score_of = dict(zip(train, train_scores)) | dict(zip(test, test_scores))
        train_set, test_set = set(train), set(test)
        tr = [(track_score(np.array([score_of[i] for i in w]), track_rule), _track_veto(veto_of[w]), records[w[0]])
              for w in wins if w[0] in train_set]
        te = [(track_score(np.array([score_of[i] for i in w]), track_rule), _track_veto(veto_of[w]),
               records[w[0]]["kind"]) for w in wins if w[0] in test_set]
        tr_live = np.array([s for s, _, r in tr if r["kind"] == "live"])
        tr_veto = np.array([v for _, v, r in tr if r["kind"] == "live"])
        tr_groups = np.array([r["group"] for s, _, r in tr if r["kind"] == "live"])
        if len(tr_live) and te:
            tthr = threshold_worst_source(tr_live, tr_groups, target, MIN_TRACKS)
            ts = np.array([s for s, _, _ in te])
            tk = np.array([k for _, _, k in te])
            entry["track"] = {"threshold": round(tthr, 4)}
            if veto:
                tvthr = fit_veto(tr_live, tthr, tr_veto, tr_groups, target)
                ts = vetoed(ts, np.array([v for _, v, _ in te]), tvthr)
                entry["track"]["veto_threshold"] = round(tvthr, 4)
            entry["track"].update(rates(ts, tk, tthr), auc=_auc(ts, tk))
            pooled_tracks += [(s, k, tthr) for s, k in zip(ts, tk)]
    return {"features": list(scorer_features), "veto": veto, "target_bpcer": target, "window": window,
            "track_rule": track_rule, "groups": per,
            "pooled": {"frame": _pooled(pooled_frames), "track": _pooled(pooled_tracks)},
            "worst": _worst(per), "_curves": curves}


def _auc(scores: np.ndarray, kinds: np.ndarray) -> float | None:
    """AUC of live against attack scores of one left-out group (None without both kinds): how
    well the fold's scorer ranks them, whatever its threshold."""
    live, attack = scores[kinds == "live"][:, None], scores[kinds != "live"][None, :]
    if not live.size or not attack.size:
        return None
    return round(float((live > attack).mean() + 0.5 * (live == attack).mean()), 3)


def _pooled(items: list[tuple[float, str, float]]) -> dict:
    """Every fold's test decisions together (each at its own fold's threshold)."""
    if not items:
        return {}
    decided_live = np.array([s >= t for s, _, t in items])
    kinds = np.array([k for _, k, _ in items])
    return rates(decided_live.astype(float), kinds, 0.5)


# The fewest frames (tracks) of a kind for a left-out group's figure to count in `worst`: a
# group with 3 scored frames says little (its figures are still reported).
MIN_FRAMES, MIN_TRACKS = 20, 5


def _worst(per: dict) -> dict:
    """The worst left-out group's figure of each kind, among groups with at least MIN_FRAMES
    frames (MIN_TRACKS tracks) of that kind."""
    out: dict = {}
    for level, least in (("frame", MIN_FRAMES), ("track", MIN_TRACKS)):
        for key in ("bpcer", "print", "replay"):
            vals = []
            for g, e in per.items():
                if level not in e or e[level]["counts"]["live" if key == "bpcer" else key] < least:
                    continue
                v = e[level]["bpcer"] if key == "bpcer" else e[level]["apcer"][key]
                if v is not None:
                    vals.append((v, g))
            if vals:
                v, g = max(vals)
                out[f"{level}.{key}"] = {"value": v, "group": g}
    return out


def auc_per_group(records: list[dict], feature: str, model: str = "int8") -> dict:
    """AUC of live against all attacks of one raw feature inside each group that has both (a
    cue's separating power on a source, whichever its direction: reported as max(AUC, 1-AUC)
    with its sign)."""
    X, ok = matrix(records, [feature], model)
    out = {}
    groups = np.array([r["group"] for r in records])
    kinds = np.array([r["kind"] for r in records])
    for g in sorted(set(groups)):
        sel = ok & (groups == g)
        live, attack = X[sel & (kinds == "live"), 0], X[sel & (kinds != "live"), 0]
        if len(live) and len(attack):
            a = float((live[:, None] > attack[None, :]).mean() + 0.5 * (live[:, None] == attack[None, :]).mean())
            out[g] = round(a, 3)
    return out


CONTEXT_CUES = [f"context.{n}" for n in screen_cues.NAMES]
FACE_CUES = [f"face.{n}" for n in screen_cues.NAMES]
# The scorers measured side by side: the network alone (as shipped, only its threshold fitted),
# the network with the bezel cue, with four context-crop cues (flatness left out: it points
# opposite ways on different sources, AUC 0.08 on NUAA, 0.99 on the webcam), with all five,
# and the face-box cues alone (the only verdict possible on tight face crops).
SCORERS = {
    "net": ["net"],
    "net+edges": ["net", "context.straight_edges"],
    "net+context": ["net", "context.straight_edges", "context.saturation", "context.glare", "context.spectral_peaks"],
    "net+all-context": ["net", *CONTEXT_CUES],
    "face": FACE_CUES,
    # The track cue alone (a verdict only where the face moved in a continuous sequence), and
    # fused: where it has no value the frame keeps the others' verdict.
    "motion": [MOTION],
    "net+motion": ["net", MOTION],
    "net+context+motion": ["net", "context.straight_edges", "context.saturation", "context.glare",
                           "context.spectral_peaks", MOTION],
}
# The scorers re-measured with the motion cue silenced on the HANDHELD sources (no verdict from
# it there, as on the evenly spaced ones): what it does where the camera is fixed.
FIXED_CAMERA_SCORERS = ("net", "net+motion", "net+context", "net+context+motion", "motion")
# The scorers measured with the motion cue as a veto (live only if the cue, where it has a
# value, is not under its own threshold), on every source and with it silenced on HANDHELD.
VETO_SCORERS = ("net", "net+context")


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def report(records: list[dict], target: float, window: int, track_rules: tuple[str, ...] = ("mean", "median", "min"),
           log=None) -> tuple[dict, dict]:
    """Every scorer's LOSO figures (per track rule), each cue alone, and the coverage of each
    group; with the DET curves of each scorer's folds (second value)."""
    out: dict = {"target_bpcer": target, "window": window, "groups": _coverage(records), "scorers": {},
                 "cues_alone": {}}
    curves = {}
    for name, feats in SCORERS.items():
        by_rule = {}
        for rule in track_rules:
            res = loso(records, feats, target, window, rule)
            curves[name] = res["_curves"]
            by_rule[rule] = _public(res)
        out["scorers"][name] = by_rule
        if log:
            r = by_rule[track_rules[0]]
            log(f"{name}: worst left-out {r['worst']}; pooled {r['pooled']}")
    out["shipped"] = shipped(records, window)
    out["motion"] = motion_report(records, target, window, track_rules[0], log)
    for cue in CUES:
        res = loso(records, [cue], target, window, track_rules[0])
        out["cues_alone"][cue] = {"auc_within_group": auc_per_group(records, cue), "worst": res["worst"],
                                  "pooled": res["pooled"]}
    return out, curves


def without_motion(records: list[dict], groups: tuple[str, ...] = HANDHELD) -> list[dict]:
    """The records with the motion cue removed on `groups`' frames (no verdict from it there)."""
    return [{**r, "motion": {}} if r["group"] in groups else r for r in records]


def track_auc_per_group(records: list[dict], feature: str, window: int) -> dict:
    """AUC of live against attack tracks (windows of `window` frames with a value, their median)
    inside each group that has both."""
    X, ok = matrix(records, [feature])
    kinds = np.array([r["kind"] for r in records])
    groups = np.array([r["group"] for r in records])
    out = {}
    for g in sorted(set(groups.tolist())):
        wins = [w for w in windows(records, ok & (groups == g), window)]
        live = [float(np.median(X[w, 0])) for w in wins if kinds[w[0]] == "live"]
        attack = [float(np.median(X[w, 0])) for w in wins if kinds[w[0]] != "live"]
        if live and attack:
            a = np.array(live)[:, None], np.array(attack)[None, :]
            out[g] = {"auc": round(float((a[0] > a[1]).mean() + 0.5 * (a[0] == a[1]).mean()), 3),
                      "tracks": {"live": len(live), "attack": len(attack)}}
    return out


def motion_report(records: list[dict], target: float, window: int, track_rule: str, log=None) -> dict:
    """The motion cue: per group, the share of frames it judges and its median by kind; AUC
    inside groups with both kinds, per frame and per track; the LOSO figures of
    FIXED_CAMERA_SCORERS with the cue silenced on the HANDHELD sources; and of VETO_SCORERS with
    the cue as a veto, on every source and with it silenced on HANDHELD."""
    X, ok = matrix(records, [MOTION])
    per: dict = {}
    for i, r in enumerate(records):
        e = per.setdefault(r["group"], {}).setdefault(r["kind"], {"frames": 0, "judged": 0, "_v": []})
        e["frames"] += 1
        if ok[i]:
            e["judged"] += 1
            e["_v"].append(X[i, 0])
    for kinds in per.values():
        for e in kinds.values():
            v = e.pop("_v")
            e["median"] = round(float(np.median(v)), 3) if v else None
    per = {g: k for g, k in per.items() if any(e["judged"] for e in k.values())}
    fixed = without_motion(records)
    out = {"per_group": per, "auc_frames": auc_per_group(records, MOTION),
           "auc_tracks": track_auc_per_group(records, MOTION, window), "handheld": list(HANDHELD),
           "fixed_camera": {}}
    for name in FIXED_CAMERA_SCORERS:
        res = _public(loso(fixed, SCORERS[name], target, window, track_rule))
        out["fixed_camera"][name] = res
        if log:
            log(f"fixed camera, {name}: worst left-out {res['worst']}")
    for variant, recs in (("all", records), ("fixed_camera", fixed)):
        for name in VETO_SCORERS:
            res = _public(loso(recs, SCORERS[name], target, window, track_rule, veto=MOTION))
            out.setdefault("veto", {}).setdefault(variant, {})[name] = res
            if log:
                log(f"{name} with the motion veto ({variant}): worst left-out {res['worst']}")
    return out


def shipped(records: list[dict], window: int, model: str = "int8") -> dict:
    """The network at the shipped threshold, fitted on NUAA and the webcam only: for every other
    group a figure on unseen data, for those two an in-sample one. Tracks as the daemon decides
    by default: the median p(live) of `window` frames."""
    from edge.vision.liveness import LivenessNet

    thr = LivenessNet.threshold
    p = np.array([r["score"].get(model, np.nan) for r in records], float)
    usable = ~np.isnan(p)
    groups = np.array([r["group"] for r in records])
    kinds = np.array([r["kind"] for r in records])
    wins = list(windows(records, usable, window))
    out: dict = {"threshold": thr, "fitted_on": ["nuaa", "webcam"], "groups": {}}
    for g in sorted(set(groups.tolist())):
        sel = usable & (groups == g)
        if not sel.any():
            continue
        w = [x for x in wins if groups[x[0]] == g]
        entry = {"frame": rates(p[sel], kinds[sel], thr)}
        if w:
            entry["track"] = rates(np.array([np.median(p[x]) for x in w]), np.array([kinds[x[0]] for x in w]), thr)
        out["groups"][g] = entry
    return out


def _coverage(records: list[dict]) -> dict:
    out: dict = {}
    for r in records:
        e = out.setdefault(r["group"], {"sources": [], "frames": {}, "face": 0, "context": 0})
        if r["source"] not in e["sources"]:
            e["sources"].append(r["source"])
        e["frames"][r["kind"]] = e["frames"].get(r["kind"], 0) + 1
        e["face"] += r["box"] is not None
        e["context"] += r["gate"] is None
    return out


def fit_all(records: list[dict], features: list[str], target: float, window: int, track_rule: str) -> dict:
    """The scorer fitted on every group (what ships), with its frame and track thresholds."""
    _, usable = matrix(records, features)
    recs = [r for r, ok in zip(records, usable) if ok]
    scorer = Scorer("all", list(features))
    scores = scorer.fit(recs, target)
    assert scorer.fusion is not None
    idx = {id(r): i for i, r in enumerate(recs)}
    tracks = [(track_score(np.array([scores[idx[id(records[i])]] for i in w]), track_rule), records[w[0]])
              for w in windows(records, usable, window)]
    live = np.array([s for s, r in tracks if r["kind"] == "live"])
    groups = np.array([r["group"] for s, r in tracks if r["kind"] == "live"])
    return {**scorer.fusion.as_dict(),
            "track": {"rule": track_rule, "window": window,
                      "threshold": threshold_worst_source(live, groups, target, MIN_TRACKS)}}


def plot_det_per_source(curves: dict, path, title: str) -> None:
    """One panel per left-out group: APCER of each attack type against BPCER as the threshold
    moves, each fold's scorer on its left-out group; the dot is the fold's fitted threshold. A
    group without live frames has no BPCER axis of its own: its APCER is drawn against the
    pooled live frames of every fold (dashed). Groups with fewer than MIN_FRAMES scored frames
    are left out of the figure (not of the figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [g for g, (scores, _, _) in curves.items() if len(scores) >= MIN_FRAMES]  # a few frames draw nothing
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    all_live = np.concatenate([s[k == "live"] - t for s, k, t in curves.values()]) if curves else np.zeros(0)
    for ax, g in zip(axes.ravel(), names):
        scores, kinds, thr = curves[g]
        live = scores[kinds == "live"] - thr
        own = len(live) > 0
        ref = live if own else all_live
        for t, colour in (("replay", "tab:red"), ("print", "tab:blue")):
            a = scores[kinds == t] - thr
            if not len(a) or not len(ref):
                continue
            grid = np.unique(np.concatenate([ref, a, [0.0]]))
            b = np.array([(ref < x).mean() for x in grid])
            ap = np.array([(a >= x).mean() for x in grid])
            ax.plot(np.maximum(b, 1e-3), np.maximum(ap, 1e-3), color=colour, label=t,
                    linestyle="-" if own else "--")
            ax.plot(max((ref < 0).mean(), 1e-3), max((a >= 0).mean(), 1e-3), "o", color=colour)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(1e-3, 1)
        ax.axvline(0.05, color="grey", linewidth=0.6)
        ax.axhline(0.15, color="tab:red", linewidth=0.4, alpha=0.5)
        ax.set_title(g, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no attack frames scored", ha="center", va="center", transform=ax.transAxes, fontsize=8)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"{title}: DET per left-out source (x BPCER, y APCER; dot = fold threshold)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
