"""The second factor at the door (docs/access.md#second-factor): a verify claim (a badge or PIN
naming a person, MQTT cmd/verify) reaches the access rules only for the person it names. Each
attack below is what a claim or an uncertain face would open without the checks. The door link
as the daemon wires it: a real edge cache fed with the rules as sync brings them, a real access
log, the real command gate and claims; the backend `none` stands for the relay."""

from __future__ import annotations

from edge.core.domain import Decision, Mode, Source, TrackLiveness
from edge.daemon.claims import Claims
from edge.daemon.commands import CommandGate
from edge.daemon.decide import Outcome
from tests.door.test_door_link_rules import ALL_WEEK, Edge
from tests.support.broker import EDGE_API, edge_command


def rules(auth: str) -> dict:
    """ben (staff) and eve (visitors) may both pass `main` at any time; the door wants `auth`."""
    return {"format": 1, "timezone": "UTC", "groups": ["staff", "visitors"],
            "doors": [{"id": "main", "auth": [{"schedule": "always", "auth": auth}]}],
            "schedules": {"always": ALL_WEEK},
            "access_levels": [{"id": "all-main", "groups": ["staff", "visitors"], "doors": ["main"],
                               "schedule": "always"}]}


def edge_with(tmp_path, auth: str) -> Edge:
    edge = Edge(tmp_path)
    edge.sync_rules(rules(auth), 1)
    edge.link.start()
    return edge


def decide(edge: Edge, person: str, event_id: str, decision: Decision, claim=None,
           mode: Mode = Mode.VERIFY) -> None:
    out = Outcome(mode, decision, Source.LOCAL, person, score=0.6, liveness=TrackLiveness(0.9, 5, "live"))
    edge.link.decided(out, {"event_id": event_id, "fingerprints": {"pack": "p"}, "cache_version": "sync-1"},
                      0.05, claim=claim)


