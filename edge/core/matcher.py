"""Scoring and the decision policy: a score against the gallery, split by two thresholds.

A `Gallery` is an immutable in-memory matrix of enrolled face embeddings; the daemon and the
hub build a new one and swap the reference when the store changes, so readers never lock.
Scores are cosine similarities of unit vectors. Two thresholds split the score line:

    score >= accept  -> accept      (calibrated: FAR <= 1e-4 on different-person pairs)
    score <  reject  -> reject      (calibrated: FAR about 1e-2)
    otherwise        -> uncertain   (ask the cloud, or apply the offline policy)

`confidence` is the API's 0-100 figure: a monotone piecewise-linear map of the score that puts
the reject threshold at 40 and the accept threshold at 70, so the hub's `ismatch` (accept met)
is exactly `confidence >= 70` and clients that used the vendor's habit of "70 means the same
person" keep working. The edge may decide above accept (a face's condition, a claim's faces and
looks, identify's gallery): its `ismatch` follows that decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from edge.core.domain import Decision

if TYPE_CHECKING:
    from edge.core.conditions import Condition, Judgement


@dataclass(frozen=True)
class Thresholds:
    """Cosine thresholds of the shipped embedder. The calibrated ones are measured by `bench lfw
    --calibrate` on every cross-identity LFW pair (accept at FAR 1e-4, reject at FAR 1e-2), so a
    claim is decided at a known false-accept rate rather than at a guessed cut."""

    accept: float
    reject: float
    # identify: the best person must beat the second-best person by this much to be accepted
    margin: float = 0.05
    # identify: the pack whose impostor tail and the false-admit rate per approach that derive
    # identify's accept threshold from the number of faces searched (edge.core.false_admit); with
    # no rate, identify accepts at `accept` like a claim
    pack: str = ""
    false_admit_rate: float | None = None
    # The condition a face was seen in (edge.core.conditions): per band, the cosine added to both
    # accept thresholds ({"size:0-64": 0.03, ...} as pairs, so that Thresholds stays hashable), and
    # the limits beyond which the door withholds its decision ({"min_size": px, "max_turn": deg}).
    band_margins: tuple[tuple[str, float], ...] = ()
    limits: tuple[tuple[str, float], ...] = ()
    # identify: how a face is scored against one person (edge.core.false_admit.IDENTIFY_RULES):
    # "best", their best face; "best-or-template", the larger of that and their template, with a
    # threshold per person from the pack's per-person tail for their photo count
    rule: str = "best"
    # best-or-template: per photo count K, the band margins of a person scored by template
    # ((K, (("size:0-64", 0.012), ...)), ...), applied when larger than `band_margins`
    person_margins: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = ()

    def decide(self, score: float, accept: float | None = None) -> Decision:
        if score >= (self.accept if accept is None else accept):
            return Decision.ACCEPT
        if score < self.reject:
            return Decision.REJECT
        return Decision.UNCERTAIN

    def judge(self, condition: Condition | None) -> Judgement:
        """What the door does with a face seen in `condition` (edge.core.conditions.judge)."""
        from edge.core.conditions import judge

        return judge(condition, dict(self.band_margins), dict(self.limits))

    def identify_accept(self, faces: int) -> float:
        """Identify's accept threshold when `faces` enrolled faces are searched."""
        if self.false_admit_rate is None or not self.pack:
            return self.accept
        from edge.core.false_admit import identify_accept

        return identify_accept(self.pack, self.false_admit_rate, faces, self.accept)

    def claim_accept(self, faces: int, share: float = 1.0) -> float:
        """A claim's accept threshold for a person of `faces` faces on a look spending `share`
        of the claim's FAR (edge.core.false_admit.claim_accept); `accept` for one face and the
        whole share, or without a pack."""
        if (faces <= 1 and share >= 1.0) or not self.pack:
            return self.accept
        from edge.core.false_admit import claim_accept

        return claim_accept(self.pack, self.accept, faces, share)

    def claim_template_accept(self, photos: int, share: float = 1.0) -> float:
        """A claim's accept threshold for a person of `photos` photos scored by their best face or
        template (edge.core.false_admit.claim_template_accept)."""
        if not self.pack:
            return self.accept
        from edge.core.false_admit import claim_template_accept

        return claim_template_accept(self.pack, self.accept, photos, share)

    @property
    def template_photos(self) -> int:
        """Persons with up to this many faces are scored by `best-or-template` (0: nobody)."""
        if self.rule != "best-or-template" or self.false_admit_rate is None:
            return 0
        from edge.core.false_admit import template_photos

        return template_photos(self.pack)

    def person_margin(self, photos: int, bands: Mapping[str, str]) -> tuple[float, str]:
        """(margin, band): the largest margin of a face in `bands` ({"size": "0-64", ...}) for a
        person of `photos` faces scored by template; (0.0, "") for anyone else."""
        margins = dict(dict(self.person_margins).get(photos, ()))
        return max(((margins.get(f"{m}:{b}", 0.0), f"{m}:{b}") for m, b in bands.items()), default=(0.0, ""))

    def raised_for_person(self, judged: Judgement, photos: int) -> Judgement:
        """`judged` with its margin raised to the template rule's own for a person of `photos`
        faces (person_margin) where that is larger: how a claim scored by best face or template
        is judged (Decider.verify, and bench door --claims through it)."""
        margin, band = self.person_margin(photos, judged.bands)
        return replace(judged, margin=round(margin, 4), band=band) if margin > judged.margin else judged

    def person_accept(self, persons: int, photos: int, faces: int) -> float:
        """Identify's accept threshold for one person of `photos` faces, `persons` persons and
        `faces` faces searched: today's (faces counted) unless the person is scored by template."""
        today = self.identify_accept(faces)
        if self.false_admit_rate is None or photos > self.template_photos:
            return today
        from edge.core.false_admit import template_accept

        return template_accept(self.pack, self.false_admit_rate, persons, photos, today)


