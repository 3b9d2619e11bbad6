"""`edge-verifier hub --config FILE [--workers N]`: serve the face API (hub role) with uvicorn.

Logs go to stderr; SIGTERM/SIGINT stop accepting, finish in-flight requests, close the store.
`--workers N` runs N hub processes on one port (each binds it with SO_REUSEPORT, so the kernel
spreads connections over them; this process replaces one that dies); they share nothing but the
database, so that needs `[storage] url = "postgresql://..."`. Several machines run one such
command each.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.core.logs import configure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge.hub import reembed
    from edge.hub.store import migrate

    parser.add_argument("--config", help="hub TOML (see `edge-verifier config example hub`); required to serve")
    parser.add_argument("--host", help="override [server] host")
    parser.add_argument("--port", type=int, help="override [server] port")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--workers", type=int, default=1,
                        help="hub processes on this port (more than 1 needs a PostgreSQL [storage] url)")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # one of --workers
    actions = parser.add_subparsers(dest="hub_action", metavar="[migrate|backup|keygen|edgekey|reembed|user]")
    migrate.add_arguments(actions.add_parser(
        "migrate", help="copy a SQLite hub store into PostgreSQL, with progress and a count check",
        description=migrate.__doc__.splitlines()[0]))
    from edge.hub import backup

    backup.add_arguments(actions.add_parser(
        "backup", help="a consistent copy of the running hub's SQLite store (PostgreSQL: pg_dump)",
        description=backup.__doc__.splitlines()[0]))
    actions.add_parser(
        "keygen", help="add the face crop key to the hub's secrets_file",
        description="add [face_crops] key (AES-256-GCM, random) to the hub's secrets_file, once",
    ).add_argument("--config", required=True, help="hub TOML whose secrets_file receives the key")
    from edge.hub import edge_keys

    edge_keys.add_arguments(actions.add_parser(
        "edgekey", help="add a key bound to one edge (sync, its log, packs: never enrolment) to secrets_file",
        description=edge_keys.__doc__.splitlines()[0]))
    reembed.add_arguments(actions.add_parser(
        "reembed", help="embed every stored face again with another model pack (no new photos)",
        description=reembed.__doc__.splitlines()[0]))
    from edge.hub.ui import accounts_cli

    accounts_cli.add_arguments(actions.add_parser(
        "user", help="the web console's accounts: add, passwd, list, del",
        description=accounts_cli.__doc__.splitlines()[0]))


def build_app(settings):
    """The Starlette app and its store for `settings` (a HubSettings)."""
    from edge.api.app import create_app
    from edge.api.ratelimit import RateLimiter
    from edge.api.urlfetch import FetchPolicy
    from edge.core.signature import ReplayCache, Verifier
    from edge.hub.claim_refusals import door_groups
    from edge.hub.service import HubService, VisionPacks
    from edge.hub.store import open_store

    credentials = settings.all_credentials()
    if not credentials:
        from edge.core.settings import ConfigError

        raise ConfigError("no [[credentials]] configured (in the config or its secrets_file)")
    limits = settings.limits  # both the store's count limits and the HTTP layer's
    crops = face_crop_cipher(settings)
    store = open_store(settings.storage.url, settings.storage.path)
    if crops is not None:
        say_if_the_crop_key_was_replaced(store, crops)
    vision = VisionPacks(settings.vision.models_dir, settings.vision.precision, settings.vision.also_embed,
                         settings.vision.threads)
    service = HubService(store, vision, limits, settings.thresholds(),
                         verify_log_s=settings.storage.verify_log_days * 86400, crops=crops,
                         access_log_s=settings.storage.access_log_days * 86400,
                         liveness=settings.liveness.mode, edge_groups=door_groups(credentials))
    # one set of per-appid buckets for the API and the console's photo uploads
    limiter = store.rate_limiter(limits.rate_per_s, limits.burst) or RateLimiter(limits.rate_per_s, limits.burst)
    app = create_app(
        service, credentials, limits=limits, limiter=limiter,
        fetch_policy=FetchPolicy(**settings.url_fetch.model_dump(), max_bytes=limits.body_bytes),
        # single-use signatures are remembered in the store: a restart does not reopen them
        verifier=Verifier(credentials, ReplayCache(store=store)),
    )
    if settings.console.enabled:
        mount_console(app, service, credentials, settings, limiter)
    return app, store


def mount_console(app, service, credentials, settings, limiter=None) -> None:
    """The web console at /ui/ (edge.hub.ui), when it can be served safely (it logs why not)."""
    from edge.hub.ui import static
    from edge.hub.ui.app import create_console, mount

    console = settings.console
    listener = settings.server.listener()
    static_dir = Path(console.static_dir) if console.static_dir else static.default_dir(settings.vision.models_dir)
    ui = create_console(service, credentials, scheme=listener.scheme, host=listener.host, tls_proxy=console.tls_proxy,
                        idle_s=console.idle_minutes * 60, absolute_s=console.absolute_hours * 3600,
                        static_dir=static_dir, limiter=limiter)
    if ui is not None:
        mount(app, ui)


def face_crop_cipher(settings):
    """The cipher of the stored face crops; None with [storage] keep_face_crops = false.
    ConfigError (saying how to fix it) when crops are kept but secrets_file holds no key."""
    from edge.core.settings import ConfigError
    from edge.hub.face_crops import CropCipher

    if not settings.storage.keep_face_crops:
        return None
    key = settings.face_crop_key()
    if key is None:
        raise ConfigError(
            "[storage] keep_face_crops is on but there is no face crop key: run `edge-verifier hub keygen "
            "--config FILE` (adds [face_crops] key to secrets_file), or set [storage] keep_face_crops = false "
            "to keep no face images (a face then needs a new photo when the model pack changes; "
            "docs/hub.md#face-crops)")
    return CropCipher(key)


def say_if_the_crop_key_was_replaced(store, crops) -> bool:
    """Log an error when the face crop key does not open the newest stored crop (True then): a
    lost key replaced by `hub keygen` left every crop sealed before unreadable, said nowhere but
    in missing thumbnails and `hub reembed`'s "unreadable" list."""
    from edge.hub.face_crops import CropError

    newest = store.newest_face_crop()
    if newest is None:
        return False
    try:
        crops.open(*newest)
    except CropError:
        logging.getLogger("edge.hub").error(
            "the [face_crops] key of secrets_file does not open the stored face crops: they were sealed with "
            "another key. Restore that key from a backup of secrets_file; with this one, `hub reembed` cannot "
            "move those faces to another model pack (they need new photos) and the console shows no thumbnail")
        return True
    return False


