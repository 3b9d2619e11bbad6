"""The face API as an ASGI app, for any role: auth, limits, envelopes, health, metrics.

    app = create_app(service, credentials, limits=ApiLimits(...), fetch_policy=FetchPolicy(...))

Order of checks per request, cheapest first so unauthenticated callers cost little:
unknown endpoint (code 21) -> signature (4/5/10/11/12/14/9; a single-use one must name this
endpoint in its `f`, 14) -> a key bound to one edge calls an edge's endpoint (-1530) -> rate
limit per appid, or per bound key (15) -> op not served by this role (24) -> body read with the
cap and a time limit (23 / 3) -> parse (3/21) -> body appid present (-1301) and equal to the
signed one (6) -> a single-use signature used up (13 if it was before) -> the endpoint (url
inputs fetched here, then the service in a worker thread). Business and auth errors, and an unknown /face/<op>,
answer HTTP 200 with the code in the envelope (the Python SDK parses the body whatever the
status, but the Java SDK throws on any non-2xx one); so does an unexpected exception (code 213,
logged): JSON can still be produced, so the API's every-answer-an-envelope rule holds there too.
The edge's own operations (POST /edge/claim) take the same path with their own smaller body cap.
Any other unmatched request (unknown path, wrong method) gets the JSON envelope with code 21 and
its HTTP status (404, 405); a path with a trailing slash (`/face/verify/`) is one too (HTTP 200 under
/face and /edge), never a redirect (whose Location would be built from the client's Host header).
Requests sent through an HTTP proxy carry the absolute form (`POST http://hub/face/newperson
HTTP/1.1`, RFC 9112 section 3.2.2): the path is taken from it.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Iterable
from urllib.parse import quote, unquote, urlsplit

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.api.body import parse_body, read_capped
from edge.api.ops import (
    AREA,
    EDGE_OPS,
    OPS,
    SMALL_BODY,
    ApiLimits,
    Ctx,
    current_appid,
    current_edge_groups,
    current_edge_key,
    text,
)
from edge.api.ratelimit import RateLimiter, take_token
from edge.api.service import ApiErrorWithData, FaceService
from edge.api.urlfetch import FetchPolicy
from edge.core import errors
from edge.core.errors import ApiError
from edge.core.signature import Credential, Signature, Verifier

log = logging.getLogger("edge.api")
APPID_OPTIONAL = frozenset({"compare"})  # the one endpoint the vendor API calls without an appid


def envelope(data: dict | None = None, code: int = 0, message: str = "OK", status: int = 200) -> JSONResponse:
    return JSONResponse({"data": data or {}, "code": code, "message": message}, status_code=status)


def create_app(
    service: FaceService,
    credentials: Iterable[Credential],
    *,
    limits: ApiLimits | None = None,
    fetch_policy: FetchPolicy | None = None,
    verifier: Verifier | None = None,
    limiter=None,
    device: str = "",
    device_bound: bool = False,
) -> Starlette:
    """`device` (an edge's id): a single-use signature may name it after the endpoint
    (`f=/edge/claim/<device>`), and one naming another device is refused; with `device_bound`
    it must (check_bound_to)."""
    limits = limits or ApiLimits()
    fetch_policy = fetch_policy or FetchPolicy(max_bytes=limits.body_bytes)
    verifier = verifier or Verifier(credentials)
    ctx = Ctx(service, limits, fetch_policy)
    # Several processes on one database share the store's limiter; one process keeps its own.
    limiter = limiter or RateLimiter(limits.rate_per_s, limits.burst)
    registry = CollectorRegistry()
    requests_total = Counter("face_api_requests", "Face API requests by endpoint and code", ["op", "code"],
                             registry=registry)
    latency = Histogram(
        "face_api_latency_seconds", "Face API request latency", ["op"], registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    started = time.time()

    async def handle(request: Request) -> Response:
        op, area = request.path_params["op"], request.url.path.split("/")[1]
        t0 = time.perf_counter()
        handler = OPS.get(op) if AREA.get(op, "face") == area else None
        if handler is None:
            requests_total.labels("unknown", str(errors.INVALID_PARAMETER)).inc()
            # HTTP 200 like every other refusal: the Java SDK throws on any non-2xx status without
            # reading the body, so its caller would never see the code (e.g. faceShape, /face/shape).
            return envelope(code=errors.INVALID_PARAMETER, message=f"no such endpoint /{area}/{op}")
        data: dict | None = None
        try:
            sig = verifier.verify(request.headers.get("authorization"))
            check_bound_to(sig, f"/{area}/{op}", device, device_bound)
            key = verifier.credential_of(sig)
            edge_key = key.edge_id
            if edge_key and op not in EDGE_OPS:  # before the body is read or a signature used up
                raise ApiError(errors.EDGE_KEY_REFUSED, f"this key belongs to edge {edge_key}: /{area}/{op} is not "
                               f"an edge's call (it may call {', '.join(sorted(EDGE_OPS))})")
            if not key.may_call(op):  # a key given only some calls (the badge reader's: claim)
                raise ApiError(errors.KEY_CALL_REFUSED, f"this key may not call /{area}/{op} "
                               f"(it may call {', '.join(key.calls)})")
            # A door's bound key has a bucket of its own: one taken off a door must not use up
            # the appid's and hold back the site's other doors and its operators.
            bucket = f"{sig.appid}\nedge {edge_key}" if edge_key else sig.appid
            if not await take_token(limiter, bucket):
                raise ApiError(errors.RATE_LIMITED, "too many requests for this key" if edge_key
                               else "too many requests for this appid")
            if not service.serves(op):
                raise ApiError(errors.ENDPOINT_RETIRED, f"/{area}/{op} is not served by this role ({service.role})")
            cap, timeout_s = SMALL_BODY.get(op, (limits.body_bytes, limits.body_timeout_s))
            body = await read_capped(request.stream(), cap, request.headers.get("content-length"), timeout_s)
            params = parse_body(body, request.headers.get("content-type"))
            # compare is the one call whose documented request has no appid: the signed one serves
            appid = text(params, "appid", ctx, required=op not in APPID_OPTIONAL) or sig.appid
            sig.check_appid(appid)
            # Used up only now, once the request is known to be well formed and for the signed
            # appid: a sniffed single-use signature sent with another appid (or a broken body) is
            # refused without burning the genuine request's. Off the event loop: it is claimed in
            # the store (fsync, round trip).
            await run_in_threadpool(verifier.consume, sig)
            current_appid.set(appid)
            current_edge_key.set(edge_key)
            current_edge_groups.set(key.groups)
            data = await handler(appid, params, ctx)
            code, message = 0, "OK"
        except ApiErrorWithData as exc:
            code, message, data = exc.code, exc.message, exc.data
        except ApiError as exc:
            code, message = exc.code, exc.message
        except ClientDisconnect:  # the caller went away mid-body: nobody to answer
            requests_total.labels(op, "disconnected").inc()
            return Response(status_code=400)
        except Exception:  # a bug, not the caller's fault: log it, answer 213
            log.exception("internal error in /face/%s", op)
            requests_total.labels(op, str(errors.INTERNAL_ERROR)).inc()
            return envelope(code=errors.INTERNAL_ERROR, message="internal error")
        requests_total.labels(op, str(code)).inc()
        latency.labels(op).observe(time.perf_counter() - t0)
        return envelope(data, code, message)

    async def health(request: Request) -> Response:
        try:
            extra = service.health()
        except Exception as exc:  # health must answer even when a part is broken
            extra = {"error": f"{type(exc).__name__}: {exc}"}
        extra["url_fetch"] = ctx.fetch_gate.health()
        limiter = anyio.to_thread.current_default_thread_limiter()
        extra["worker_threads"] = {"busy": limiter.borrowed_tokens, "limit": int(limiter.total_tokens)}
        saturated = [name for name, busy in (("url downloads", ctx.fetch_gate.saturated),
                                             ("worker threads", limiter.borrowed_tokens >= limiter.total_tokens))
                     if busy]
        if saturated:
            extra.setdefault("error", f"saturated: {', '.join(saturated)}")
        status = "ok" if not extra.get("error") else "degraded"
        uptime_s = round(time.time() - started, 1)
        return JSONResponse({"status": status, "role": service.role, "uptime_s": uptime_s, **extra})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def not_post(request: Request) -> Response:
        return envelope(code=errors.BAD_REQUEST, message="face API calls are POST /face/<op>", status=405)

    async def trailing_slash(request: Request) -> Response:
        # Starlette would answer an empty 307 to the slashless path, its Location built from the
        # client's Host header, before any signature check: a refusal like any unknown endpoint
        # (HTTP 200, as the Java SDK reads only those), which names the right path.
        requests_total.labels("unknown", str(errors.INVALID_PARAMETER)).inc()
        # Named only when it is an endpoint's own path: the client's path was repeated as it
        # came, markup included, and a console link taken there showed it as HTML
        slashless = request.url.path.rstrip("/")
        named = f" (no trailing slash: {slashless})" if re.fullmatch(r"/(face|edge)/[a-z]{1,32}", slashless) else ""
        return envelope(code=errors.INVALID_PARAMETER, message=f"no such endpoint{named}")

    async def unmatched(request: Request, exc: HTTPException) -> Response:
        return envelope(code=errors.INVALID_PARAMETER,
                        message=f"no such endpoint: {request.method} {quote(request.url.path[:200], safe='/')}",
                        status=exc.status_code)

    app = Starlette(routes=[
        Route("/face/{op}", handle, methods=["POST"]),
        Route("/face/{op}", not_post, methods=["GET", "PUT", "DELETE", "PATCH"]),
        Route("/edge/{op}", handle, methods=["POST"]),
        *(Route(f"/{area}/{{op}}/", trailing_slash, methods=["POST", "GET", "PUT", "DELETE", "PATCH"])
          for area in ("face", "edge")),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ], exception_handlers={404: unmatched, 405: unmatched}, middleware=[Middleware(AbsoluteFormPaths)])
    app.router.redirect_slashes = False  # no redirect anywhere: a Location would echo the Host header
    app.state.service = service
    app.state.verifier = verifier
    app.state.registry = registry
    return app


def check_bound_to(sig: Signature, endpoint: str, device: str = "", device_bound: bool = False) -> None:
    """A single-use signature is good for one endpoint: its `f` must be that endpoint's path
    (`/face/verify`, `/edge/claim`). One sniffed on its way to an endpoint cannot be used on
    another (a cheap verify's turned into a newperson), and a command's (`f` = `verify:<id>`,
    `sync`, edge.daemon.commands) is never good for HTTP. Multi-use signatures (what the vendor
    SDKs send, `f` empty) name no endpoint: they are bound by their key alone, which is why the
    edge's channels have a key of their own (docs/security.md). Code 14."""
    if not sig.single_use:
        return
    if sig.for_a_command:
        raise ApiError(errors.SIGNATURE_INVALID, "signature made for an MQTT command, not this API")
    f = sig.fields.get("f", "")
    here = f"{endpoint}/{device}" if device else endpoint
    if device and isinstance(f, str) and f.startswith(f"{endpoint}/") and f != here:
        # doors sharing [api] credentials: a claim signed for one was good at every other
        raise ApiError(errors.SIGNATURE_INVALID, f"single-use signature made for another device, not {device}")
    allowed = (here,) if device_bound or not device else (here, endpoint)
    if f not in allowed:
        raise ApiError(errors.SIGNATURE_INVALID,
                       f"single-use signature not made for this endpoint (its f must be {' or '.join(allowed)})")


class AbsoluteFormPaths:
    """ASGI middleware: a request target in absolute form (`http://host/face/op?q`) is routed by
    its path, as a proxy-using client (PHP/Java/Node `setProxy`, libcurl `http_proxy`) sends it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"][:8].lower().startswith(("http://", "https://")):
            target = urlsplit(scope.get("raw_path", scope["path"].encode()).decode("latin-1"))
            raw_path = target.path or "/"
            scope = {**scope, "path": unquote(raw_path), "raw_path": raw_path.encode("latin-1"),
                     "query_string": target.query.encode("latin-1")}
        await self.app(scope, receive, send)
