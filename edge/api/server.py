"""`edge-verifier hub --config FILE`: serve the face API (hub role) with uvicorn.

Logs go to stderr; SIGTERM/SIGINT stop accepting, finish in-flight requests, close the store.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="hub TOML (see `edge-verifier config example hub`)")
    parser.add_argument("--host", help="override [server] host")
    parser.add_argument("--port", type=int, help="override [server] port")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def build_app(settings):
    """The Starlette app and its store for `settings` (a HubSettings)."""
    from edge.api.app import create_app
    from edge.api.hub_service import HubService, VisionPacks
    from edge.signature import ReplayCache, Verifier
    from edge.store import open_store
    from edge.urlfetch import FetchPolicy

    credentials = settings.all_credentials()
    if not credentials:
        from edge.settings import ConfigError

        raise ConfigError("no [[credentials]] configured (in the config or its secrets_file)")
    limits = settings.limits  # both the store's count limits and the HTTP layer's
    store = open_store(settings.storage.url, settings.storage.path)
    vision = VisionPacks(settings.vision.models_dir, settings.vision.precision, settings.vision.also_embed,
                         settings.vision.threads)
    service = HubService(store, vision, limits, settings.thresholds(),
                         verify_log_s=settings.storage.verify_log_days * 86400)
    app = create_app(
        service, credentials, limits=limits, limiter=store.rate_limiter(limits.rate_per_s, limits.burst),
        fetch_policy=FetchPolicy(**settings.url_fetch.model_dump(), max_bytes=limits.body_bytes),
        # single-use signatures are remembered in the store: a restart does not reopen them
        verifier=Verifier(credentials, ReplayCache(store=store)),
    )
    return app, store


def run(args) -> int:
    import dataclasses

    import uvicorn

    from edge.api import config
    from edge.api.serving import uvicorn_config
    from edge.settings import ConfigError

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = config.load(args.config)
        app, store = build_app(settings)
    except ConfigError as exc:
        print(f"edge-verifier hub: {exc}", file=sys.stderr)
        return 2
    from edge.store import redact

    where = redact(settings.storage.url) if settings.storage.url else settings.storage.path
    listener = dataclasses.replace(settings.server.listener(), host=args.host or settings.server.host,
                                   port=args.port or settings.server.port)
    logging.getLogger("edge.hub").info("serving the face API on %s://%s:%d (store %s)", listener.scheme,
                                       listener.host, listener.port, where)
    # uvicorn catches SIGTERM/SIGINT for a graceful stop, then re-raises them to the handlers
    # that were installed before it: these make that a clean exit 0 after closing the store.
    stopped_by: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
    try:
        uvicorn.Server(uvicorn_config(app, listener, log_level=args.log_level, access_log=False,
                                      timeout_graceful_shutdown=10)).run()
    finally:
        store.close()
    logging.getLogger("edge.hub").info("stopped%s", f" by signal {stopped_by[0]}" if stopped_by else "")
    return 0
