"""Doors at a glance: what each edge reported when it last synced (edge.hub.store.edges) beside
the hub's own state: its change-log head, the fingerprints it serves, its copy of the edge's
access log. And whether a person's last change (a deletion) has reached every door: an edge
whose applied cursor is at or past that change's seq has it."""

from __future__ import annotations

import shlex
import time

from starlette.responses import Response

from edge.core.errors import ApiError
from edge.hub.ui.guard import Ctx, page
from edge.hub.ui.sitetime import shown, site_zone


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _edgekey_command(report) -> str:
    """The command that makes the door a key of its own, for the groups its sync asks for (a key
    without them would hold every group's people). Quoted for a shell: a reported id or group
    may hold `$(...)`, and the operator pastes this as root."""
    groups = "".join(f" --group {shlex.quote(g)}" for g in report.groups)
    return f"edge-verifier hub edgekey --edge-id {shlex.quote(report.edge_id)}{groups}"


@page("viewer")
def doors(console, ctx: Ctx) -> Response:
    zone, zone_name = site_zone(console.store, ctx.appid)
    head = console.store.last_seq(ctx.appid)
    try:
        served = set(console.service.vision.fingerprints)
    except ApiError:  # the hub's models cannot load: no pack is served, the page still shows the doors
        served = set()
    now = time.time()
    rows = []
    chains = console.store.access_chains(ctx.appid)
    for report in console.store.edge_reports(ctx.appid):
        chain = chains.get(report.edge_id, {})
        rows.append({"report": report, "contact": shown(report.last_contact, zone),
                     "edgekey": _edgekey_command(report),
                     "age": _age(now - report.last_contact), "behind": max(0, head - report.cursor),
                     "pack_served": report.pack in served, "log_seq": chain.get("seq"),
                     "log_refused": chain.get("refused", 0)})
    person_id = ctx.request.query_params.get("person", "").strip()[:128]
    reach = None
    if person_id:
        seq = console.store.person_last_seq(ctx.appid, person_id)
        try:
            console.store.get_person(ctx.appid, person_id)
            enrolled = True
        except ApiError:  # PERSON_UNKNOWN: deleted, or never enrolled
            enrolled = False
        reach = {"person_id": person_id, "seq": seq, "enrolled": enrolled,
                 "missing": [r["report"].edge_id for r in rows if r["report"].cursor < seq]}
    return console.render("doors.html", ctx, rows=rows, head=head, zone=zone_name, reach=reach,
                          person=person_id)
