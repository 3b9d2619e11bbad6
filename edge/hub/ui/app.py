"""The console as a Starlette sub-application, mounted at /ui on the hub's app.

The session cookie: `__Host-edge-console` (Secure, HttpOnly, SameSite=Strict, Path=/) when the
browser reaches the hub over TLS (the hub's own, or a proxy's: [console] tls_proxy). A browser
drops a Secure cookie sent over plain http, so a hub serving plain http on a loopback address
(the demo, a first set-up through an SSH tunnel) uses `edge-console` without Secure, and logs
that once; a hub serving plain http on any other address serves no console at all (its
passwords and cookies would cross the network in the clear).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from edge.hub.ui import static
from edge.hub.ui.guard import Ctx, SecurityHeaders
from edge.hub.ui.sessions import SessionPolicy, Sessions

log = logging.getLogger("edge.hub.ui")
TEMPLATES = Path(__file__).with_name("templates")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Console:
    def __init__(self, service, sessions: Sessions, credentials, static_files: dict, *, secure: bool,
                 limiter=None):
        self.service = service
        self.limiter = limiter  # the face API's per-appid buckets (edge.api.ratelimit); None: no limit
        self.sessions = sessions
        self.credentials = list(credentials)
        self.static = static_files
        self.secure = secure
        self.scheme = "https" if secure else "http"
        self.cookie_name = "__Host-edge-console" if secure else "edge-console"
        self.login_cookie = "__Host-edge-console-login" if secure else "edge-console-login"
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        # One path segment of a link: Jinja's `urlencode` leaves `/` as it is, and a person id
        # of `../../face/…` took a console link out of /ui (every link from data uses this)
        self.env.filters["segment"] = lambda value: quote(str(value), safe="")

    @property
    def store(self):
        return self.service.store

    def render(self, template: str, where: Ctx | Request, status: int = 200, **values) -> HTMLResponse:
        ctx = where if isinstance(where, Ctx) else None
        body = self.env.get_template(template).render(
            account=ctx.account if ctx and ctx.session else None, csrf=ctx.csrf if ctx else "",
            static={name: f.url for name, f in self.static.items()}, **values)
        return HTMLResponse(body, status_code=status)

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
                            samesite="strict")

    def clear_cookie(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="strict")


def create_console(service, credentials, *, scheme: str, host: str, tls_proxy: bool = False,
                   idle_s: float = 1800, absolute_s: float = 43200, static_dir: Path | None = None,
                   clock: Callable[[], float] = time.time, limiter=None) -> Starlette | None:
    """The /ui sub-application, or None (logged) when it cannot be served safely. `limiter`:
    the face API's per-appid rate buckets, which photo uploads draw from too."""
    from edge.hub.ui.pages import ROUTES

    secure = scheme == "https" or tls_proxy
    if tls_proxy and scheme != "https" and not is_loopback(host):
        # the proxy's TLS protects only what goes through the proxy: a browser pointed at the
        # hub's own port sends the password in the clear before the Secure cookie is refused
        log.warning("console behind a TLS proxy ([console] tls_proxy), but the hub listens in plain http on %s: "
                    "let only the proxy reach its port (a firewall), or bind it to the loopback", host)
    if not secure:
        if not is_loopback(host):
            log.error("console not served: the hub serves plain http on %s; give it tls_cert/tls_key, or set "
                      "[console] tls_proxy = true behind a reverse proxy that terminates TLS", host)
            return None
        log.warning("console served over plain http on loopback (%s): its cookie is edge-console, not "
                    "__Host- and Secure; use TLS to reach it from another machine", host)
    policy = SessionPolicy(idle_s=idle_s, absolute_s=absolute_s)
    files = {**static.load(static_dir or static.default_dir()), **static.own()}
    # the key of the login failures' names: of the hub's own keys (not in the store, the same in
    # every hub process of the site)
    name_key = hashlib.sha256(b"edge-verifier console login names\n" + b"\n".join(
        sorted(c.secret_key.encode() for c in credentials))).digest()
    console = Console(service, Sessions(service.store, policy, clock, name_key), credentials, files, secure=secure,
                      limiter=limiter)
    service.store.forget_plain_login_names()  # an older release's, which may hold a password
    app = Starlette(routes=[Route(path, endpoint, methods=[method]) for method, path, endpoint in ROUTES])
    app.router.redirect_slashes = False
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    return app


def mount(app: Starlette, console_app: Starlette) -> None:
    """Put the console at /ui (before the API's catch-all answers) and /ui at /ui/."""

    async def to_index(request: Request) -> Response:
        return RedirectResponse("/ui/", status_code=303)

    app.router.routes[:0] = [Route("/ui", to_index, methods=["GET"]), Mount("/ui", app=console_app)]
    app.state.console = console_app.state.console


