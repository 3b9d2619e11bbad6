"""The doors' decisions, read from the access log the edges upload (edge.hub.store.access), and
"this was ...": comparing a photo of that moment with the person it should have been.

The access log keeps no face (docs/access.md), so a decision cannot teach the gallery by itself:
the operator uploads a photo from that moment, sees BEFORE saving how it scores against the
person named, against the nearest other person and the margin between, and saves it through
the enrolment path (quality gate, near-identical check) only when it does not look more like
someone else, or when they confirm. The face is tagged with the decision it corrects.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlencode

from starlette.responses import Response

from edge.api.ops import ApiLimits
from edge.core import access_chain
from edge.core.errors import ApiError
from edge.hub import enrolment
from edge.hub.ui.guard import Ctx, page, refused
from edge.hub.ui.sitetime import parsed, shown, site_zone

PAGE_SIZE = 50
FILTERS = {"person": "person_id", "door": "door", "decision": "decision", "outcome": "outcome", "reason": "reason"}
MAX_FILTER = 128

# What a record's reason means, for an operator who has not read docs/access.md (the code stays
# shown beside it, for the docs and for `log search`).
REASONS = {
    "granted": "let in",
    "duress": "let in, and a duress alarm raised (a duress person)",
    "outside_schedule": "outside the times the person's access levels allow at this door",
    "no_access_level": "no access level of the person's groups includes this door",
    "holiday": "a holiday: the person's schedule does not apply today",
    "locked_down": "the door was locked down (by its mode or the rules' schedule)",
    "anti_passback": "anti-passback: the person had not left since passing, or passed too recently",
    "rules_invalid": "the door had no valid access rules: it lets nobody in",
    "rules_pending": "newer access rules were not applied yet at this door: it lets nobody in meanwhile",
    "second_factor_needed": "a second factor was needed (a badge claim for the person): the door stayed locked",
    "max_unlock": "the door had been held unlocked as long as it may: let in again once faces pause",
    "not_in_groups": "the person is in none of the groups this door serves",
    "relay_by_panel": "the access panel drives the lock: it decided",
    "panel_unreachable": "the access panel could not be reached",
    "not_accepted": "the face was not accepted",
}
WHY_NOT = {
    "decision_reject": "it did not match the person well enough",
    "decision_uncertain": "it was not certain enough, and no second factor was given",
    "decision_unknown": "no decision could be made (the hub asked did not answer)",
    "unknown_person": "the person is not enrolled at this door (not synced yet, or deleted)",
    "presentation_attack": "it was judged a photo or a screen held to the camera",
    "not_live": "it could not be judged a live face",
    "no_liveness_verdict": "no liveness verdict yet when it was decided",
    "stale": "the decision came too late to open the door",
    "offline_policy": "the hub was offline, and the offline policy does not open the door",
    "claim_locked_out": "the badge was locked out after repeated refusals: lift the lockout on the person's page",
    "claim_timeout": "the badge claim found no face in time",
}


def explain(reason: str | None) -> str:
    """The plain words for a record's reason (`not_accepted:<why>` too); "" when unknown."""
    if not reason:
        return ""
    head, _, why = reason.partition(":")
    text = REASONS.get(head, "")
    if why and text:
        return f"{text}: {WHY_NOT.get(why, why.replace('_', ' '))}"
    return text or WHY_NOT.get(reason, "")


def _complete(record: dict, zone) -> dict:
    """Every evidence field present (None when the edge did not write it) and the local time.
    A record stored before the hub checked its shapes may hold anything: its text fields are
    shown as text (a list in person_id made the page's links fail)."""
    for name in access_chain.EVIDENCE_FIELDS:
        record.setdefault(name, None)
    for name in access_chain.TEXT_FIELDS:
        if record[name] is not None and not isinstance(record[name], str):
            record[name] = access_chain.canonical(record[name])[:200]
    record["shown_at"] = shown(record.get("at"), zone)
    record["explained"] = explain(record["reason"] if isinstance(record.get("reason"), str) else None)
    return record


def _query(ctx: Ctx) -> dict[str, str]:
    params = ctx.request.query_params
    return {name: params.get(name, "").strip()[:MAX_FILTER] for name in (*FILTERS, "since", "until")}


@page("viewer")
def decisions(console, ctx: Ctx) -> Response:
    """The newest decisions first, filtered; 'Older' pages by the keyset of the last row shown."""
    zone, zone_name = site_zone(console.store, ctx.appid)
    query = _query(ctx)
    error = ""
    try:
        since = parsed(query["since"], zone)
        until = parsed(query["until"], zone, end_of_day=True)
        after = access_chain.decode_cursor(ctx.request.query_params.get("after", "")[:200] or None)
    except ValueError as exc:
        since = until = after = None
        error = str(exc)
    found = ""
    if query["person"] and not error:
        query["person"], found = _person_of(console, ctx.appid, query["person"])
    filters = {column: query[name] for name, column in FILTERS.items() if query[name]}
    filters["kind"] = "decision"
    records, nxt = ([], None) if error else console.store.search_access(ctx.appid, filters, since, until, after,
                                                                         PAGE_SIZE, newest_first=True)
    for r in records:
        _complete(r, zone)
    shared = {k: v for k, v in query.items() if v}
    older = "/ui/decisions?" + urlencode({**shared, "after": access_chain.encode_cursor(nxt)}) if nxt else ""
    # only the rows for the filter form's own htmx request; a boosted link or a plain GET gets the page
    template = "decision_rows.html" if ctx.request.headers.get("hx-target") == "decisions" else "decisions.html"
    return console.render(template, ctx, records=records, query=query, zone=zone_name, older=older,
                          first=after is None, error=error, found=found)


