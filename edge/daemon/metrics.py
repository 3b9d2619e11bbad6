"""Prometheus metrics of the edge daemon (served on the local API's /metrics).

Declared once per process in the default registry, which the API layer serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from edge.api.client import CloudClient
    from edge.core.matcher import Gallery
    from edge.daemon.camera import Camera
    from edge.daemon.decide import Outcome
    from edge.daemon.publisher import Publisher
    from edge.daemon.sync import Syncer

FRAMES = Counter("edge_frames_total", "Frames processed")
BAD_FRAMES = Gauge("edge_camera_bad_frames", "Frames the camera could not decode (skipped)")
CAMERA_UP = Gauge("edge_camera_up", "1 while the camera delivers frames")
FACES = Counter("edge_faces_total", "Faces detected", ["quality"])
DECISIONS = Counter("edge_decisions_total", "Decisions published", ["mode", "decision", "source"])
LIVENESS_FRAMES = Counter("edge_liveness_frames_total", "Face frames scored for liveness, by verdict "
                          "(live, attack) or the gate that withheld one (step_closer, step_back)", ["verdict"])
LIVENESS_DECISIONS = Counter("edge_liveness_decisions_total", "Decisions published, by the track's "
                             "liveness verdict (none: not enough scored frames, flag mode)", ["verdict"])
STAGE = Histogram("edge_stage_seconds", "Latency per pipeline stage", ["stage"],
                  buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5))
OUTBOX = Gauge("edge_outbox_depth", "Events waiting for the broker's PUBACK")
MQTT_UP = Gauge("edge_mqtt_connected", "1 while connected to the broker")
CACHE_FACES = Gauge("edge_cache_faces", "Faces in the local gallery")
CACHE_PERSONS = Gauge("edge_cache_persons", "Persons in the local cache")
CLOUD = Gauge("edge_cloud_breaker_state", "Cloud circuit breaker state (1 for the current one)",
              ["state"])
COMMANDS = Counter("edge_commands_total", "MQTT commands by outcome (applied or why refused)",
                   ["command", "result"])
SYNC_OK = Gauge("edge_sync_last_ok_timestamp", "Unix time of the last successful sync")


def follow(camera: Camera, events: Publisher, cloud: CloudClient | None, syncer: Syncer) -> None:
    """Read the live gauges from their parts at scrape time (nothing to keep in step)."""
    CAMERA_UP.set_function(lambda: 1 if camera.state.status == "ok" else 0)
    BAD_FRAMES.set_function(lambda: camera.state.bad_frames)
    OUTBOX.set_function(events.outbox_depth)
    MQTT_UP.set_function(lambda: 1 if events.connected else 0)
    SYNC_OK.set_function(lambda: syncer.state.get("last_ok") or 0)
    for state in ("closed", "open", "half_open", "disabled"):
        CLOUD.labels(state).set_function(_breaker_is(cloud, state))


def _breaker_is(cloud: CloudClient | None, state: str) -> Callable[[], float]:
    return lambda: 1 if breaker_state(cloud) == state else 0


def count_decision(out: Outcome) -> None:
    """One published decision, by kind and by the liveness verdict it carried."""
    DECISIONS.labels(out.mode, out.decision, out.source).inc()
    if out.liveness is not None:
        LIVENESS_DECISIONS.labels(out.liveness.verdict or "none").inc()


def gallery_swapped(gallery: Gallery) -> None:
    CACHE_FACES.set(len(gallery))
    CACHE_PERSONS.set(len(gallery.person_ids))


def breaker_state(cloud: CloudClient | None) -> str:
    return cloud.breaker_state if cloud is not None else "disabled"
