"""`edge-verifier run --config FILE`: the edge daemon, wiring only.

camera -> vision (detect, quality gate, embed, liveness) -> tracker -> decide (matcher, cloud,
offline policy) -> settle window -> decision event -> publisher (outbox -> MQTT) -> the door
(access rules, controller, relay: edge.daemon.door_link). One frame's path is
FrameScorer.process (edge.daemon.scoring); the door ticks on every turn of the main loop.
Beside the main loop: the sync thread, paho's network thread and the local API (uvicorn in a
thread). The main loop pings the systemd watchdog, so a hung loop gets the service restarted;
SIGTERM stops everything (the door locked first) and says `offline`.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edge.core.false_admit import RATE_NOT_HELD
from edge.core.settings import private_folder
from edge.daemon import metrics
from edge.daemon.claim_lockout import ClaimLockout, LockoutStore
from edge.daemon.claims import NO_FACE, Claims, locked_out, unanswered
from edge.daemon.health import DaemonSnapshot, daemon_state, storage_health
from edge.daemon.priority import CameraFirst
from edge.daemon.sdnotify import notify, watchdog_interval_s
from edge.daemon.watchdog import warn_if_too_short
from edge.door.release import relay_of, release_left_over, remember_relay
from edge.vision.packs import ModelPackError

if TYPE_CHECKING:
    from edge.api.client import CloudClient
    from edge.core.matcher import Gallery, Thresholds
    from edge.daemon.cache import EdgeCache
    from edge.daemon.camera import Camera
    from edge.daemon.commands import CommandGate
    from edge.daemon.config import EdgeSettings
    from edge.daemon.decide import Decider, Outcome
    from edge.daemon.door_link import DoorLink
    from edge.daemon.liveness import LivenessPolicy
    from edge.daemon.local_api import LocalApi
    from edge.daemon.publisher import Publisher
    from edge.daemon.scoring import FrameScorer
    from edge.daemon.settle import Candidate, SettleWindow
    from edge.daemon.sync import Syncer
    from edge.daemon.tracker import Tracker
    from edge.door.access_log import AccessLog
    from edge.door.access_upload import Uploader
    from edge.vision.pipeline import Pipeline

log = logging.getLogger("edge.daemon")

STATE_EVERY_S = 10.0
# A camera read held this long without returning keeps the device: the watchdog is left to
# restart the daemon (a camera that never comes back otherwise, the loop turning, pings going).
CAMERA_STUCK_RESTART_S = 120.0
# A fresh edge (nothing synced yet) holds its camera until its first sync ends, at most this
# long: a member at the door while it boots would otherwise meet an empty gallery and be turned
# away; a hub that does not answer must not keep the door blind for longer.
FIRST_SYNC_WAIT_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=False, help="TOML config (edge-verifier config example edge)")
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")


def run(args: argparse.Namespace) -> int:
    from edge.core.logs import configure

    configure(args.log_level)
    from edge.core.settings import ConfigError
    from edge.daemon.config import load

    try:
        settings = load(args.config)
    except ConfigError as exc:
        print(json.dumps({"code": 21, "message": str(exc)}), file=sys.stderr)
        return 2
    daemon = Daemon(settings)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop_event.set())
    try:
        daemon.start()
    except ConfigError as exc:  # found at start: the edge's own key file, the door's pins or backend
        print(json.dumps({"code": 21, "message": str(exc)}), file=sys.stderr)
        return 2
    except ModelPackError as exc:
        log.error("%s", exc)
        return 1
    try:
        daemon.loop()
    finally:
        daemon.shutdown()
    return 0


class Daemon:
    """Owns the parts and the main loop; no algorithm of its own."""

    # The parts built by start(), in the order a frame meets them.
    camera: Camera
    pipeline: Pipeline
    tracker: Tracker
    liveness: LivenessPolicy
    decider: Decider
    window: SettleWindow
    scorer: FrameScorer
    events: Publisher
    # Beside the frame's path.
    thresholds: Thresholds
    gallery_ref: Gallery  # swapped atomically by the syncer; readers just read it
    claims: Claims  # with its lockout, read back from the data directory
    cache: EdgeCache
    commands: CommandGate

    def __init__(self, settings: EdgeSettings):
        self.s = settings
        self.stop_event = threading.Event()
        self.started = time.time()
        self.cloud: CloudClient | None = None  # None without a hub
        self.syncer: Syncer | None = None
        self.api: LocalApi | None = None  # None with the local API off
        self.decisions = 0
        self.priority = CameraFirst()
        self.threads: list[threading.Thread] = []
        self.door: DoorLink | None = None  # built in start(), after the publisher
        self.access_log: AccessLog | None = None  # the door's access log (start())
        self.uploader: Uploader | None = None  # the log to the hub: None without a hub
        self.edge_id = ""  # the id the hub knows this edge by (start(), with a hub)
        self._first_sync_by: float | None = None  # monotonic deadline while a fresh edge waits

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        from edge.api.client import CloudClient
        from edge.core.matcher import Gallery
        from edge.daemon.cache import EdgeCache
        from edge.daemon.camera import from_settings
        from edge.daemon.commands import CommandGate
        from edge.daemon.decide import Decider
        from edge.daemon.door_link import DoorLink
        from edge.daemon.edge_id import own_edge_id
        from edge.daemon.liveness import LivenessPolicy
        from edge.daemon.local_api import credentials
        from edge.daemon.mqtt import MqttPublisher
        from edge.daemon.outbox import Outbox
        from edge.daemon.publisher import NullPublisher
        from edge.daemon.retained_record import FILE_NAME as RETAINED_RECORD
        from edge.daemon.scoring import FrameScorer
        from edge.daemon.settle import SettleWindow
        from edge.daemon.sync import Syncer
        from edge.daemon.tracker import Tracker
        from edge.modelpack.share import pull_or_keep
        from edge.vision import Pipeline

        s = self.s
        data = Path(s.storage.path)
        private_folder(data)
        release_left_over(data)  # a previous run killed with its relay energised (edge.door.release)
        if s.api.enabled or s.mqtt.commands == "signed":
            credentials(s)  # the edge's own key made (or a broken one refused) before anything starts
        # The id the hub binds this door's key to (edge.daemon.edge_id), read once: a broken
        # file stops the start here, not a sync or an upload later.
        self.edge_id = own_edge_id(data, s.hub.appid) if s.hub.url else ""
        v = s.verify  # the lockout's counts come back from disk: a power cut gives no new tries
        self.claims = Claims(v.claim_timeout_s, ClaimLockout(v.max_refusals, v.refusal_window_s, v.lockout_s,
                                                             store=LockoutStore(data / "lockout.db")))
        if s.hub.url:
            pull_or_keep(s.hub, s.vision.models_dir, s.vision.precision, log.info)
        t0 = time.perf_counter()
        self.pipeline = Pipeline.load(s.vision.models_dir, precision=s.vision.precision,
                                      threads=s.vision.threads)
        log.info("models loaded in %.2fs (embedder fingerprint %s)", time.perf_counter() - t0,
                 self.pipeline.fingerprint)
        self.thresholds = s.thresholds()
        if s.identify.enabled and s.vision.precision in RATE_NOT_HELD:
            log.warning("pack %s: false_admit_rate %g may not hold: %s (docs/benchmarks.md, the other packs); "
                        "use int8 where it matters", s.vision.precision, s.identify.false_admit_rate,
                        RATE_NOT_HELD[s.vision.precision])
        self.gallery_ref = Gallery((), self.thresholds, version="empty")
        if s.hub.url:
            self.cloud = CloudClient.from_settings(s.hub)
        self.cache = EdgeCache(data / "cache.db", dim=self.pipeline.embedder.dim)
        self.syncer = Syncer(self.cloud, self.cache, self.pipeline.fingerprint,
                             group_ids=s.identify.groups, page_size=s.hub.sync_page,
                             interval_s=s.hub.sync_interval_s, thresholds=self.thresholds,
                             on_gallery=self._swap_gallery, report=self._sync_report,
                             site_refusals=self.claims.lockout if s.verify.share_refusals else None)
        self.syncer.load()  # offline-capable: the last synced state, before the hub answers
        self.decider = Decider(self.cloud, offline=s.policy.offline,
                               cloud_fallback=s.policy.cloud_fallback,
                               identify_fallback=s.identify.cloud_fallback, rate_per=s.identify.rate_per,
                               claim_rate_per=s.verify.rate_per)
        self.tracker = Tracker(s.tracker.iou, s.tracker.max_missed)
        self.window = SettleWindow(self.decider, s.tracker.settle_s, self._decided, s.tracker.evidence)
        if s.liveness.cues and s.liveness.mode != "off" and self.pipeline.liveness is not None:
            from edge.vision.liveness import FusedLiveness

            self.pipeline.liveness = self.pipeline.liveness.with_fusion(FusedLiveness.load())
        self.liveness = LivenessPolicy(s.liveness.mode, s.liveness.frames, self.pipeline.liveness,
                                       self.pipeline.fingerprints.get("liveness"))
        self.scorer = FrameScorer(self.pipeline, self.tracker, self.decider, self.claims,
                                  self.window, lambda: self.gallery_ref,
                                  max_faces=s.vision.max_faces, min_frames=s.tracker.min_frames,
                                  identify=s.identify.enabled, groups=s.identify.groups,
                                  liveness=self.liveness, evidence=s.tracker.evidence)
        self.camera = from_settings(s.camera)
        self.commands = CommandGate.from_settings(s, self.claims, self.syncer if self.cloud is not None else None,
                                                  unlock=self._remote_unlock)
        if s.mqtt.enabled:
            self.events = MqttPublisher(s.mqtt, s.device.id, Outbox(data / "outbox.db", s.mqtt.outbox_max,
                                                                     s.mqtt.outbox_max_bytes),
                                        on_command=self.commands.handle, stale_accept_s=s.policy.stale_accept_s,
                                        door=s.door.name, retained_record=data / RETAINED_RECORD)
        else:
            self.events = NullPublisher()
        self.events.start()
        # Locked before anything else can happen: DoorController.start never unlocks.
        # A grant's credentials (synced with the person) go to the panel: OSDP card read, Wiegand.
        self.door = DoorLink.from_settings(s, self.events, lambda: self.gallery_ref,
                                           credentials_of=self.cache.credentials_of,
                                           **self._access_rules_and_log())
        self.door.start()
        remember_relay(data, relay_of(s.door))  # for `door release` after any exit (the unit's ExecStopPost)
        self._spawn("door-clock", self.door.keep_time, self.stop_event)
        self._spawn("door-schedule", self.door.keep_schedule, self.stop_event)
        self._spawn("door-publish", self.door.keep_publishing, self.stop_event)
        metrics.follow(self.camera, self.events, self.cloud, self.syncer)
        if self.cloud is not None:
            if self.cache.cursor == 0:
                self._first_sync_by = time.monotonic() + FIRST_SYNC_WAIT_S
                log.info("nothing synced yet: the camera waits for the first sync (at most %.0f s)",
                         FIRST_SYNC_WAIT_S)
            self._spawn("sync", self.syncer.run, self.stop_event)
            self._start_log_upload()
        if s.api.enabled:
            self._start_api()
        self._watchdog_s = watchdog_interval_s()
        warn_if_too_short(s, self._watchdog_s)
        notify("READY=1\nSTATUS=running")
        log.info("edge daemon %s ready in %.2fs (camera %s, api %s, door %s: %s)", s.device.id,
                 time.time() - self.started, self.camera.name,
                 f"{s.api.host}:{self.api.port}" if self.api and self.api.port else "off",
                 s.door.name, s.door.backend)

    def _access_rules_and_log(self) -> dict[str, Any]:
        """The door's rules (the hub's, synced into the cache) and its access log, signed with
        the log's own key (edge.daemon.log_key; docs/access.md#in-the-daemon)."""
        from edge.daemon.access_log_cli import LOG_FILE
        from edge.daemon.api_key import own_credential
        from edge.daemon.log_key import own_log_key
        from edge.door.access_log import AccessLog

        s = self.s
        key = own_log_key(s.storage.path)
        assert key is not None  # made if need be
        former = own_credential(s.storage.path, s.hub.appid).secret_key.encode()
        self.access_log = AccessLog(Path(s.storage.path) / LOG_FILE, key, former_key=former,
                                    retention_days=s.door.log_retention_days or None,
                                    crops_max_bytes=s.door.log_crops_max_bytes or None,
                                    waits_for_hub=bool(s.hub.url))
        crop_seal = None
        if s.door.log_face_crops:
            from edge.door.log_crops import CropSeal

            crop_seal = CropSeal.from_edge_key(key)
        return {"synced_rules": self.cache.rules, "rules_status": self.cache.rules_status,
                "access_log": self.access_log, "crop_seal": crop_seal}

    def _start_log_upload(self) -> None:
        """The access log to the hub, in its own thread (every call bounded by the hub client's
        timeouts; woken by each new record and at shutdown)."""
        from edge.door.access_upload import Uploader

        assert self.cloud is not None and self.door is not None and self.access_log is not None
        self.uploader = Uploader(self.cloud, self.access_log, self.edge_id, interval_s=self.s.hub.sync_interval_s,
                                 with_crops=self.s.door.log_face_crops and self.s.door.upload_face_crops)
        self.door.uploader = self.uploader
        self._spawn("log-upload", self.uploader.run, self.stop_event)

    def _spawn(self, name: str, target: Callable[..., object], *args: object) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def _swap_gallery(self, gallery: Gallery) -> None:
        self.gallery_ref = gallery  # one reference assignment: atomic for readers
        metrics.gallery_swapped(gallery)
        log.info("gallery %s: %d faces of %d persons", gallery.version, len(gallery),
                 len(gallery.person_ids))

    def _start_api(self) -> None:
        from edge.daemon.local_api import LocalApi
        from edge.daemon.service import EdgeService

        service = EdgeService(self.pipeline, lambda: self.gallery_ref, self.decider,
                              identify_groups=self.s.identify.groups, health=self.state,
                              claims=self.claims, priority=self.priority, liveness=self.s.liveness.mode)
        self.api = LocalApi(self.s, service)
        self.api.start(self._spawn)

    # -- main loop -------------------------------------------------------------------------
    def loop(self) -> None:
        last_ping = last_state = 0.0
        while not self.stop_event.is_set():
            if self._awaiting_first_sync():
                frame = None
                self.stop_event.wait(0.05)
            else:
                frame = self.camera.read(self.stop_event, max_block_s=0.5)
            # when the frame came from the camera, not when the loop got to it: its age counts
            # towards [policy] stale_accept_s
            t_frame = self.camera.frame_at if frame is not None and self.camera.frame_at else time.perf_counter()
            if frame is not None:
                try:
                    with self.priority.camera():
                        self.scorer.process(frame, t_frame)
                except Exception:  # one bad frame must never stop the door
                    log.exception("frame processing failed; frame skipped")
            elif self.camera.state.status != "ok":
                self.tracker.miss_all()  # no picture at all: faces are gone, tracks age
            now = time.monotonic()
            try:
                self.window.settle_due((t.id for t in self.tracker.tracks), self.camera.state.status == "ended")
                claim = self.claims.expired()
                if claim is not None:  # publishes (outbox on disk): may fail like a frame
                    self._publish(unanswered(claim), claim=claim, reason=NO_FACE)
                for claim in self.claims.refused():
                    self._publish(locked_out(claim), claim=claim)
                if now - last_state >= STATE_EVERY_S:
                    last_state = now
                    self.events.publish_state(self.state())
            except Exception:  # the loop, not a timer, is what keeps the door working
                log.exception("settling, claim expiry or state publication failed")
            self._tick_door()
            if self._watchdog_s and now - last_ping >= self._watchdog_s:
                # A network loop stuck in a callback, or a camera read that never returns (its
                # device held: every reopen fails), cannot be undone from here (a thread cannot
                # be stopped): no more pings, and systemd restarts the daemon, releasing it.
                if (self.events.loop_health()["status"] != "stuck"
                        and self.camera.stuck_for_s() < CAMERA_STUCK_RESTART_S):
                    notify("WATCHDOG=1")
                last_ping = now

    def _awaiting_first_sync(self) -> bool:
        """True while a fresh edge holds its camera for its first sync (FIRST_SYNC_WAIT_S): until
        a sync has succeeded or failed once, or the deadline passed. The rest of the loop (door
        inputs, claims, state, watchdog) runs meanwhile."""
        if self._first_sync_by is None:
            return False
        state = self.syncer.state if self.syncer is not None else {}
        if state.get("syncs") or state.get("failures") or time.monotonic() >= self._first_sync_by:
            self._first_sync_by = None
            return False
        return True

    def _tick_door(self) -> None:
        """Every turn, with or without a frame: relock on time, held-open alarms, door events out."""
        if self.door is None:
            return
        try:
            self.door.tick()
        except Exception:  # the controller locks on its own errors; a bug here must not stop the loop
            log.exception("door tick failed")

    def _remote_unlock(self, door: str, who: str) -> bool:
        return self.door is not None and self.door.remote_unlock(who)

    def _decided(self, c: Candidate, out: Outcome) -> None:
        # counted first: a publication that fails still was a try; the access log says how for
        # the site's other doors, where this door takes part in their count
        counted = (self.claims.decided(c.claim, out, c.claimed_in_view, why_not=self._why_not_admitted(out))
                   if c.claim is not None else None)
        self._publish(out, claim=c.claim, face=c.face, frame=c.frame, t_frame=c.t_frame,
                      track_id=c.track.id, frames=c.frames, latency=c.latency, cache_version=c.gallery.version,
                      claim_counted=counted if self.s.verify.share_refusals else None)

    def _why_not_admitted(self, out: Outcome) -> str:
        """Why a door would not open on `out` ("" when it would; its age aside: judged at the door)."""
        from edge.daemon.door_link import face_check

        return face_check(self.s, out, None)[1]

    def _face_crop(self, fields: dict[str, Any]) -> bytes | None:
        """The decision's face as JPEG for the access log, only where the site enables it."""
        face, frame = fields.get("face"), fields.get("frame")
        if self.door is None or self.door.crop_seal is None or face is None or frame is None:
            return None
        from edge.vision import crop_jpeg

        return crop_jpeg(frame, face.box) or None

    def _publish(self, out: Outcome, *, cache_version: str | None = None, claim_counted: str | None = None,
                 **fields: Any) -> None:
        from edge.daemon.decision_event import decision_event
        from edge.daemon.door_link import face_check

        s = self.s
        t_frame = fields.get("t_frame")

        def decided_s() -> float | None:  # the frame's age now
            return None if t_frame is None else time.perf_counter() - t_frame

        event = decision_event(
            out, device=s.device.id, camera=self.camera.name,
            fingerprints={"pack": self.pipeline.fingerprint, **self.pipeline.fingerprints},
            cache_version=cache_version or self.gallery_ref.version,
            include_face_image=s.mqtt.include_face_image, candidates=s.mqtt.event_candidates,
            admits=face_check(s, out, decided_s()), **fields)
        self.events.publish_event(event)
        if self.door is not None:
            try:  # the decision is out; the door follows it (a bug here never opens it: rules grant)
                # its age after the outbox's write: a stalled card's wait counts towards stale_accept_s
                self.door.decided(out, event, decided_s(),
                                  claim=fields.get("claim"), face_crop=self._face_crop(fields),
                                  claim_counted=claim_counted)
            except Exception:
                log.exception("the door could not act on decision %s", event["event_id"])
        self.decisions += 1
        metrics.count_decision(out)
        log.info("decision %s %s %s (%s, score %s)", out.mode, out.decision,
                 out.person_id or "-", out.source, out.score)

    # -- state / health --------------------------------------------------------------------
    def _sync_report(self) -> dict[str, str]:
        """What this edge tells the hub with each sync (docs/console.md, doors at a glance): the
        id its access log uploads under, its pack, liveness mode, door state and health."""
        from edge.core.syncwire import report_fields

        state = self.state()
        door = state.get("door") or {}
        words = []  # e.g. "locked, mode normal" or "held, mode normal, relay: stuck"
        if door:
            words = [str(door.get("state")), f"mode {door.get('mode')}", *(str(f) for f in door.get("faults") or [])]
        return {"edge_id": self.edge_id, **report_fields(self.pipeline.fingerprint, self.s.liveness.mode,
                                                    ", ".join(words), state["status"])}

    def snapshot(self) -> DaemonSnapshot:
        """What health is made of, read from the parts now; reading them changes nothing."""
        s, events = self.s, self.events
        return DaemonSnapshot(
            device=s.device.id, uptime_s=time.time() - self.started,
            camera=self.camera.state.as_dict(),
            sync=dict(self.syncer.state) if self.syncer else {},
            threads={t.name: t.is_alive() for t in self.threads}, stopping=self.stop_event.is_set(),
            outbox_sender=events.sender_alive() if s.mqtt.enabled else None,
            mqtt_loop=events.loop_health() if s.mqtt.enabled else None,
            mqtt_connected=events.connected, outbox_depth=events.outbox_depth(),
            outbox_rejected=events.outbox_rejected(), outbox=events.outbox_health(),
            gallery=self.gallery_ref, identify_groups=s.identify.groups,
            breaker=metrics.breaker_state(self.cloud), decisions=self.decisions, pending=len(self.window),
            precision=s.vision.precision, fingerprint=self.pipeline.fingerprint,
            thresholds=self.thresholds, identify_rate_per=s.identify.rate_per,
            identify_first_share=self.decider.look_share(0), verify_rate_per=s.verify.rate_per,
            liveness=self.liveness.health(),
            door=self.door.health() if self.door is not None else None,
            claims=self.claims.lockout.health() if self.claims.lockout is not None else None,
            storage=storage_health(s.storage.path), commands_refused=self.commands.refused.copy())

    def state(self) -> dict[str, Any]:
        return daemon_state(self.snapshot())

    # -- stop ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        notify("STOPPING=1")
        self.stop_event.set()
        if self.door is not None:  # locked first (released relay: docs/door.md on fail-safe)
            self.door.close()
        if self.syncer is not None:
            self.syncer.trigger()
        if self.uploader is not None:
            self.uploader.trigger()  # wakes its thread, which sees the stop and ends
        self.camera.close()
        try:
            # the faces still in view get their decision
            self.window.settle_due((t.id for t in self.tracker.tracks), camera_ended=True)
        except Exception:
            log.exception("settling the last tracks failed")
        try:
            self.events.publish_state({**self.state(), "status": "stopped"})
        except Exception:  # state is best effort on the way out
            pass
        self.events.stop()
        if self.api is not None:
            self.api.stop()
        for t in self.threads:
            t.join(timeout=5)
        if self.cloud is not None:
            self.cloud.close()
        if self.access_log is not None and not any(t.is_alive() for t in self.threads if t.name == "log-upload"):
            self.access_log.close()
        if self.claims.lockout is not None:
            self.claims.lockout.close()
        log.info("edge daemon stopped after %d decisions", self.decisions)

