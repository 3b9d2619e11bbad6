"""What the daemon's main loop does with a decision (Daemon._decided and _publish), driven with
the real door link, claim lockout and settings, and stand-ins for the camera, models and outbox:
the wiring that the door link's and the lockout's own tests do not reach."""

from __future__ import annotations

import time
import types

from edge.core.domain import Claim, Decision, Mode, Source, TrackLiveness
from edge.daemon.claim_lockout import ClaimLockout
from edge.daemon.claims import Claims
from edge.daemon.decide import Outcome
from edge.daemon.main import Daemon
from tests.door.test_door_link_rules import RULES, Edge


def _daemon(edge: Edge, events, claims: Claims | None = None):
    fake = types.SimpleNamespace(
        s=edge.link.s, camera=types.SimpleNamespace(name="cam"), events=events, door=edge.link, decisions=0,
        pipeline=types.SimpleNamespace(fingerprint="0" * 16, fingerprints={}),
        gallery_ref=types.SimpleNamespace(version="v"), claims=claims, _face_crop=lambda fields: None)
    for name in ("_publish", "_why_not_admitted"):
        setattr(fake, name, types.MethodType(getattr(Daemon, name), fake))
    return fake


def test_a_stalled_outbox_write_counts_towards_the_frames_age(tmp_path):
    """The frame's age went to the door as measured before the event's outbox write (an SQLite
    commit on the SD card): a write that stalled did not count towards stale_accept_s, and the
    door opened for a frame older than it."""
    edge = Edge(tmp_path)
    edge.link.s.policy.stale_accept_s = 0.5
    edge.sync_rules(RULES, 1)
    edge.link.start()
    sent = []

    class StallingOutbox:
        def publish_event(self, event):
            sent.append(event)
            time.sleep(1.0)

    out = Outcome(Mode.IDENTIFY, Decision.ACCEPT, Source.LOCAL, "ben", score=0.7,
                  liveness=TrackLiveness(0.9, 5, "live"))
    Daemon._publish(_daemon(edge, StallingOutbox()), out, t_frame=time.perf_counter() - 0.05, track_id=1, frames=3)
    assert sent[0]["admits"] is True  # fresh when the event was made
    assert not edge.energised and not edge.door_events("grant")
    assert [e["reason"] for e in edge.door_events("deny")] == ["not_accepted:stale"]


def test_the_lockout_hears_why_the_door_would_not_open():
    """Daemon._decided tells the claim lockout why the door would not open on an accept: a print
    matched with liveness flag counts as a refusal, not as the owner admitted."""
    import tempfile
    from pathlib import Path

    edge = Edge(Path(tempfile.mkdtemp()))
    edge.link.s.liveness.mode = "flag"
    claims = Claims(10.0, ClaimLockout(2, window_s=600, lockout_s=300))
    published = []
    fake = _daemon(edge, None, claims)
    fake._publish = lambda out, **fields: published.append(fields["claim_counted"])
    candidate = types.SimpleNamespace(claim=Claim("alice", time.monotonic() + 10), claimed_in_view=False,
                                      face=None, frame=None, t_frame=None, track=types.SimpleNamespace(id=1),
                                      frames=3, latency=None, gallery=types.SimpleNamespace(version="v"))
    print_matched = Outcome(Mode.VERIFY, Decision.ACCEPT, Source.LOCAL, "alice",
                            liveness=TrackLiveness(0.001, 5, "attack"))
    for _ in range(2):
        Daemon._decided(fake, candidate, print_matched)
    assert published == ["refused", "refused"] and claims.lockout.locked("alice") > 0
