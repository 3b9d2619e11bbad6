"""The claims the site's doors refused on the face, for an edge's lockout to count
(docs/daemon.md#a-stolen-badge-gets-a-few-tries).

Each edge counts a claimed person's refusals and locks their badge after `max_refusals`; on its
own, a site of several doors would give a stolen badge that many tries at each. The edges' access
logs reach the hub, so the hub can tell an edge what the others refused: every `decision` record
an edge marked as counted by its lockout (`detail.claim_lockout`: `refused`, or `admitted`, which
starts that person's count again at every door) since the time the edge asks from. The asking
edge's own refusals are left out (it counts them itself); its admissions are not. A lockout
lifted on the hub (edge.hub.store.claim_lifts: an operator's word) counts as an admission at
every door, and goes to every edge as well (`site_lifts`): it ends a lockout it followed. The
lifts are read once per request (`lifts_since`) for both.

The marks are read by their own column (edge.hub.store.access: no record's body is parsed),
dated at most AHEAD_S past the hub's clock, of enrolled persons only, the newest PER_EDGE of each
edge: the refusals of the last minutes are what a lockout needs. Read from every decision, newest
first, at most 20,000, a door's key taken could upload 20,000 records dated far ahead (or merely
many) and so push every other door's refusals out of the read, switching the site's badge
lockout off for good. For the same reason the MAX_REFUSALS an edge is sent are shared fairly
between the doors (`fair_newest`), after a group-bound key's persons are chosen: one door's 1,000
made-up refusals dated a minute ahead filled the whole list.

An admission clears the refusals made at the door that admitted, not at every door: any door's
key could upload an `admitted` mark, and one forged mark of a person erased every other door's
refusals of that person (a stolen badge and a stolen door key: endless tries). An edge that
admits a person starts their count again itself (edge.daemon.claim_lockout).

A door whose keys are all bound to groups (`[[credentials]] groups`: `door_groups`) speaks for
those groups' persons only: its refusals of anyone else are not counted. A lobby door's key for
"staff", taken off the wall, uploaded refused claims of a "board" member, and the server room's
door locked that member's badge out.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Sequence

from edge.core import errors
from edge.core.errors import ApiError
from edge.core.syncwire import ADMITTED, MAX_REFUSALS, REFUSED

if TYPE_CHECKING:
    from edge.core.signature import Credential
    from edge.hub.store import Store

log = logging.getLogger(__name__)

PER_EDGE = 5_000  # marked decisions of each edge read per request at most
# An edge's clock ahead of the hub's by more than this: its refusals are not sent (an edge counts
# a time in the future as now, so such a refusal would never age out nor yield to a lift).
AHEAD_S = 300.0
LONGEST_WINDOW_S = 86_400.0  # the edge's refusal_window_s is at most a day (edge.daemon.config)


def lifts_since(store: Store, appid: str, since: float, now: float | None = None) -> dict[str, tuple[float, str]]:
    """person_id -> (time, by whom) of the lockouts lifted on the hub since `since` (at most a
    day back): read once, for `site_refusals` and `site_lifts` both."""
    now = time.time() if now is None else now
    return store.claim_lifts(appid, max(since, now - LONGEST_WINDOW_S))


Refusal = tuple[str, float, str]  # person_id, wall time, edge_id


def door_groups(credentials: Iterable[Credential]) -> dict[str, frozenset[str]]:
    """edge_id -> the groups its refusals may name, for each edge all of whose keys are bound to
    groups (an edge with a key of every group, or the appid's, speaks for everyone)."""
    groups: dict[str, set[str] | None] = {}
    for cred in credentials:
        if cred.edge_id:
            known = groups.setdefault(cred.edge_id, set())
            groups[cred.edge_id] = None if known is None or not cred.groups else known | set(cred.groups)
    return {edge: frozenset(g) for edge, g in groups.items() if g}


def site_refusals(store: Store, appid: str, edge_id: str, since: float, lifted: dict[str, tuple[float, str]],
                  now: float | None = None, person_id: str | None = None,
                  keep: Callable[[set[str]], set[str]] | None = None,
                  edge_groups: Mapping[str, frozenset[str]] | None = None) -> list[Refusal]:
    """(person_id, wall time, edge_id) of the claims other edges than `edge_id` refused on the
    face since `since` (of `person_id` only, when given; of the persons `keep` keeps of those
    refused, when given; of an edge in `edge_groups` (door_groups'), of its groups' persons
    only), after that door's last admitted claim of the person and any lift (`lifted`:
    lifts_since's); oldest first, at most MAX_REFUSALS shared fairly by the doors."""
    now = time.time() if now is None else now
    since = max(since, now - LONGEST_WINDOW_S)
    # dated ahead of the hub's clock: left out (an edge counts a future time as now, so such a
    # refusal would never age out nor yield to a lift)
    marks = store.counted_claims(appid, since, now + AHEAD_S, PER_EDGE, person_id)
    refused: dict[tuple[str, str], list[Refusal]] = {}  # (person, door) -> its refusals there
    for person, at, edge, mark in marks:  # oldest first: an admission clears what came before it
        if not person or (person in lifted and at <= lifted[person][0]):
            continue
        if mark == ADMITTED:
            refused.pop((person, edge), None)
        elif mark == REFUSED and edge != edge_id:
            refused.setdefault((person, edge), []).append((person, at, edge))
    for door, groups in (edge_groups or {}).items():
        named = {person for person, edge in refused if edge == door}
        if named:
            theirs = members_of(store, appid, named, sorted(groups))
            refused = {k: rs for k, rs in refused.items() if k[1] != door or k[0] in theirs}
    if keep is not None:
        kept = keep({person for person, _ in refused})
        refused = {k: rs for k, rs in refused.items() if k[0] in kept}
    return fair_newest([r for rs in refused.values() for r in rs], MAX_REFUSALS)


def fair_newest(refusals: Iterable[Refusal], limit: int) -> list[Refusal]:
    """At most `limit` of `refusals`, oldest first: each door's newest in turn, so that a door
    with more refusals than the limit (a key taken off the wall) takes only its share."""
    by_door: dict[str, list[Refusal]] = {}
    for r in sorted(refusals, key=lambda r: r[1], reverse=True):
        by_door.setdefault(r[2], []).append(r)
    out: list[Refusal] = []
    for turn in itertools.zip_longest(*by_door.values()):
        out.extend(r for r in turn if r is not None)
        if len(out) >= limit:
            break
    return sorted(out[:limit], key=lambda r: r[1])


def site_lifts(lifted: dict[str, tuple[float, str]]) -> list[tuple[str, float]]:
    """(person_id, wall time) of the lifts (lifts_since's) as an edge is sent them: oldest first,
    the newest MAX_REFUSALS of them."""
    return sorted(((p, at) for p, (at, _) in lifted.items()), key=lambda r: r[1])[-MAX_REFUSALS:]


def members_of(store: Store, appid: str, person_ids: set[str], group_ids: Sequence[str]) -> set[str]:
    """Those of `person_ids` in one of `group_ids` (a deleted person in none): what an edge whose
    key is bound to those groups hears of, the site's other persons' refusals and lifts left out."""
    wanted, members = set(group_ids), set()
    for person_id in person_ids:
        try:
            if wanted & set(store.get_person(appid, person_id).group_ids):
                members.add(person_id)
        except ApiError as exc:
            if exc.code != errors.PERSON_UNKNOWN:
                raise
    return members
