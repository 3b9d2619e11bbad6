"""The decision policy around the matcher: local accept/reject, uncertain -> cloud -> offline policy."""

from __future__ import annotations

import numpy as np
import pytest

from edge.api.client import CloudClient
from edge.core.matcher import Enrolled, Gallery, Thresholds
from edge.daemon.decide import Decider
from tests.conftest import free_port

T = Thresholds(accept=0.6, reject=0.3)


def _vec(*xs):
    v = np.zeros(8, np.float32)
    v[: len(xs)] = xs
    return v / np.linalg.norm(v)


GALLERY = Gallery([Enrolled("alice", "f1", _vec(1, 0), ("staff",), "Alice")], T, version="sync-7")
CLOSE = _vec(1, 0.1)       # cosine ~0.995: accept
UNSURE = _vec(1, 1.6)      # cosine ~0.53: uncertain
FAR = _vec(0.1, 1)         # cosine ~0.10: reject


@pytest.fixture
def dead_cloud():
    client = CloudClient(f"http://127.0.0.1:{free_port()}", "1", "k", "s", timeout=1, retries=0)
    yield client
    client.close()


def _image():
    return b"jpeg"


def test_clear_scores_are_decided_locally_without_the_cloud(dead_cloud):
    d = Decider(dead_cloud)
    ok = d.verify(GALLERY, CLOSE, "alice", _image)
    no = d.verify(GALLERY, FAR, "alice", _image)
    assert (ok.decision, ok.source, ok.cloud) == ("accept", "local", None)
    assert (no.decision, no.source, no.cloud) == ("reject", "local", None)
    assert ok.confidence >= 70 > no.confidence


@pytest.mark.parametrize("policy,verify_decision,identify_decision", [
    ("deny", "reject", "unknown"), ("allow", "accept", "accept"), ("uncertain", "uncertain", "uncertain")])
def test_uncertain_with_the_hub_down_follows_the_offline_policy_and_says_so(
        dead_cloud, policy, verify_decision, identify_decision):
    d = Decider(dead_cloud, offline=policy, identify_fallback=True)
    v = d.verify(GALLERY, UNSURE, "alice", _image)
    i = d.identify(GALLERY, UNSURE, ["staff"], _image)
    assert (v.decision, v.source) == (verify_decision, "offline-policy")
    assert (i.decision, i.source, i.person_id) == (identify_decision, "offline-policy", "alice")
    assert v.cloud.error and v.cloud.ismatch is None


@pytest.mark.parametrize("policy", ["deny", "allow", "uncertain"])
def test_an_uncertain_identify_is_unknown_without_asking_the_hub_by_default(policy):
    asked = []

    class Hub:  # would say yes to anything
        def verify(self, person_id, image):
            asked.append(person_id)
            return {"ismatch": True, "confidence": 99.0}

    out = Decider(Hub(), offline=policy).identify(GALLERY, UNSURE, ["staff"], _image)
    assert (out.decision, out.source, out.cloud, asked) == ("unknown", "local", None, [])
    assert out.threshold == T.accept  # no false-admit rate: identify accepts like a claim


def test_a_person_unknown_to_the_cache_is_never_let_in_offline_even_under_allow(dead_cloud):
    out = Decider(dead_cloud, offline="allow").verify(GALLERY, CLOSE, "mallory", _image)
    assert (out.decision, out.source) == ("unknown", "offline-policy")


def test_a_face_like_nobody_enrolled_is_unknown_in_identify(dead_cloud):
    out = Decider(dead_cloud).identify(GALLERY, FAR, ["staff"], _image)
    assert (out.decision, out.source, out.person_id) == ("unknown", "local", "")
    assert out.candidates[0]["person_id"] == "alice"


def test_without_cloud_fallback_uncertain_goes_straight_to_the_policy():
    out = Decider(None, offline="deny").verify(GALLERY, UNSURE, "alice", _image)
    assert (out.decision, out.source, out.cloud) == ("reject", "offline-policy", None)


@pytest.mark.parametrize("answer, admitted, confidence, session", [
    ({"ismatch": "false", "confidence": 91.0, "session_id": "s1"}, False, 91.0, "s1"),  # text is no yes
    ({"ismatch": 1, "confidence": 91.0}, False, 91.0, ""),
    ({"ismatch": True, "confidence": float("nan"), "session_id": None}, True, None, ""),
    ({"ismatch": True, "confidence": "91", "session_id": 7}, True, None, ""),
    ({"ismatch": True, "confidence": 150.0, "session_id": "x" * 500}, True, None, "x" * 128),
])
def test_the_hubs_answer_is_taken_strictly(answer, admitted, confidence, session):
    """`bool(data["ismatch"])` made `"false"` a yes, and a NaN or a text confidence, a null
    session went into the event off its schema. The answer is the documented types or nothing."""
    import json

    from edge.daemon.decision_event import decision_event
    from tests.support.broker import schema_errors

    class Hub:
        def verify(self, person_id, image):
            return answer

    out = Decider(Hub()).verify(GALLERY, UNSURE, "alice", _image)
    assert (out.decision == "accept", out.cloud.confidence, out.cloud.session_id) == (admitted, confidence, session)
    event = decision_event(out, device="door-1", camera="test", fingerprints={"pack": "0" * 16}, cache_version="v")
    assert schema_errors("p/door-1/event", json.dumps(event, allow_nan=False).encode()) == []


def test_with_mqtt_off_the_logged_event_holds_no_face_image(caplog):
    """With MQTT off each event is logged: with [mqtt] include_face_image the face went into the
    log too (journald keeps it, whoever reads logs sees faces)."""
    import logging

    from edge.daemon.publisher import NullPublisher

    with caplog.at_level(logging.INFO):
        NullPublisher().publish_event({"event_id": "e1", "decision": "accept", "face_image": "/9j/4AAQSkZJRg=="})
    assert "e1" in caplog.text and "/9j/" not in caplog.text and "face_image" not in caplog.text


def test_events_name_no_member_but_the_one_admitted(dead_cloud):
    """The broker is no safe place (anyone who can read it), and every stranger's event listed
    the three enrolled persons nearest to them, with their tags and scores: walking past the
    door enumerated the members, and someone holding up a member's photo read how close it came.
    An event names the person an accept admitted and nobody else, unless
    [mqtt] event_candidates = "all"."""
    import json

    from edge.daemon.decision_event import decision_event
    from tests.support.broker import schema_errors

    def event(out, **kw):
        e = decision_event(out, device="door-1", camera="test", fingerprints={"pack": "0" * 16}, cache_version="v",
                           **kw)
        assert schema_errors("p/door-1/event", json.dumps(e).encode()) == []
        return e

    stranger = Decider(dead_cloud).identify(GALLERY, FAR, ["staff"], _image)
    assert stranger.candidates and event(stranger)["candidates"] is None
    assert event(stranger, candidates="all")["candidates"][0]["person_id"] == "alice"
    member = Decider(dead_cloud).identify(GALLERY, CLOSE, ["staff"], _image)
    assert member.decision == "accept"
    assert [c["person_id"] for c in event(member)["candidates"]] == [member.person_id]