def _person_of(console, appid: str, typed: str) -> tuple[str, str]:
    """(the person id to filter by, a note): an operator types the name the person's page shows
    ("Madonna"), or an id in another case: matched exactly it found nothing. An exact id wins;
    else the one person whose id or name matches, case-insensitively."""
    _, rows = console.store.persons_page(appid, typed, 0, 50)
    if any(r.person_id == typed for r in rows):
        return typed, ""
    folded = typed.casefold()
    same = [r for r in rows if folded in (r.person_id.casefold(), (r.person_name or "").casefold())]
    if len(same) == 1:
        return same[0].person_id, f"decisions of {same[0].person_id} ({same[0].person_name or 'no name'})"
    if len(same) > 1:
        return typed, "several persons are called so: " + ", ".join(r.person_id for r in same[:10])
    return typed, ""


def _record(console, ctx: Ctx) -> dict | None:
    seq = ctx.request.path_params["seq"]
    if not (seq.isascii() and seq.isdigit()) or len(seq) > 18:  # '²' is a digit int() refuses
        return None
    record = console.store.access_record(ctx.appid, ctx.request.path_params["edge_id"][:128], int(seq))
    return record if record is not None and record.get("kind") == "decision" else None


def _decision_page(console, ctx: Ctx, record: dict, status: int = 200, **values) -> Response:
    zone, zone_name = site_zone(console.store, ctx.appid)
    _complete(record, zone)
    values.setdefault("form", {"person_id": ""})
    values.setdefault("verdict", None)
    values.setdefault("comparison", None)
    values.setdefault("error", "")
    values.setdefault("saved", "")
    values.setdefault("hold", "")
    return console.render("decision.html", ctx, status=status, record=record, zone=zone_name,
                          detail=record["detail"] if isinstance(record["detail"], dict) else {}, **values)


@page("viewer")
def decision(console, ctx: Ctx) -> Response:
    record = _record(console, ctx)
    if record is None:
        return refused(console, ctx, 404, "no such decision")
    return _decision_page(console, ctx, record)


def _compare(console, ctx: Ctx, record: dict) -> tuple[dict, enrolment.PhotoVerdict | None, dict | None, str]:
    """(the form, the photo's verdict, the comparison, an error)."""
    form = {"person_id": ctx.form.get("person_id", "").strip()[:128]}
    if len(ctx.files) != 1:
        return form, None, None, "choose one photo from that moment"
    try:
        console.service.getinfo(ctx.appid, form["person_id"])
    except ApiError as exc:
        return form, None, None, f"{form['person_id'] or 'the person'}: {exc.message}"
    verdict = enrolment.examine(console.service, ctx.appid, form["person_id"], ctx.files)[0]
    if not verdict.ok or verdict.record is None:
        return form, verdict, None, f"the photo cannot be used: {verdict.explanation}"
    # the face remembers the decision it corrects
    verdict.record = dataclasses.replace(verdict.record, tag=f"decision {record['edge_id']}/{record['seq']}"[:200])
    return form, verdict, console.service.against(ctx.appid, verdict.record, form["person_id"]), ""


def holds(comparison: dict) -> str:
    """Why a photo should not be added to the person named (empty: nothing against it)."""
    nearest = comparison["nearest"]
    if comparison["score"] is None:
        return "the person has no face to compare with"
    if nearest is not None and nearest["score"] >= comparison["accept"]:
        return f"it scores {nearest['score']} against {nearest['person_id']}, at or above the accept threshold"
    if nearest is not None and comparison["margin"] < comparison["margin_needed"]:
        return (f"it is not clearly closer to {comparison['person_id']} than to {nearest['person_id']} "
                f"(margin {comparison['margin']}, less than {comparison['margin_needed']})")
    return ""


UPLOAD = ApiLimits().body_bytes + 65536


@page("operator", upload_bytes=UPLOAD)
def compare(console, ctx: Ctx) -> Response:
    """The comparison only, nothing stored (htmx: only the result, the form and its photo stay)."""
    record = _record(console, ctx)
    if record is None:
        return refused(console, ctx, 404, "no such decision")
    form, verdict, comparison, error = _compare(console, ctx, record)
    hold = holds(comparison) if comparison else ""
    if ctx.request.headers.get("hx-target") == "comparison":
        return console.render("comparison.html", ctx, form=form, comparison=comparison, error=error, hold=hold,
                              saved="", record=record)
    return _decision_page(console, ctx, record, form=form, verdict=verdict, comparison=comparison, error=error,
                          hold=hold)


@page("operator", upload_bytes=UPLOAD)
def train(console, ctx: Ctx) -> Response:
    """Add the photo to the person named, after the same comparison; held back when it looks
    more like someone else unless confirmed."""
    record = _record(console, ctx)
    if record is None:
        return refused(console, ctx, 404, "no such decision")
    form, verdict, comparison, error = _compare(console, ctx, record)
    hold = holds(comparison) if comparison else ""
    if error or comparison is None or verdict is None or verdict.record is None:
        return _decision_page(console, ctx, record, 400, form=form, verdict=verdict, comparison=comparison,
                              error=error, hold=hold)
    if hold and ctx.form.get("confirm") != "yes":
        return _decision_page(console, ctx, record, 409, form=form, verdict=verdict, comparison=comparison,
                              error=f"not saved: {hold}; tick the box to add it anyway", hold=hold)
    _created, face_ids = console.service.store_faces(ctx.appid, form["person_id"], [verdict.record], "", [])
    saved = (f"added to {form['person_id']} (face {face_ids[0]})" if face_ids
             else "not saved: a near-identical face of this person is enrolled already")
    return _decision_page(console, ctx, record, 200 if face_ids else 409, form=form, verdict=verdict,
                          comparison=comparison, hold=hold, saved=saved)
