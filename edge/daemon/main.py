"""`edge-verifier run --config FILE`: the edge daemon, wiring only.

camera -> vision (detect, quality gate, embed) -> tracker -> decide (matcher, cloud, offline
policy) -> events (outbox -> MQTT). Beside the main loop: the sync thread, paho's network
thread and the local API (uvicorn in a thread). The main loop pings the systemd watchdog, so a
hung loop gets the service restarted; SIGTERM stops everything and says `offline`.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("edge.daemon")

STATE_EVERY_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=False, help="TOML config (edge-verifier config example edge)")
    parser.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge.daemon.config import load
    from edge.settings import ConfigError

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
    except FileNotFoundError as exc:  # models not built
        log.error("%s", exc)
        return 1
    try:
        daemon.loop()
    finally:
        daemon.shutdown()
    return 0


class Daemon:
    """Owns the parts and the main loop; no algorithm of its own."""

    def __init__(self, settings):
        self.s = settings
        self.stop_event = threading.Event()
        self.started = time.time()
        self.gallery_ref = None  # swapped atomically by the syncer; readers just read it
        self.cloud = None
        self.syncer = None
        self.api_server = None
        self.api_port: int | None = None
        self.decisions = 0
        self._claim: dict | None = None
        self._claim_lock = threading.Lock()
        self._pending: dict[int, _Candidate] = {}  # track id -> its best frame, not yet decided
        self._threads: list[threading.Thread] = []

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        from edge.cache import EdgeCache
        from edge.camera import from_settings
        from edge.daemon.decide import Decider
        from edge.events import MqttPublisher, NullPublisher, Outbox
        from edge.matcher import Gallery
        from edge.sync import Syncer
        from edge.tracker import Tracker
        from edge.vision import Pipeline

        s = self.s
        data = Path(s.storage.path)
        data.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        self.pipeline = Pipeline.load(s.vision.models_dir, precision=s.vision.precision,
                                      threads=s.vision.threads)
        log.info("models loaded in %.2fs (fingerprint %s)", time.perf_counter() - t0,
                 self.pipeline.fingerprint)
        self.thresholds = s.thresholds()
        self.gallery_ref = Gallery((), self.thresholds, version="empty")
        if s.hub.url:
            from edge.cloud import CloudClient

            self.cloud = CloudClient(s.hub.url, s.hub.appid, s.hub.secret_id, s.hub.secret_key,
                                     timeout=s.hub.timeout, retries=s.hub.retries,
                                     breaker_failures=s.hub.breaker_failures,
                                     breaker_reset_s=s.hub.breaker_reset_s)
        self.cache = EdgeCache(data / "cache.db")
        self.syncer = Syncer(self.cloud, self.cache, self.pipeline.fingerprint,
                             group_ids=s.identify.groups, page_size=s.hub.sync_page,
                             interval_s=s.hub.sync_interval_s, thresholds=self.thresholds,
                             on_gallery=self._swap_gallery)
        self.syncer.load()  # offline-capable: the last synced state, before the hub answers
        self.decider = Decider(self.cloud, offline=s.policy.offline,
                               cloud_fallback=s.policy.cloud_fallback)
        self.tracker = Tracker(s.tracker.iou, s.tracker.max_missed)
        self.camera = from_settings(s.camera)
        if s.mqtt.enabled:
            self.events = MqttPublisher(s.mqtt, s.device.id, Outbox(data / "outbox.db"),
                                        on_command=self._on_command)
        else:
            self.events = NullPublisher()
        self.events.start()
        if self.cloud is not None:
            self._spawn("sync", self.syncer.run, self.stop_event)
        if s.api.enabled:
            self._start_api()
        from edge.daemon.sdnotify import notify, watchdog_interval_s

        self._watchdog_s = watchdog_interval_s()
        worst = self.worst_iteration_s()
        if self._watchdog_s and worst >= 2 * self._watchdog_s:
            # A hub that answers slowly (not failing: the breaker stays closed) on every face of
            # one frame would then get a healthy daemon killed by the watchdog.
            log.warning("worst-case loop iteration %.0fs (%d faces x %gs hub timeout x %d tries) "
                        "reaches WatchdogSec %.0fs: lower [hub] timeout/retries or "
                        "[vision] max_faces, or raise WatchdogSec", worst, s.vision.max_faces,
                        s.hub.timeout, s.hub.retries + 1, 2 * self._watchdog_s)
        notify("READY=1\nSTATUS=running")
        log.info("edge daemon %s ready in %.2fs (camera %s, api %s)", s.device.id,
                 time.time() - self.started, s.camera.source,
                 f"{s.api.host}:{self.api_port}" if self.api_port else "off")

    def worst_iteration_s(self) -> float:
        """Upper bound of one main-loop turn: the camera's wait plus, when the hub is asked,
        every face of the frame going to it with all its retries (backoff 0.2 s, doubling)."""
        s = self.s
        cloud = 0.0
        if s.hub.url and s.policy.cloud_fallback:
            backoff = sum(0.2 * 2 ** i for i in range(s.hub.retries))
            cloud = s.vision.max_faces * (s.hub.timeout * (s.hub.retries + 1) + backoff)
        return 0.5 + cloud

    def _spawn(self, name, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _swap_gallery(self, gallery) -> None:
        from edge.daemon import metrics

        self.gallery_ref = gallery  # one reference assignment: atomic for readers
        metrics.CACHE_FACES.set(len(gallery))
        metrics.CACHE_PERSONS.set(len(gallery.person_ids))
        log.info("gallery %s: %d faces of %d persons", gallery.version, len(gallery),
                 len(gallery.person_ids))

    def _start_api(self) -> None:
        import uvicorn

        from edge.api.app import create_app
        from edge.daemon.service import EdgeService

        s = self.s
        creds = [c.model_dump() for c in s.api.credentials] or (
            [{"appid": s.hub.appid, "secret_id": s.hub.secret_id, "secret_key": s.hub.secret_key}]
            if s.hub.appid else [])
        service = EdgeService(self.pipeline, lambda: self.gallery_ref, self.decider,
                              identify_groups=s.identify.groups, health=self.state)
        from edge.signature import Credential

        app = create_app(service, [Credential(**c) for c in creds])
        # The API layer serves its own registry; expose the daemon's metrics (default
        # registry: ours plus process RSS/CPU) through it too.
        app.state.registry.register(_DefaultRegistryProxy())
        from starlette.routing import Route

        app.router.routes.append(Route("/edge/claim", self._claim_endpoint, methods=["POST"]))
        config = uvicorn.Config(app, host=s.api.host, port=s.api.port, log_level="warning",
                                access_log=False)
        self.api_server = uvicorn.Server(config)
        self._spawn("api", self.api_server.run)
        deadline = time.monotonic() + 10
        while (not self.api_server.started and time.monotonic() < deadline
               and self._threads[-1].is_alive()):  # a port in use ends the thread at once
            time.sleep(0.02)
        if self.api_server.started:
            self.api_port = self.api_server.servers[0].sockets[0].getsockname()[1]
        else:
            log.error("local API did not start on %s:%s", s.api.host, s.api.port)

    # -- commands (paho thread) ------------------------------------------------------------
    def _on_command(self, name: str, payload: dict) -> None:
        if name == "sync" and self.syncer is not None:
            self.syncer.trigger()
        elif name == "verify":
            pid = payload.get("person_id")
            if not isinstance(pid, str) or not pid:
                log.warning("cmd/verify without a person_id: ignored")
                return
            timeout = payload.get("timeout_s", self.s.verify.claim_timeout_s)
            try:
                timeout = min(max(float(timeout), 0.5), 300.0)
            except (TypeError, ValueError):
                timeout = self.s.verify.claim_timeout_s
            with self._claim_lock:
                self._claim = {"person_id": pid, "expires": time.monotonic() + timeout,
                               "request_id": str(payload.get("request_id", ""))[:128]}
            log.info("verify claim for %s (%.1fs)", pid, timeout)

    async def _claim_endpoint(self, request):
        """POST /edge/claim {"appid", "person_id", "timeout_s"?, "request_id"?}, signed like
        the face API: a badge reader or PIN pad claims an identity for the next face seen."""
        from starlette.responses import JSONResponse

        from starlette.requests import ClientDisconnect

        from edge import errors
        from edge.api.body import read_capped
        from edge.errors import ApiError

        try:
            sig = request.app.state.verifier.check(request.headers.get("authorization"))
            # Capped as it arrives, with a deadline (request.body() read everything first, so a
            # huge or trickled body held memory or the connection without end).
            body = await read_capped(request.stream(), 4096, request.headers.get("content-length"),
                                     10.0)
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                raise ApiError(errors.BAD_REQUEST, "body is not JSON") from None
            if not isinstance(payload, dict):
                raise ApiError(errors.BAD_REQUEST, "body is not a JSON object")
            if not payload.get("appid"):
                raise ApiError(errors.PARAMETER_EMPTY, "appid is required")
            sig.check_appid(str(payload["appid"]))
            if not isinstance(payload.get("person_id"), str) or not payload["person_id"]:
                raise ApiError(errors.PARAMETER_EMPTY, "person_id is required")
            self._on_command("verify", payload)
            data, code, message = {"person_id": payload["person_id"]}, 0, "OK"
        except ApiError as exc:
            data, code, message = {}, exc.code, exc.message
        except ClientDisconnect:  # the caller went away mid-body: nobody to answer
            return JSONResponse({}, status_code=400)
        return JSONResponse({"data": data, "code": code, "message": message})

    def _take_claim(self) -> dict | None:
        with self._claim_lock:
            claim, self._claim = self._claim, None
            return claim

    # -- main loop -------------------------------------------------------------------------
    def loop(self) -> None:
        from edge.daemon import metrics
        from edge.daemon.sdnotify import notify

        last_ping = last_state = 0.0
        while not self.stop_event.is_set():
            frame = self.camera.read(self.stop_event, max_block_s=0.5)
            t_frame = time.perf_counter()
            if frame is not None:
                try:
                    self.process(frame, t_frame)
                except Exception:  # one bad frame must never stop the door
                    log.exception("frame processing failed; frame skipped")
            elif self.camera.state.status != "ok":
                self.tracker.miss_all()  # no picture at all: faces are gone, tracks age
            now = time.monotonic()
            try:
                self._settle_due(camera_ended=self.camera.state.status == "ended")
                self._expire_claim()  # publishes (outbox on disk): may fail like a frame
                if now - last_state >= STATE_EVERY_S:
                    last_state = now
                    self.events.publish_state(self.state())
            except Exception:  # the loop, not a timer, is what keeps the door working
                log.exception("settling, claim expiry or state publication failed")
            if self._watchdog_s and now - last_ping >= self._watchdog_s:
                notify("WATCHDOG=1")
                last_ping = now
            cam = self.camera.state
            metrics.CAMERA_UP.set(1 if cam.status == "ok" else 0)
            metrics.BAD_FRAMES.set(cam.bad_frames)

    def _expire_claim(self) -> None:
        with self._claim_lock:
            claim = self._claim
            if claim is None or time.monotonic() < claim["expires"]:
                return
            self._claim = None
        from edge.daemon.decide import Outcome

        out = Outcome("verify", "unknown", "local", claim["person_id"])
        self._publish(out, None, None, {"reason": "no_face_before_timeout"}, claim)

    def process(self, frame, t_frame: float) -> None:
        from edge.daemon import metrics

        s = self.s
        t0 = time.perf_counter()
        faces = self.pipeline.detect(frame)[: s.vision.max_faces]
        t_detect = time.perf_counter()
        metrics.FRAMES.inc()
        metrics.STAGE.labels("detect").observe(t_detect - t0)
        for f in faces:
            metrics.FACES.labels("ok" if f.quality.ok else (f.quality.reason or "bad")).inc()
            if f.quality.ok:
                self.pipeline.embed(frame, f)
        t_embed = time.perf_counter()
        if faces:
            metrics.STAGE.labels("embed").observe(t_embed - t_detect)
        tracks = self.tracker.update([f.box for f in faces],
                                     [f.embedding if f.quality.ok else None for f in faces])
        gallery = self.gallery_ref
        for face, track in zip(faces, tracks):
            if not face.quality.ok:
                continue  # quality gate: wait for a better frame of this track
            track.good_frames += 1
            if track.good_frames < s.tracker.min_frames:
                continue
            # Only a track ready to be scored takes a claim: a claim taken is always decided.
            claim = self._claim_for(track)
            if track.decided or (claim is None and not s.identify.enabled):
                continue
            t_match = time.perf_counter()
            if claim is not None:
                out = self.decider.verify(gallery, face.embedding, claim["person_id"])
            else:
                out = self.decider.identify(gallery, face.embedding, s.identify.groups)
            latency = {"detect_ms": (t_detect - t0) * 1000, "embed_ms": (t_embed - t_detect) * 1000,
                       "match_ms": (time.perf_counter() - t_match) * 1000}
            metrics.STAGE.labels("match").observe(latency["match_ms"] / 1000)
            self._consider(_Candidate(track, out, face, frame, t_frame, latency, claim, gallery))

    def _claim_for(self, track) -> dict | None:
        """The claim this track is verified against: a waiting claim goes to the first track
        with a good face, and starts a new decision for it (even when it was identified
        already); a track keeps its own claim until that one is decided."""
        held = track.data.get("claim")
        if held is not None and not track.decided:
            return held
        if self._claim is None:  # unlocked peek: the common case costs no lock
            return held
        claim = self._take_claim()
        if claim is not None:
            self._settle(track.id)  # an identify still settling ends before the claim starts
            track.data["claim"] = claim
            track.decided = False
            return claim
        return held

    def _consider(self, cand: "_Candidate") -> None:
        """Keep the track's best frame so far and decide at once on a local accept; anything
        else waits for _settle_due, which the loop runs right after each frame."""
        track_id = cand.track.id
        best = self._pending.get(track_id)
        if best is not None:
            cand.since, cand.frames = best.since, best.frames + 1
            if cand.rank() <= best.rank():
                best.frames = cand.frames
                cand = best
        self._pending[track_id] = cand
        if cand.out.decision == "accept":
            self._settle(track_id)

    def _settle_due(self, camera_ended: bool) -> None:
        """Decide the tracks whose settle window is over, whose face has left (the tracker
        dropped them) or whose camera has no more frames to give."""
        if not self._pending:
            return
        alive = {t.id for t in self.tracker.tracks}
        now = time.monotonic()
        for track_id, cand in list(self._pending.items()):
            if camera_ended or track_id not in alive or now - cand.since >= self.s.tracker.settle_s:
                self._settle(track_id)

    def _settle(self, track_id: int) -> None:
        """Finish a track's best local outcome (the hub is asked only now, about this frame)
        and publish it. It stays pending until its event is in the outbox, so /health never
        shows a moment with the decision in neither place."""
        c = self._pending.get(track_id)
        if c is None:
            return
        out = self.decider.settle(c.out, lambda: _crop_jpeg(c.frame, c.face.box))
        c.latency["cloud_ms"] = out.cloud_ms
        c.track.decided = True
        self._publish(out, c.face, c.track, c.latency, c.claim, frame=c.frame, t_frame=c.t_frame,
                      gallery=c.gallery, frames=c.frames)
        del self._pending[track_id]

    def _publish(self, out, face, track, latency: dict, claim: dict | None, *, frame=None,
                 t_frame: float | None = None, gallery=None, frames: int | None = None) -> None:
        from edge.daemon import metrics
        from edge.events import new_event

        gallery = gallery or self.gallery_ref
        event = new_event(
            device=self.s.device.id, camera=self.s.camera.name or self.s.camera.source,
            mode=out.mode, decision=out.decision, person_id=out.person_id or None,
            person_name=out.person_name or None, score=out.score, confidence=out.confidence,
            source=out.source, cloud=out.cloud, track_id=track.id if track else None,
            frames=frames,  # good frames of the track this decision chose from
            claim={"person_id": claim["person_id"], "request_id": claim.get("request_id", "")} if claim else None,
            candidates=out.candidates[:3] or None,
            face=None if face is None else {
                "box": [int(v) for v in face.box], "score": round(float(face.score), 4),
                "quality": face.quality.as_dict()},
            latency_ms={k: round(v, 1) for k, v in latency.items() if isinstance(v, float)},
            fingerprints={"pack": self.pipeline.fingerprint, **self.pipeline.fingerprints},
            cache_version=gallery.version,
        )
        if face is None and "reason" in latency:
            event["reason"] = latency["reason"]
            event["latency_ms"] = {}
        if self.s.mqtt.include_face_image and face is not None and frame is not None:
            event["face_image"] = base64.b64encode(_crop_jpeg(frame, face.box)).decode()
        if t_frame is not None:
            event["latency_ms"]["frame_to_event_ms"] = round((time.perf_counter() - t_frame) * 1000, 1)
        self.events.publish_event(event)
        self.decisions += 1
        metrics.DECISIONS.labels(out.mode, out.decision, out.source).inc()
        metrics.OUTBOX.set(self.events.outbox_depth())
        log.info("decision %s %s %s (%s, score %s)", out.mode, out.decision,
                 out.person_id or "-", out.source, out.score)

    # -- state / health --------------------------------------------------------------------
    def state(self) -> dict:
        from edge.daemon import metrics

        gallery = self.gallery_ref
        breaker = self.cloud.breaker_state if self.cloud is not None else "disabled"
        for st in ("closed", "open", "half_open", "disabled"):
            metrics.CLOUD.labels(st).set(1 if st == breaker else 0)
        depth = self.events.outbox_depth()
        metrics.OUTBOX.set(depth)
        metrics.MQTT_UP.set(1 if self.events.connected else 0)
        sync = dict(self.syncer.state) if self.syncer else {}
        if sync.get("last_ok"):
            metrics.SYNC_OK.set(sync["last_ok"])
        cam = self.camera.state.as_dict()
        # A helper thread that ended on its own (sync, local API, outbox sender) leaves the loop
        # running but the door half blind or mute: say so, a supervisor cannot see it otherwise.
        threads = {t.name: t.is_alive() or self.stop_event.is_set() for t in self._threads}
        if self.s.mqtt.enabled:
            threads["mqtt-outbox"] = self.events.sender_alive()
        rejected = self.events.outbox_rejected()
        ok = (cam["status"] in ("ok", "ended") and sync.get("status") != "fingerprint_mismatch"
              and all(threads.values()))
        return {"status": "ok" if ok else "degraded", "device": self.s.device.id,
                "uptime_s": round(time.time() - self.started, 1), "camera": cam,
                "mqtt": {"connected": self.events.connected, "outbox_depth": depth,
                         "outbox_rejected": rejected},
                "threads": threads,
                "cache": {"version": gallery.version, "faces": len(gallery),
                          "persons": len(gallery.person_ids)},
                "sync": sync, "cloud": {"breaker": breaker}, "decisions": self.decisions,
                "pending": len(self._pending),
                "pack": self.s.vision.precision, "fingerprint": self.pipeline.fingerprint,
                "thresholds": {"accept": self.thresholds.accept, "reject": self.thresholds.reject}}

    # -- stop ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        from edge.daemon.sdnotify import notify

        notify("STOPPING=1")
        self.stop_event.set()
        if self.syncer is not None:
            self.syncer.trigger()
        self.camera.close()
        try:
            self._settle_due(camera_ended=True)  # the faces still in view get their decision
        except Exception:
            log.exception("settling the last tracks failed")
        try:
            self.events.publish_state({**self.state(), "status": "stopped"})
        except Exception:  # state is best effort on the way out
            pass
        self.events.stop()
        if self.api_server is not None:
            self.api_server.should_exit = True
        for t in self._threads:
            t.join(timeout=5)
        if self.cloud is not None:
            self.cloud.close()
        log.info("edge daemon stopped after %d decisions", self.decisions)


def _crop_jpeg(frame, box, margin: float = 0.6, max_side: int = 640) -> bytes:
    """The face with context around it, as JPEG (what the hub's detector needs to re-find it)."""
    import cv2

    h, w = frame.shape[:2]
    x, y, bw, bh = box
    mx, my = int(bw * margin), int(bh * margin)
    crop = frame[max(0, y - my): min(h, y + bh + my), max(0, x - mx): min(w, x + bw + mx)]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else b""


@dataclass
class _Candidate:
    """A track's best frame so far, with what its decision and its event need."""
    track: Any  # edge.tracker.Track
    out: Any  # edge.daemon.decide.Outcome, local only
    face: Any
    frame: Any
    t_frame: float
    latency: dict
    claim: dict | None
    gallery: Any
    since: float = field(default_factory=time.monotonic)  # the track's first scored frame
    frames: int = 1

    def rank(self) -> tuple:
        """An accept wins (in identify a higher score can still be uncertain, when two people
        are too close), then the higher score."""
        score = self.out.score
        return self.out.decision == "accept", -2.0 if score is None else score


class _DefaultRegistryProxy:
    """A collector yielding the default registry's metrics (no describe: no name clashes)."""

    def collect(self):
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()