# Calibrated for each model pack on every cross-identity pair among the 7,701 LFW images (29.6
# million impostor pairs; the two photos filed under two names excluded): `edge-verifier bench
# lfw --precision all --calibrate` prints the cosine at FAR 1e-4 (accept) and at FAR 1e-2
# (reject). The int8 packs' pairs were measured on models build 9 (calibrated on the
# manifest's registry photos), the fp32 packs' on build 8 (the same fp32 bytes); re-measured on
# build 10 (AMD EPYC, AVX2): int8 0.4285 / 0.3070, under its pair, which stays; int8-lite
# 0.4150 / 0.2512, over build 9's 0.4143 / 0.2509, so raised to them. For the
# default int8 pack (SFace) the 8,101 same-person pairs of those images are accepted at
# 98.39 % and rejected at 0.34 %. The packs run different networks
# whose score scales differ, so each needs its own pair (build 7 applied the default pack's
# accept to int8-lite: FAR 3e-5, accepting 91.5 % of those same-person pairs instead of 94.2 %).
CALIBRATED_THRESHOLDS = {
    "int8": Thresholds(accept=0.4286, reject=0.3074, pack="int8"),
    "fp32": Thresholds(accept=0.4282, reject=0.3070, pack="fp32"),
    "int8-lite": Thresholds(accept=0.4150, reject=0.2512, pack="int8-lite"),
    "fp32-lite": Thresholds(accept=0.4133, reject=0.2480, pack="fp32-lite"),
    # int8's files embedding each crop with its mirror: build 10, AMD EPYC, 2026-12-06,
    # `bench lfw --precision int8-mirror --calibrate` (FAR 9.99e-5 / 9.98e-3 on 29.6 M pairs).
    "int8-mirror": Thresholds(accept=0.4301, reject=0.3089, pack="int8-mirror"),
}
DEFAULT_THRESHOLDS = CALIBRATED_THRESHOLDS["int8"]