def run_keygen(args) -> int:
    """`edge-verifier hub keygen --config hub.toml`: add the face crop key to its secrets_file."""
    from edge.core.settings import ConfigError
    from edge.hub import config
    from edge.hub.face_crops import add_key

    try:
        settings = config.load(args.config)
        if not settings.secrets_file:
            raise ConfigError("the config names no secrets_file: set secrets_file = \"/etc/edge-verifier/"
                              "hub-secrets.toml\" (mode 0600), then run this again")
        added = add_key(Path(settings.secrets_file))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"edge-verifier hub keygen: {exc}", file=sys.stderr)
        return 2
    if not added:
        print(f"edge-verifier hub keygen: {settings.secrets_file} already holds a face crop key; it is kept "
              "(a new one would make the stored crops unreadable)", file=sys.stderr)
        return 0
    print(f"edge-verifier hub keygen: a face crop key was added to {settings.secrets_file}", file=sys.stderr)
    return 0


def run(args) -> int:
    import dataclasses

    import uvicorn

    from edge.api.serving import uvicorn_config
    from edge.core.settings import ConfigError
    from edge.hub import config

    if getattr(args, "hub_action", None) == "migrate":
        from edge.hub.store import migrate

        return migrate.run(args)
    if getattr(args, "hub_action", None) == "backup":
        from edge.hub import backup

        return backup.run(args)
    if getattr(args, "hub_action", None) == "keygen":
        return run_keygen(args)
    if getattr(args, "hub_action", None) == "edgekey":
        from edge.hub import edge_keys

        return edge_keys.run(args)
    if getattr(args, "hub_action", None) == "reembed":
        from edge.hub import reembed

        return reembed.run(args)
    if getattr(args, "hub_action", None) == "user":
        from edge.hub.ui import accounts_cli

        return accounts_cli.run(args)
    if not args.config:
        print("edge-verifier hub: --config is required to serve", file=sys.stderr)
        return 2
    configure(args.log_level)  # the url inputs' signatures kept out of httpx's lines
    try:
        settings = config.load(args.config)
        if args.workers > 1 and not settings.storage.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("--workers above 1 needs [storage] url = \"postgresql://...\": "
                              "several processes share one database")
        app, store = build_app(settings)  # also creates or migrates the schema, once
    except ConfigError as exc:
        print(f"edge-verifier hub: {exc}", file=sys.stderr)
        return 2
    from edge.hub.store import redact

    where = redact(settings.storage.url) if settings.storage.url else settings.storage.path
    listener = dataclasses.replace(settings.server.listener(), host=args.host or settings.server.host,
                                   port=args.port or settings.server.port)
    if args.workers > 1:
        store.close()  # the schema is created or migrated: the workers find it ready
        return _supervise(args, listener.host, listener.port)
    logging.getLogger("edge.hub").info("serving the face API on %s://%s:%d (store %s)", listener.scheme,
                                       listener.host, listener.port, where)
    # uvicorn catches SIGTERM/SIGINT for a graceful stop, then re-raises them to the handlers
    # that were installed before it: these make that a clean exit 0 after closing the store.
    stopped_by: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
    try:
        server = uvicorn.Server(uvicorn_config(app, listener, log_level=args.log_level, access_log=False,
                                               timeout_graceful_shutdown=10))
        server.run(sockets=[_shared_socket(listener.host, listener.port)] if args.reuse_port else None)
    finally:
        store.close()
    logging.getLogger("edge.hub").info("stopped%s", f" by signal {stopped_by[0]}" if stopped_by else "")
    return 0


def _shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket other processes of this user bind too (SO_REUSEPORT): the kernel
    spreads new connections over them."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _supervise(args, host: str, port: int) -> int:
    """Run `--workers` hub processes on one port until SIGTERM/SIGINT; replace one that dies.
    Gives up (exit 1) when a worker keeps dying right after its start (port taken, bad config)."""
    cmd = [sys.executable, "-m", "edge", "hub", "--config", args.config, "--host", host, "--port", str(port),
           "--log-level", args.log_level, "--reuse-port"]
    log = logging.getLogger("edge.hub")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    workers = [(subprocess.Popen(cmd), time.monotonic()) for _ in range(args.workers)]
    log.info("serving the face API on %s:%d with %d processes", host, port, args.workers)
    quick_deaths = 0
    code = 0
    while not stop.wait(0.5):
        for i, (proc, started) in enumerate(workers):
            if proc.poll() is None:
                continue
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < 5 else 0
            if quick_deaths >= 3:
                log.error("hub workers keep exiting at start (last code %s): giving up", proc.returncode)
                stop.set()
                code = 1
                break
            log.warning("hub worker %d exited with code %s: starting another", proc.pid, proc.returncode)
            workers[i] = (subprocess.Popen(cmd), time.monotonic())
    for proc, _ in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc, _ in workers:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.info("stopped")
    return code
