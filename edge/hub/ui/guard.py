"""What every console request goes through: security headers, CSRF checks, the session and the
role check. `page(role)` wraps each page handler; no handler checks a role itself.

CSRF, for every POST (OWASP ASVS 4.2.2, 13.2.3):
1. Fetch Metadata: a `Sec-Fetch-Site` other than same-origin is refused (the browser sets it,
   a page cannot);
2. an `Origin` header naming another origin is refused;
3. the per-session token (edge.hub.ui.sessions.csrf_token) must come back, in the form's
   `csrf` field or htmx's `X-CSRF-Token` header. The login form, before any session, carries a
   random token that must equal the one in its own short-lived cookie (double submit).
The session cookie is SameSite=Strict and HttpOnly besides; no token is ever put in a URL.

Headers of every answer: a Content-Security-Policy allowing scripts and styles from the hub
only (no inline script or style, no eval: htmx is configured by a meta tag), frame-ancestors
'none' and X-Frame-Options DENY, Referrer-Policy same-origin (no URL leaves the site;
no-referrer would make browsers send Origin: null on the console's own forms), nosniff, and
Cache-Control no-store on pages (they show personal data) but not on the versioned static files.
"""

from __future__ import annotations

import functools
import hmac
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from edge.api.body import read_capped
from edge.api.ratelimit import take_token
from edge.core import errors
from edge.core.errors import ApiError
from edge.hub.store.console import Account, ConsoleSession
from edge.hub.ui.roles import allows
from edge.hub.ui.sessions import csrf_token

log = logging.getLogger("edge.hub.ui")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make a browser send Origin: null
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
FORM_BYTES = 64 * 1024  # every form but the enrolment upload


class SecurityHeaders:
    """ASGI middleware of the console's sub-application: HEADERS on every answer, and
    Cache-Control no-store unless the answer set its own (the static files)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                            if k.lower().encode() not in present]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass
class Ctx:
    """What a page handler gets: the request, its session and account, the parsed form."""

    request: Request
    session: ConsoleSession | None
    token: str | None
    form: dict = field(default_factory=dict)
    lists: dict = field(default_factory=dict)  # every value of each field (checkboxes), in order
    files: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def account(self) -> Account:
        assert self.session is not None
        return self.session.account

    @property
    def appid(self) -> str:
        return self.account.appid

    @property
    def csrf(self) -> str:
        return csrf_token(self.token) if self.token else ""


def cross_site(request: Request, scheme: str) -> str | None:
    """Why this unsafe request looks cross-site, or None."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"Sec-Fetch-Site {site[:20]}"
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        parts = urlsplit(origin)
        if origin == "null" or parts.scheme != scheme or parts.netloc.lower() != host.lower():
            return "Origin of another site"
    return None


def refused(console, ctx_or_request, status: int, message: str) -> Response:
    return console.render("refused.html", ctx_or_request, status=status, message=message)


# ApiErrors a page raises on the request's own values (400), not on the hub failing (503)
INPUT_ERRORS = frozenset({errors.BAD_REQUEST, errors.INVALID_PARAMETER, errors.ILLEGAL_CHARACTERS,
                          errors.PARAMETER_TOO_LONG, errors.PARAMETER_EMPTY})


def _holds_nul(request: Request) -> bool:
    """A NUL in the decoded path or a query value: no page can look it up (PostgreSQL refuses it)."""
    return "\x00" in request.scope.get("path", "") or any("\x00" in k or "\x00" in v
                                                            for k, v in request.query_params.multi_items())


