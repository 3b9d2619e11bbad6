"""Prometheus metrics of the edge daemon (served on the local API's /metrics).

Declared once per process in the default registry, which the API layer serves.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES = Counter("edge_frames_total", "Frames processed")
BAD_FRAMES = Gauge("edge_camera_bad_frames", "Frames the camera could not decode (skipped)")
CAMERA_UP = Gauge("edge_camera_up", "1 while the camera delivers frames")
FACES = Counter("edge_faces_total", "Faces detected", ["quality"])
DECISIONS = Counter("edge_decisions_total", "Decisions published", ["mode", "decision", "source"])
STAGE = Histogram("edge_stage_seconds", "Latency per pipeline stage", ["stage"],
                  buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5))
OUTBOX = Gauge("edge_outbox_depth", "Events waiting for the broker's PUBACK")
MQTT_UP = Gauge("edge_mqtt_connected", "1 while connected to the broker")
CACHE_FACES = Gauge("edge_cache_faces", "Faces in the local gallery")
CACHE_PERSONS = Gauge("edge_cache_persons", "Persons in the local cache")
CLOUD = Gauge("edge_cloud_breaker_state", "Cloud circuit breaker state (1 for the current one)",
              ["state"])
SYNC_OK = Gauge("edge_sync_last_ok_timestamp", "Unix time of the last successful sync")
