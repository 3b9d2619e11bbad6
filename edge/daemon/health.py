"""The daemon's state: what /health answers and MQTT `state` carries.

Built from a `DaemonSnapshot`, the values the daemon reads from its parts at one moment
(edge.daemon.main.Daemon.snapshot), so this module knows the health rules and nothing of the
parts: `degraded` when the camera is failing, the gallery cannot be synced (another embedder
fingerprint, a page the edge cannot apply), a helper thread has ended, events cannot be
written to disk, or MQTT's network loop (commands, acknowledgements) has ended, is stuck or was
restarted lately, or the door has a fault (relay, stuck exit button, flapping input, tamper).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.core.matcher import Gallery, Thresholds


@dataclass(frozen=True)
class DaemonSnapshot:
    """The running daemon's parts, read once; reading them changed nothing."""
    device: str
    uptime_s: float
    camera: Mapping[str, Any]  # edge.daemon.camera.CameraState.as_dict()
    sync: Mapping[str, Any]  # edge.daemon.sync.Syncer.state, {} before the syncer exists
    threads: Mapping[str, bool]  # helper thread name -> alive
    stopping: bool  # the daemon is stopping: its threads may end
    outbox_sender: bool | None  # the MQTT outbox sender thread alive; None with MQTT off
    mqtt_loop: Mapping[str, Any] | None  # edge.daemon.mqtt.MqttPublisher.loop_health(); None with MQTT off
    mqtt_connected: bool
    outbox_depth: int
    outbox_rejected: int
    outbox: Mapping[str, Any]  # edge.daemon.publisher.Publisher.outbox_health()
    gallery: Gallery  # the gallery in use
    identify_groups: list[str]
    breaker: str  # the hub client's circuit breaker, "disabled" without a hub
    decisions: int  # published since start
    pending: int  # tracks whose decision is settling
    precision: str  # the model pack
    fingerprint: str  # its embedder's fingerprint
    thresholds: Thresholds
    identify_rate_per: str  # [identify] rate_per: "approach" (a track's looks share the rate) or "look"
    identify_first_share: float  # the share of the rate a track's first look may spend
    verify_rate_per: str  # [verify] rate_per: "claim" (a claim holds the accept's FAR) or "look"
    liveness: Mapping[str, Any]  # edge.daemon.liveness.LivenessPolicy.health()
    door: Mapping[str, Any] | None = None  # edge.door.controller.DoorController.health()
    claims: Mapping[str, Any] | None = None  # edge.daemon.claim_lockout.ClaimLockout.health()
    storage: Mapping[str, Any] | None = None  # storage_health(): the data directory's disk
    commands_refused: Mapping[str, int] | None = None  # edge.daemon.commands.CommandGate.refused: reason -> count


# Below this much free space on the data directory's disk the daemon says degraded, before writes
# fail: nothing reported the disk until one had (the access log losing records, single-use
# signatures no longer recorded: every signed claim and unlock refused).
LOW_DISK_BYTES = 256 * 1024 * 1024


def storage_health(data_dir: str | Path) -> dict[str, Any]:
    """The data directory's disk: free bytes, and its files' sizes (the databases and their -wal)."""
    try:
        vfs = os.statvfs(data_dir)
        free = vfs.f_bavail * vfs.f_frsize
        files = {p.name: p.stat().st_size for p in Path(data_dir).iterdir() if p.is_file()}
    except OSError as exc:
        return {"status": "error", "error": type(exc).__name__}
    return {"status": "ok" if free >= LOW_DISK_BYTES else "low", "free_bytes": free,
            "files_bytes": sum(files.values()), "largest": sorted(files.items(), key=lambda f: -f[1])[:3]}


def daemon_state(d: DaemonSnapshot) -> dict[str, Any]:
    """The health document of the snapshot `d`."""
    gallery = d.gallery
    sync = dict(d.sync)
    cam = dict(d.camera)
    # A helper thread that ended on its own (sync, local API, outbox sender) leaves the loop
    # running but the door half blind or mute: say so, a supervisor cannot see it otherwise.
    threads = {name: alive or d.stopping for name, alive in d.threads.items()}
    if d.outbox_sender is not None:
        threads["mqtt-outbox"] = d.outbox_sender
    outbox = dict(d.outbox)
    mqtt: dict[str, Any] = {"connected": d.mqtt_connected, "outbox_depth": d.outbox_depth,
                            "outbox_rejected": d.outbox_rejected, "outbox": outbox}
    if d.mqtt_loop is not None:
        mqtt["loop"] = dict(d.mqtt_loop)
    # a sync in error: the door decides on data that grows older while changes (a deletion among
    # them) wait behind a page this edge cannot apply
    ok = (cam["status"] in ("ok", "ended") and sync.get("status") not in ("fingerprint_mismatch", "error")
          and all(threads.values()) and outbox["writable"] and not outbox["held_in_memory"]
          and (d.mqtt_loop is None or d.mqtt_loop["status"] == "ok" or d.stopping)
          # a relay that does not obey, a stuck exit button, a flapping input, tamper
          and (d.door is None or d.door["status"] == "ok")
          and (d.storage is None or d.storage.get("status") == "ok"))
    return {"status": "ok" if ok else "degraded", "device": d.device,
            # when it was made: a retained state read after a crash (kill -9, power) said "ok"
            # for good, and only its age tells a consumer it is old
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "uptime_s": round(d.uptime_s, 1), "camera": cam,
            "mqtt": mqtt,
            "threads": threads,
            "cache": {"version": gallery.version, "faces": len(gallery),
                      "persons": len(gallery.person_ids)},
            "sync": sync, "cloud": {"breaker": d.breaker},
            "decisions": d.decisions, "pending": d.pending,
            "pack": d.precision, "fingerprint": d.fingerprint,
            "thresholds": {"accept": d.thresholds.accept, "reject": d.thresholds.reject,
                           # identify's accept for the gallery in use (edge.core.false_admit)
                           # at a track's first look (later looks spend less of the rate: stricter)
                           "identify": gallery.identify_threshold(d.identify_groups or None,
                                                                  share=d.identify_first_share),
                           "identify_rule": d.thresholds.rule, "identify_rate_per": d.identify_rate_per,
                           # claims: "claim" raises `accept` per claimed person and look (the
                           # event's threshold says which applied)
                           "verify_rate_per": d.verify_rate_per,
                           "false_admit_rate": d.thresholds.false_admit_rate,
                           # the face's condition moves them (edge.core.conditions): the cosine
                           # added per band and the limits beyond which the door withholds
                           "conditions": {"margins": dict(d.thresholds.band_margins),
                                          "limits": dict(d.thresholds.limits)}},
            **({} if d.claims is None else {"claims": dict(d.claims)}),
            "liveness": dict(d.liveness),
            "door": dict(d.door) if d.door is not None else None,
            **({} if d.storage is None else {"storage": dict(d.storage)}),
            # MQTT commands refused since start, by reason (every signed one refused: a full disk
            # where signatures.db cannot record them, a key that may not)
            **({} if d.commands_refused is None else {"commands": {"refused": dict(d.commands_refused)}})}