def acted(edge: Edge) -> list[tuple[str, str, str]]:
    return [(e["person_id"], e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")]


def opened_claim(person: str) -> tuple[Claims, CommandGate, dict]:
    """A claim as a badge reader sends it: a signed cmd/verify through the command gate."""
    claims = Claims(10.0)
    gate = CommandGate("signed", [EDGE_API], rate_per_s=0, burst=5, claims=claims)
    payload = edge_command("verify", person_id=person)
    assert gate.handle("verify", payload)
    return claims, gate, payload


def test_face_and_claim_grants_only_when_both_name_the_person(tmp_path):
    edge = edge_with(tmp_path, "face+claim")
    decide(edge, "ben", "d1", Decision.ACCEPT, mode=Mode.IDENTIFY)  # the face alone: asked for more
    claims, _, _ = opened_claim("ben")
    decide(edge, "ben", "d2", Decision.ACCEPT, claim=claims.take())
    assert acted(edge) == [("ben", "deny", "second_factor_needed"), ("ben", "grant", "granted")]
    assert edge.records("decision")[-1]["detail"]["claim"] == "ben"


def test_attack_a_badge_for_ben_with_eves_face_never_opens(tmp_path):
    edge = edge_with(tmp_path, "face+claim")
    # What the daemon decides: eve's face verified 1:1 against ben's claim is a reject.
    claims, _, _ = opened_claim("ben")
    decide(edge, "ben", "d1", Decision.REJECT, claim=claims.take())
    # Should a decision ever name another person than its claim (eve identified while ben's
    # claim rode along), the claim is no second factor: eve is asked for hers, ben's is logged.
    claims, _, _ = opened_claim("ben")
    decide(edge, "eve", "d2", Decision.ACCEPT, claim=claims.take())
    assert acted(edge) == [("ben", "deny", "not_accepted:decision_reject"), ("eve", "deny", "second_factor_needed")]
    assert not edge.energised and not edge.door_events("grant")
    record = edge.records("decision")[-1]
    assert (record["outcome"], record["detail"].get("claim"), record["detail"]["claim_ignored"]) == (
        "step_up", None, "ben")


def test_attack_a_replayed_claim_is_refused_and_decides_nothing(tmp_path):
    edge = edge_with(tmp_path, "face+claim")
    claims, gate, payload = opened_claim("ben")
    decide(edge, "ben", "d1", Decision.ACCEPT, claim=claims.take())
    assert not gate.handle("verify", payload)  # the same signed claim again (recorded off the air)
    assert gate.refused == {"signature": 1} and claims.take() is None  # single use, and used
    decide(edge, "ben", "d2", Decision.ACCEPT, mode=Mode.IDENTIFY, claim=claims.take())
    assert acted(edge) == [("ben", "grant", "granted"), ("ben", "deny", "second_factor_needed")]


def test_an_uncertain_face_asks_for_a_second_factor_and_never_opens_alone(tmp_path):
    edge = edge_with(tmp_path, "claim_if_uncertain")
    decide(edge, "ben", "d1", Decision.UNCERTAIN, mode=Mode.IDENTIFY)
    assert acted(edge) == [("ben", "deny", "second_factor_needed")] and not edge.door_events("grant")
    record = edge.records("decision")[-1]
    assert (record["outcome"], record["reason"], record["decision"]) == ("step_up", "second_factor_needed", "uncertain")
    # the second factor for ben decides his uncertain face; eve's claim decides nothing for ben
    claims, _, _ = opened_claim("eve")
    decide(edge, "ben", "d2", Decision.UNCERTAIN, claim=claims.take())
    claims, _, _ = opened_claim("ben")
    decide(edge, "ben", "d3", Decision.UNCERTAIN, claim=claims.take())
    assert acted(edge)[1:] == [("ben", "deny", "second_factor_needed"), ("ben", "grant", "granted")]


def test_an_uncertain_face_with_its_claim_is_refused_where_the_schedule_does_not_allow_it(tmp_path):
    for auth in ("face", "face+claim"):
        (tmp_path / auth).mkdir()
        edge = edge_with(tmp_path / auth, auth)
        claims, _, _ = opened_claim("ben")
        decide(edge, "ben", "d1", Decision.UNCERTAIN, claim=claims.take())
        decide(edge, "ben", "d2", Decision.UNCERTAIN, mode=Mode.IDENTIFY)
        assert acted(edge) == [("ben", "deny", "not_accepted:decision_uncertain")] * 2, auth
        assert not edge.energised


def test_attack_an_uncertain_face_that_is_no_accept_otherwise_is_not_opened_by_its_claim(tmp_path):
    # a claim lifts the face's uncertainty, nothing else: not a face that is not live (liveness
    # require, the default), a decision delivered late, nor one of the offline policy
    edge = edge_with(tmp_path, "claim_if_uncertain")
    cases = {"not_live": dict(liveness=TrackLiveness(0.2, 5, "attack")),
             "undecided_liveness": dict(liveness=None),
             "offline": dict(source=Source.OFFLINE_POLICY)}
    for event_id, kw in cases.items():
        claims, _, _ = opened_claim("ben")
        out = Outcome(Mode.VERIFY, Decision.UNCERTAIN, kw.get("source", Source.LOCAL), "ben", score=0.6,
                      liveness=kw.get("liveness", TrackLiveness(0.9, 5, "live")))
        edge.link.decided(out, {"event_id": event_id}, 0.05, claim=claims.take())
    claims, _, _ = opened_claim("ben")
    decide(edge, "ben", "stale", Decision.UNCERTAIN, claim=None)  # the same, fresh and live: asked
    out = Outcome(Mode.VERIFY, Decision.UNCERTAIN, Source.LOCAL, "ben", score=0.6,
                  liveness=TrackLiveness(0.9, 5, "live"))
    edge.link.decided(out, {"event_id": "late"}, 60.0, claim=claims.take())  # stale_accept_s: 10 s
    assert [reason for _, kind, reason in acted(edge)] == ["not_accepted:decision_uncertain"] * 3 + [
        "second_factor_needed", "not_accepted:decision_uncertain"]
    assert not edge.door_events("grant") and not edge.energised
