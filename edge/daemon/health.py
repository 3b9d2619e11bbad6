"""The daemon's state: what /health answers and MQTT `state` carries, read from its parts."""

from __future__ import annotations

import time

from edge.daemon.metrics import breaker_state


def daemon_state(d) -> dict:
    """`d` is the running edge.daemon.main.Daemon; reading it changes nothing."""
    gallery = d.gallery_ref
    sync = dict(d.syncer.state) if d.syncer else {}
    cam = d.camera.state.as_dict()
    # A helper thread that ended on its own (sync, local API, outbox sender) leaves the loop
    # running but the door half blind or mute: say so, a supervisor cannot see it otherwise.
    threads = {t.name: t.is_alive() or d.stop_event.is_set() for t in d.threads}
    if d.s.mqtt.enabled:
        threads["mqtt-outbox"] = d.events.sender_alive()
    outbox = d.events.outbox_health()
    ok = (cam["status"] in ("ok", "ended") and sync.get("status") != "fingerprint_mismatch"
          and all(threads.values()) and outbox["writable"] and not outbox["held_in_memory"])
    return {"status": "ok" if ok else "degraded", "device": d.s.device.id,
            "uptime_s": round(time.time() - d.started, 1), "camera": cam,
            "mqtt": {"connected": d.events.connected, "outbox_depth": d.events.outbox_depth(),
                     "outbox_rejected": d.events.outbox_rejected(), "outbox": outbox},
            "threads": threads,
            "cache": {"version": gallery.version, "faces": len(gallery),
                      "persons": len(gallery.person_ids)},
            "sync": sync, "cloud": {"breaker": breaker_state(d.cloud)},
            "decisions": d.decisions, "pending": len(d.window),
            "pack": d.s.vision.precision, "fingerprint": d.pipeline.fingerprint,
            "thresholds": {"accept": d.thresholds.accept, "reject": d.thresholds.reject,
                           # identify's accept for the gallery in use (edge.core.false_admit)
                           "identify": gallery.identify_threshold(d.s.identify.groups or None),
                           "false_admit_rate": d.thresholds.false_admit_rate},
            "liveness": d.liveness.health()}