def thresholds_for(pack: str, accept: float | None = None, reject: float | None = None,
                   false_admit_rate: float | None = None, conditions: bool = True,
                   rule: str = "best") -> Thresholds:
    """The calibrated thresholds of a model pack, with the configured overrides applied;
    with a false-admit rate, identify derives its own accept threshold (edge.core.false_admit);
    with `conditions`, the thresholds follow the condition a face was seen in (BAND_MARGINS and
    DOOR_LIMITS there, issue 25); `rule` is identify's (ValueError for a pack it was not
    measured on)."""
    from edge.core.false_admit import (
        IDENTIFY_RULES,
        TEMPLATE_RULE,
        band_margins,
        door_limits,
        template_band_margins,
        template_photos,
    )

    if rule not in IDENTIFY_RULES:
        raise ValueError(f"identify rule {rule!r}: one of {', '.join(IDENTIFY_RULES)}")
    if rule == TEMPLATE_RULE and not template_photos(pack):
        raise ValueError(f"identify rule {rule!r} has no measured tail for pack {pack!r}")
    per_k: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = ()
    if conditions and rule == TEMPLATE_RULE:
        per_k = tuple((k, tuple(sorted(template_band_margins(pack, k).items())))
                      for k in range(1, template_photos(pack) + 1))
    base = CALIBRATED_THRESHOLDS[pack]
    return Thresholds(base.accept if accept is None else accept,
                      base.reject if reject is None else reject, base.margin,
                      base.pack, false_admit_rate,
                      tuple(sorted(band_margins(pack).items())) if conditions else (),
                      tuple(sorted(door_limits().items())) if conditions else (), rule, per_k)


CONFIDENCE_AT_REJECT = 40.0
CONFIDENCE_AT_ACCEPT = 70.0


