"""`edge-verifier run --config FILE`: the edge daemon, wiring only.

camera -> vision (detect, quality gate, embed) -> tracker -> decide (matcher, cloud, offline
policy) -> events (outbox -> MQTT). Beside the main loop: the sync thread, paho's network
thread and the local API (uvicorn in a thread). The main loop pings the systemd watchdog, so a
hung loop gets the service restarted; SIGTERM stops everything and says `offline`.
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
        from edge.daemon.claims import Claims

        self.s = settings
        self.stop_event = threading.Event()
        self.started = time.time()
        self.gallery_ref = None  # swapped atomically by the syncer; readers just read it
        self.cloud = None
        self.syncer = None
        self.api_server = None
        self.api_port: int | None = None
        self.decisions = 0
        self.claims = Claims(settings.verify.claim_timeout_s)
        self._threads: list[threading.Thread] = []

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        from edge.cache import EdgeCache
        from edge.camera import from_settings
        from edge.daemon import metrics
        from edge.daemon.decide import Decider
        from edge.daemon.scoring import FrameScorer
        from edge.daemon.settle import SettleWindow
        from edge.daemon.watchdog import warn_if_too_short
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
        self.window = SettleWindow(self.decider, s.tracker.settle_s, self._decided)
        self.scorer = FrameScorer(self.pipeline, self.tracker, self.decider, self.claims,
                                  self.window, lambda: self.gallery_ref,
                                  max_faces=s.vision.max_faces, min_frames=s.tracker.min_frames,
                                  identify=s.identify.enabled, groups=s.identify.groups)
        self.camera = from_settings(s.camera)
        if s.mqtt.enabled:
            self.events = MqttPublisher(s.mqtt, s.device.id, Outbox(data / "outbox.db"),
                                        on_command=self._on_command)
        else:
            self.events = NullPublisher()
        self.events.start()
        metrics.follow(self.camera, self.events, self.cloud, self.syncer)
        if self.cloud is not None:
            self._spawn("sync", self.syncer.run, self.stop_event)
        if s.api.enabled:
            self._start_api()
        from edge.daemon.sdnotify import notify, watchdog_interval_s

        self._watchdog_s = watchdog_interval_s()
        warn_if_too_short(s, self._watchdog_s)
        notify("READY=1\nSTATUS=running")
        log.info("edge daemon %s ready in %.2fs (camera %s, api %s)", s.device.id,
                 time.time() - self.started, s.camera.source,
                 f"{s.api.host}:{self.api_port}" if self.api_port else "off")

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
            self.claims.open(payload)

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
            self.claims.open(payload)
            data, code, message = {"person_id": payload["person_id"]}, 0, "OK"
        except ApiError as exc:
            data, code, message = {}, exc.code, exc.message
        except ClientDisconnect:  # the caller went away mid-body: nobody to answer
            return JSONResponse({}, status_code=400)
        return JSONResponse({"data": data, "code": code, "message": message})

    # -- main loop -------------------------------------------------------------------------
    def loop(self) -> None:
        from edge.daemon.claims import NO_FACE, unanswered
        from edge.daemon.sdnotify import notify

        last_ping = last_state = 0.0
        while not self.stop_event.is_set():
            frame = self.camera.read(self.stop_event, max_block_s=0.5)
            t_frame = time.perf_counter()
            if frame is not None:
                try:
                    self.scorer.process(frame, t_frame)
                except Exception:  # one bad frame must never stop the door
                    log.exception("frame processing failed; frame skipped")
            elif self.camera.state.status != "ok":
                self.tracker.miss_all()  # no picture at all: faces are gone, tracks age
            now = time.monotonic()
            try:
                self._settle_due(camera_ended=self.camera.state.status == "ended")
                claim = self.claims.expired()
                if claim is not None:  # publishes (outbox on disk): may fail like a frame
                    self._publish(unanswered(claim), claim=claim, reason=NO_FACE)
                if now - last_state >= STATE_EVERY_S:
                    last_state = now
                    self.events.publish_state(self.state())
            except Exception:  # the loop, not a timer, is what keeps the door working
                log.exception("settling, claim expiry or state publication failed")
            if self._watchdog_s and now - last_ping >= self._watchdog_s:
                notify("WATCHDOG=1")
                last_ping = now

    def _settle_due(self, camera_ended: bool) -> None:
        self.window.settle_due((t.id for t in self.tracker.tracks), camera_ended)

    def _decided(self, c, out) -> None:
        self._publish(out, claim=c.claim, face=c.face, frame=c.frame, t_frame=c.t_frame,
                      track_id=c.track.id, frames=c.frames, latency=c.latency,
                      cache_version=c.gallery.version)

    def _publish(self, out, *, cache_version: str | None = None, **fields) -> None:
        from edge.daemon import metrics
        from edge.decision_event import decision_event

        s = self.s
        event = decision_event(
            out, device=s.device.id, camera=s.camera.name or s.camera.source,
            fingerprints={"pack": self.pipeline.fingerprint, **self.pipeline.fingerprints},
            cache_version=cache_version or self.gallery_ref.version,
            include_face_image=s.mqtt.include_face_image, **fields)
        self.events.publish_event(event)
        self.decisions += 1
        metrics.DECISIONS.labels(out.mode, out.decision, out.source).inc()
        log.info("decision %s %s %s (%s, score %s)", out.mode, out.decision,
                 out.person_id or "-", out.source, out.score)

    # -- state / health --------------------------------------------------------------------
    def state(self) -> dict:
        from edge.daemon.metrics import breaker_state

        gallery = self.gallery_ref
        sync = dict(self.syncer.state) if self.syncer else {}
        cam = self.camera.state.as_dict()
        # A helper thread that ended on its own (sync, local API, outbox sender) leaves the loop
        # running but the door half blind or mute: say so, a supervisor cannot see it otherwise.
        threads = {t.name: t.is_alive() or self.stop_event.is_set() for t in self._threads}
        if self.s.mqtt.enabled:
            threads["mqtt-outbox"] = self.events.sender_alive()
        ok = (cam["status"] in ("ok", "ended") and sync.get("status") != "fingerprint_mismatch"
              and all(threads.values()))
        return {"status": "ok" if ok else "degraded", "device": self.s.device.id,
                "uptime_s": round(time.time() - self.started, 1), "camera": cam,
                "mqtt": {"connected": self.events.connected,
                         "outbox_depth": self.events.outbox_depth(),
                         "outbox_rejected": self.events.outbox_rejected()},
                "threads": threads,
                "cache": {"version": gallery.version, "faces": len(gallery),
                          "persons": len(gallery.person_ids)},
                "sync": sync, "cloud": {"breaker": breaker_state(self.cloud)},
                "decisions": self.decisions, "pending": len(self.window),
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


class _DefaultRegistryProxy:
    """A collector yielding the default registry's metrics (no describe: no name clashes)."""

    def collect(self):
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()