def page(role: str, *, upload_bytes: int = 0):
    """Wrap a sync handler `fn(console, ctx) -> Response` as a route needing `role`: no session
    leads to the login page (401 for a POST or htmx), a lesser role gets 403, a POST passes the
    CSRF checks first. The handler runs in a worker thread (store and model work block)."""

    def wrap(fn):
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            console = request.app.state.console
            if _holds_nul(request):
                return refused(console, request, 400, "the address holds a NUL character")
            unsafe = request.method not in ("GET", "HEAD")
            if unsafe:
                why = cross_site(request, console.scheme)
                if why:
                    log.warning("console: cross-site %s %r refused (%s)", request.method, request.url.path[:200], why)
                    return refused(console, request, 403, "cross-site request refused")
            token = request.cookies.get(console.cookie_name)
            session = await run_in_threadpool(console.sessions.resolve, token)
            if session is None:
                if unsafe or request.headers.get("hx-request"):
                    response: Response = HTMLResponse("<p>Your session has ended: <a href=\"/ui/login\">log in"
                                                      "</a>.</p>", status_code=401)
                    response.headers["HX-Redirect"] = "/ui/login"
                    return response
                return RedirectResponse("/ui/login", status_code=303)
            ctx = Ctx(request, session, token)
            # the role before the body: a viewer's 10 MB of photos for the operator's enrol page
            # were read and parsed, then refused
            if not allows(session.account.role, role):
                return refused(console, ctx, 403, f"this needs the {role} role; you are {session.account.role}")
            if unsafe:
                try:
                    await read_form(request, ctx, upload_bytes or FORM_BYTES, with_files=bool(upload_bytes))
                except ApiError as exc:
                    return refused(console, ctx, 413 if exc.code == errors.BODY_TOO_LARGE else 400, exc.message)
                except MultiPartException as exc:
                    return refused(console, ctx, 400, f"malformed form: {exc.message}")
                sent = ctx.form.get("csrf") or request.headers.get("x-csrf-token") or ""
                if not hmac.compare_digest(sent.encode(), ctx.csrf.encode()):
                    log.warning("console: %s %s without its CSRF token refused", request.method, request.url.path)
                    return refused(console, ctx, 403, "the form's security token is missing or wrong: reload the page")
            if ctx.files and not await _photos_allowed(console, session.account.appid, len(ctx.files)):
                return refused(console, ctx, 429, "too many requests for this appid: wait a moment, then send "
                               "the photos again")
            try:
                response = await run_in_threadpool(fn, console, ctx)
                if unsafe:  # who changed what (an account added, a person deleted, a lockout lifted)
                    log.info("console: %s %r by %r of appid %s: %d", request.method, request.url.path[:200],
                             session.account.username, session.account.appid, response.status_code)
                return response
            except ApiError as exc:  # what a page did not expect (the models cannot load): said, not a crash
                if exc.code in INPUT_ERRORS:  # the request's own values: not the hub's failure
                    return refused(console, ctx, 400, exc.message)
                log.error("console: %s %s: %s", request.method, request.url.path, exc.message)
                return refused(console, ctx, 503, exc.message)

        endpoint.role = role  # type: ignore[attr-defined]  # read by the role x route tests
        return endpoint

    return wrap


async def _photos_allowed(console, appid: str, photos: int) -> bool:
    """A token of the appid's face API bucket for each photo: photos are decoded and embedded in
    the slots every tenant's API shares, and one operator sending them without end held the
    other tenants' requests until they failed (-1102)."""
    limiter = console.limiter
    if limiter is None:
        return True
    for _ in range(photos):
        if not await take_token(limiter, appid):
            return False
    return True


async def read_form(request: Request, ctx: Ctx, cap: int, with_files: bool) -> None:
    """The body (at most `cap` bytes, or ApiError) parsed into ctx.form and ctx.files."""
    request._body = await read_capped(request.stream(), cap, request.headers.get("content-length"), 60.0)
    form = await request.form(max_files=50 if with_files else 0, max_fields=100)
    for key, value in form.multi_items():
        if isinstance(value, str):
            if "\x00" in value or "\x00" in key:  # no text field stores it (PostgreSQL refuses it)
                raise ApiError(errors.ILLEGAL_CHARACTERS, "a form field holds a NUL character")
            ctx.form.setdefault(key, value)  # the first of a repeated field
            ctx.lists.setdefault(key, []).append(value)
        elif with_files and value.filename:
            ctx.files.append((value.filename[:200], await value.read()))
    await form.close()