def confidence(score: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> float:
    """Monotone map of cosine score to 0-100 (reject -> 40, accept -> 70, 1.0 -> 100)."""
    xs = [-1.0, 0.0, thresholds.reject, thresholds.accept, 1.0]
    ys = [0.0, 0.0, CONFIDENCE_AT_REJECT, CONFIDENCE_AT_ACCEPT, 100.0]
    return round(float(np.interp(float(score), xs, ys)), 2)


def hub_confidence_needed(threshold: float, thresholds: Thresholds) -> float:
    """The confidence a hub's answer must reach to admit at the edge's `threshold`: the pack's
    calibrated accept (where the hub's confidence is 70) raised by as much as `threshold` is over
    the edge's own accept, on the pack's calibrated scale (the hub's unless it overrides it). An
    edge that moves its accept ([policy] accept) moves its local cut, not the hub's."""
    base = CALIBRATED_THRESHOLDS.get(thresholds.pack, thresholds)
    return confidence(base.accept + max(threshold - thresholds.accept, 0.0), base)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (normalised here, so callers need not)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else 0.0


@dataclass(frozen=True)
class Enrolled:
    """One enrolled face as the gallery needs it."""

    person_id: str
    face_id: str
    embedding: np.ndarray
    group_ids: tuple[str, ...] = ()
    person_name: str = ""
    tag: str = ""


@dataclass(frozen=True)
class Candidate:
    person_id: str
    face_id: str
    score: float
    person_name: str = ""
    tag: str = ""


@dataclass(frozen=True)
class IdentifyResult:
    candidates: list[Candidate]  # best face per person, best first
    decision: Decision
    margin: float | None  # best minus second-best person, None with fewer than two
    threshold: float | None = None  # the accept threshold applied (it follows the faces searched)
    # best-or-template: the condition margin that raised `threshold` when the first person's own
    # (by their photo count) was larger than the one asked for, and its band
    raised: tuple[float, str] | None = None


@dataclass
class Gallery:
    """Immutable snapshot of enrolled embeddings (rows are unit vectors).

    Scoring is one matrix-vector product; the best face per person is picked with numpy, not a
    Python loop, so identify stays fast at the documented scale (20,000 persons per group).
    """

    faces: Sequence[Enrolled] = ()
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    version: str = ""
    _matrix: np.ndarray = field(init=False, repr=False)
    _person_of_face: np.ndarray = field(init=False, repr=False)
    _rows_of_person: dict[str, np.ndarray] = field(init=False, repr=False)
    _rows_of_group: dict[str, np.ndarray] = field(init=False, repr=False)
    _most_faces: int = field(init=False, repr=False)  # of any one person
    # per person index: their faces' count and (rule best-or-template) their template
    _person_order: list[str] = field(init=False, repr=False)
    _person_index: dict[str, int] = field(init=False, repr=False)
    _photos: np.ndarray = field(init=False, repr=False)
    _templates: np.ndarray = field(init=False, repr=False)
    # groups searched -> their rows sorted by person, where each person's run starts, the persons
    # (best-or-template: a best face per person by one reduceat instead of a sort per identify)
    _segments: dict[tuple[str, ...] | None, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.faces = tuple(self.faces)
        if self.faces:
            m = np.stack([np.asarray(f.embedding, dtype=np.float32) for f in self.faces])
            m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        else:
            m = np.zeros((0, 0), dtype=np.float32)
        self._matrix = m
        persons: dict[str, list[int]] = {}
        groups: dict[str, list[int]] = {}
        for row, f in enumerate(self.faces):
            persons.setdefault(f.person_id, []).append(row)
            for g in f.group_ids:
                groups.setdefault(g, []).append(row)
        person_index = self._person_index = {pid: i for i, pid in enumerate(persons)}
        self._person_of_face = np.array([person_index[f.person_id] for f in self.faces], dtype=np.int64)
        self._rows_of_person = {pid: np.array(rows, dtype=np.int64) for pid, rows in persons.items()}
        self._rows_of_group = {g: np.array(rows, dtype=np.int64) for g, rows in groups.items()}
        self._most_faces = max((len(rows) for rows in persons.values()), default=0)
        self._person_order = list(persons)
        self._photos = np.array([len(rows) for rows in persons.values()], dtype=np.int64)
        self._templates = np.zeros((0, 0), dtype=np.float32)
        if self.thresholds.template_photos and self.faces:
            t = np.zeros((len(persons), m.shape[1]), dtype=np.float32)
            np.add.at(t, self._person_of_face, m)
            self._templates = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def person_ids(self) -> set[str]:
        return set(self._rows_of_person)

    @property
    def group_ids(self) -> set[str]:
        return set(self._rows_of_group)

    def groups_of(self, person_id: str) -> tuple[str, ...]:
        """The groups of `person_id`'s faces, sorted; () for a person not in the gallery."""
        rows = self._rows_of_person.get(person_id, ())
        return tuple(sorted({g for row in rows for g in self.faces[row].group_ids}))

    def _unit(self, embedding: np.ndarray) -> np.ndarray:
        v = np.asarray(embedding, dtype=np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def _candidate(self, row: int, score: float) -> Candidate:
        f = self.faces[row]
        return Candidate(f.person_id, f.face_id, float(score), f.person_name, f.tag)

    def photos_of(self, person_id: str) -> int:
        """How many faces `person_id` has in the gallery (0: none)."""
        rows = self._rows_of_person.get(person_id)
        return 0 if rows is None else len(rows)

    def verify(self, embedding: np.ndarray, person_id: str) -> Candidate | None:
        """Best of the person's faces against `embedding`; None if the person has no face."""
        rows = self._rows_of_person.get(person_id)
        if rows is None:
            return None
        scores = self._matrix[rows] @ self._unit(embedding)
        best = int(np.argmax(scores))
        return self._candidate(int(rows[best]), scores[best])

    def claim(self, embedding: np.ndarray, person_id: str) -> tuple[Candidate, bool] | None:
        """A claim's score against `person_id`: their best face, or under `best-or-template` (a
        person of 2 to `template_photos` faces) the larger of that and their template, as
        identify scores a person; and whether the template rule applied. None if the person has
        no face. The candidate names the best face. A person of one photo is scored by it, at
        the best face's margins: the template of one photo is that photo, and the rule's margins
        for one photo (fitted for identify) cost claims 0.3-2.8 points of members on the first
        look for nothing measurable (`bench door --claims --bands`, docs/benchmarks.md)."""
        best = self.verify(embedding, person_id)
        if best is None:
            return None
        photos = self.photos_of(person_id)
        if not 2 <= photos <= self.thresholds.template_photos:
            return best, False
        by_template = float(self._templates[self._person_index[person_id]] @ self._unit(embedding))
        return replace(best, score=max(best.score, by_template)), True

    def _rows(self, group_ids: Iterable[str] | None) -> np.ndarray:
        """Rows of the faces in any of `group_ids` (None: all), ascending, each once."""
        if group_ids is None:
            return np.arange(len(self.faces), dtype=np.int64)
        parts = [self._rows_of_group[g] for g in set(group_ids) if g in self._rows_of_group]
        if len(parts) == 1:
            return parts[0]
        member = np.zeros(len(self.faces), dtype=bool)  # a mask, not a sort: linear in the faces
        for part in parts:
            member[part] = True
        return np.flatnonzero(member)

    def _best_faces(self, rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """Indices into `scores` of the best face of each of the `k` best persons, best first
        (ties: lower row first, as a stable sort of all of them would give).

        Only the highest scores are sorted: a face above the j-th person's best face belongs to
        one of the j - 1 persons before, who have at most `_most_faces` faces each, so the k best
        persons' best faces are among the k * `_most_faces` highest scores (all ties included).
        """
        need = k * self._most_faces
        if need < len(scores):
            cut = np.partition(scores, len(scores) - need)[len(scores) - need]
            candidates = np.flatnonzero(scores >= cut)
        else:
            candidates = np.arange(len(scores))
        # Highest score first; the first row of each person in that order is their best face.
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        _, first = np.unique(self._person_of_face[rows[order]], return_index=True)
        return order[np.sort(first)][:k]  # persons ranked by their best score

    def identify(
        self, embedding: np.ndarray, group_ids: Iterable[str] | None = None, top_k: int = 5,
        raise_by: float = 0.0, bands: Mapping[str, str] | None = None, share: float = 1.0,
    ) -> IdentifyResult:
        """Rank persons (best face each) within `group_ids` (None: all) and decide on the best;
        `raise_by` (>= 0, the face's condition margin) is added to the accept threshold, or
        under `best-or-template` the first person's own margin for the face's `bands` if larger;
        `share` (0 < share <= 1) of the false-admit rate is what this look may spend."""
        thresholds = self._spending(share)
        rows = self._rows(group_ids)
        if len(rows) == 0:
            return IdentifyResult([], Decision.REJECT, None, thresholds.identify_accept(0))
        if thresholds.template_photos:
            return self._identify_by_template(self._unit(embedding), self._person_runs(group_ids, rows), top_k,
                                              raise_by, bands or {}, thresholds)
        # Score every row, then pick: cheaper than copying the group's rows out of the matrix.
        scores = (self._matrix @ self._unit(embedding))[rows]
        best_rows = self._best_faces(rows, scores, max(top_k, 2))
        ranked = [self._candidate(int(rows[i]), scores[i]) for i in best_rows]
        accept = round(min(thresholds.identify_accept(len(rows)) + max(raise_by, 0.0), 1.0), 4)
        return self._decided(ranked, top_k, accept)

    def _spending(self, share: float) -> Thresholds:
        """The thresholds of a look that may spend `share` of the false-admit rate."""
        if not 0.0 < share <= 1.0:
            raise ValueError("share must be in (0, 1]")
        rate = self.thresholds.false_admit_rate
        if share == 1.0 or rate is None:
            return self.thresholds
        return replace(self.thresholds, false_admit_rate=rate * share)

    def _decided(self, ranked: list[Candidate], top_k: int, accept: float,
                 raised: tuple[float, str] | None = None) -> IdentifyResult:
        """The first of `ranked` (persons, best first) decided at `accept`."""
        decision = self.thresholds.decide(ranked[0].score, accept)
        margin = ranked[0].score - ranked[1].score if len(ranked) > 1 else None
        # Two enrolled people both close to the face: not safe to accept either locally.
        if decision is Decision.ACCEPT and margin is not None and margin < self.thresholds.margin:
            decision = Decision.UNCERTAIN
        return IdentifyResult(ranked[:top_k], decision, margin, accept, raised)

    def _person_runs(self, group_ids: Iterable[str] | None,
                     rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`rows` (those of `group_ids`) sorted by person, where each person's run starts, and
        those persons (ascending); kept per group set searched (a few: the daemon's groups; at
        most 32, as API callers may name any set)."""
        key = None if group_ids is None else tuple(sorted(set(group_ids)))
        runs = self._segments.get(key)
        if runs is None:
            by_person = rows[np.argsort(self._person_of_face[rows], kind="stable")]
            owners = self._person_of_face[by_person]
            starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
            runs = (by_person, starts, owners[starts])
            if len(self._segments) >= 32:
                self._segments.clear()
            self._segments[key] = runs
        return runs

    def _identify_by_template(self, unit: np.ndarray, runs: tuple[np.ndarray, np.ndarray, np.ndarray],
                              top_k: int, raise_by: float, bands: Mapping[str, str],
                              thresholds: Thresholds) -> IdentifyResult:
        """Identify under `best-or-template`: each person searched scores the larger of their best
        face and their template (persons with more faces than the rule was measured for: the best
        face), is ranked by it, and the first is decided at their own threshold (their photo
        count's tail at the per-person rate, never under today's for the same search)."""
        rows, starts, persons = runs
        face_scores = self._matrix @ unit
        score = np.maximum.reduceat(face_scores[rows], starts)  # each person's best face
        by_template = self._photos[persons] <= thresholds.template_photos
        # every template scored, then picked: cheaper than copying the searched ones out
        score[by_template] = np.maximum(score[by_template], (self._templates @ unit)[persons[by_template]])
        k = min(max(top_k, 2), len(persons))
        top = np.argpartition(-score, k - 1)[:k] if k < len(persons) else np.arange(len(persons))
        top = top[np.lexsort((persons[top], -score[top]))]  # score descending; ties: first enrolled
        ranked = []
        for i in top:
            person_rows = self._rows_of_person[self._person_order[int(persons[i])]]
            face_row = int(person_rows[np.argmax(face_scores[person_rows])])
            ranked.append(self._candidate(face_row, score[i]))
        first = int(persons[top[0]])
        photos = int(self._photos[first])
        own = thresholds.person_accept(len(persons), photos, len(rows))
        raised = thresholds.person_margin(photos, bands)  # (0.0, "") past the measured K
        accept = round(min(own + max(raise_by, raised[0], 0.0), 1.0), 4)
        return self._decided(ranked, top_k, accept, raised if raised[0] > max(raise_by, 0.0) else None)

    def identify_threshold(self, group_ids: Iterable[str] | None = None, share: float = 1.0) -> float:
        """The accept threshold identify applies now in `group_ids` (None: all faces) to a look
        spending `share` of the rate; under `best-or-template` the strictest of the persons searched."""
        thresholds = self._spending(share)
        rows = self._rows(group_ids)
        if not thresholds.template_photos or len(rows) == 0:
            return thresholds.identify_accept(len(rows))
        persons = self._person_runs(group_ids, rows)[2]
        return max(thresholds.person_accept(len(persons), int(k), len(rows))
                   for k in np.unique(self._photos[persons]))
