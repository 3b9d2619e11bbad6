"""The first access rules, and the daemon's strict `accept`: only an accept of the shipped
policy opens; uncertain, unknown, reject, attack, stale, offline never energise the relay."""

from __future__ import annotations

import pytest

from edge.core.domain import Decision, Mode, Source, TrackLiveness
from edge.daemon.decide import Outcome as Decided
from edge.daemon.door_link import strict_accept
from edge.door.interface import AccessRequest, Outcome
from edge.door.rules import GroupRules, NoHistory
from tests.door.support import door


def request(accept=True, decision="accept", groups=("staff",), person="ben_afflek") -> AccessRequest:
    return AccessRequest("e", "main", person, groups, decision, "local", accept, 0.0)


def test_an_accepted_person_of_the_groups_passes_in_normal_mode():
    v = GroupRules(["staff"]).evaluate(request(), NoHistory())
    assert v.outcome is Outcome.GRANT and v.reason == "granted" and v.granted


@pytest.mark.parametrize("req, reason", [
    (request(accept=False), "not_accepted"),
    (request(accept=True, decision="uncertain"), "not_accepted"),  # a request that contradicts itself
    (request(person=""), "not_accepted"),
    (request(groups=("visitors",)), "not_in_groups"),
])
def test_refusals_and_their_reasons(req, reason):
    v = GroupRules(["staff"]).evaluate(req, NoHistory())
    assert v.outcome is Outcome.DENY and v.reason == reason


def test_modes_and_empty_groups():
    assert GroupRules(["staff"], lambda d: "locked_down").evaluate(request(), NoHistory()).reason == "locked_down"
    assert GroupRules(["staff"], lambda d: "holiday").evaluate(request(), NoHistory()).reason == "unknown_mode"
    assert GroupRules([]).evaluate(request(groups=()), NoHistory()).granted


def decided(decision=Decision.ACCEPT, source=Source.LOCAL, verdict="live", reason=None, unknown=False,
            person="ben_afflek") -> Decided:
    return Decided(Mode.IDENTIFY, decision, source, person, score=0.7, unknown_person=unknown, reason=reason,
                   liveness=None if verdict is None else TrackLiveness(0.9, 5, verdict))


CASES = {
    "uncertain": decided(Decision.UNCERTAIN),
    "unknown": decided(Decision.UNKNOWN),
    "reject": decided(Decision.REJECT),
    "attack": decided(Decision.REJECT, verdict="attack", reason="presentation_attack"),
    "accept_but_attack_reason": decided(reason="presentation_attack"),
    "accept_no_liveness_verdict": decided(verdict=None),
    "accept_liveness_attack": decided(verdict="attack"),
    "offline_allow": decided(source=Source.OFFLINE_POLICY),
    "unknown_person": decided(unknown=True),
    "no_person": decided(person=""),
}


@pytest.mark.parametrize("name", sorted(CASES) + ["stale"])
def test_no_refused_decision_ever_energises_the_relay(name):
    out = CASES.get(name, decided())
    ok, why = strict_accept(out, liveness_mode="require", stale_s=10, decided_s=11.0 if name == "stale" else 0.2,
                            offline_allow_opens=False)
    assert not ok and why
    c, clock, io = door()
    verdict = GroupRules([]).evaluate(
        AccessRequest("e", "main", out.person_id, ("staff",), str(out.decision), str(out.source), ok, 0.0),
        NoHistory())
    if verdict.granted:
        c.grant(out.person_id, verdict.reason)
    assert not io.energised and io.switches == 0  # never energised, not even for an instant


def test_a_fresh_live_accept_is_one_and_offline_allow_only_when_the_site_says_so():
    assert strict_accept(decided(), liveness_mode="require", stale_s=10, decided_s=0.2,
                         offline_allow_opens=False) == (True, "")
    assert strict_accept(decided(verdict=None), liveness_mode="off", stale_s=10, decided_s=0.2,
                         offline_allow_opens=False) == (True, "")
    assert strict_accept(decided(source=Source.OFFLINE_POLICY), liveness_mode="require", stale_s=10,
                         decided_s=0.2, offline_allow_opens=True) == (True, "")


@pytest.mark.parametrize("mode", ["flag", "off"])
def test_an_accept_judged_an_attack_never_opens_in_any_liveness_mode(mode):
    """`flag` records the verdict and lets the decision stand: a printed photo of a member was
    an accept, and the door opened for it. A door never opens on a face judged an attack."""
    assert strict_accept(decided(verdict="attack"), liveness_mode=mode, stale_s=10, decided_s=0.2,
                         offline_allow_opens=False) == (False, "presentation_attack")
    # flag: a decision made before any verdict (a print's first frame) opens nothing either; off: no verdict is made
    assert strict_accept(decided(verdict=None), liveness_mode=mode, stale_s=10, decided_s=0.2,
                         offline_allow_opens=False) == ((True, "") if mode == "off" else (False, "no_liveness_verdict"))
