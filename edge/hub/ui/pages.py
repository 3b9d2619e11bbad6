"""The console's pages. Each handler reads or changes the appid of its session's account through
the hub service (the API's operations and rules) and renders a template; `page(role)` has done
the session, CSRF and role checks before it runs. ROUTES lists every route with its role."""

from __future__ import annotations

import hmac
import logging
import secrets
import time

from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from edge.api.ops import ApiLimits, check_ident
from edge.core import errors
from edge.core.errors import ApiError
from edge.hub import enrolment
from edge.hub.audit import GOOD_PHOTO_COUNTS
from edge.hub.ui import accounts, decisions, doors, rules
from edge.hub.ui.guard import Ctx, cross_site, page, read_form, refused
from edge.hub.ui.roles import ROLES
from edge.hub.ui.sessions import LoginRefused

log = logging.getLogger("edge.hub.ui")

PAGE_SIZE = 50
MAX_PHOTOS = 10
PLACEHOLDER = (b'<svg xmlns="http://www.w3.org/2000/svg" width="112" height="112" viewBox="0 0 112 112">'
               b'<rect width="112" height="112" fill="#ccc"/><circle cx="56" cy="44" r="22" fill="#999"/>'
               b'<rect x="22" y="74" width="68" height="38" rx="30" fill="#999"/></svg>')


def _limits(console) -> ApiLimits:
    limits = console.service.limits
    return limits if isinstance(limits, ApiLimits) else ApiLimits()


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


# --- login and logout --------------------------------------------------------------------------
async def login_form(request: Request) -> Response:
    console = request.app.state.console
    return _login_page(console, request, "", 200)


def _login_page(console, request: Request, error: str, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    response = console.render("login.html", request, status=status, error=error, login_token=token)
    console.set_cookie(response, console.login_cookie, token, max_age=900)
    return response


async def login(request: Request) -> Response:
    console = request.app.state.console
    why = cross_site(request, console.scheme)
    if why:
        return refused(console, request, 403, "cross-site request refused")
    ctx = Ctx(request, None, None)
    try:
        await read_form(request, ctx, 8192, with_files=False)
    except (ApiError, MultiPartException):  # too large, too slow, malformed: the same answer
        return refused(console, request, 400, "malformed login form")
    expected = request.cookies.get(console.login_cookie, "")
    sent = ctx.form.get("login_token", "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        return _login_page(console, request, "the login form expired: try again", 403)
    address = request.client.host if request.client else ""
    try:
        token, account = await run_in_threadpool(console.sessions.login, ctx.form.get("username", "")[:64],
                                                  ctx.form.get("password", ""), address)
    except LoginRefused as exc:
        # an unknown username is not written out: it is sometimes the password, in the wrong box
        who = repr(ctx.form.get("username", "")[:64]) if exc.known else "an unknown username"
        log.warning("console: login as %s from %s refused%s", who, address, " (rate limited)" if exc.limited else "")
        return _login_page(console, request, str(exc), 429 if exc.limited else 401)
    log.info("console: %r logged in from %s", account.username, address)
    response = _see_other("/ui/persons")
    console.set_cookie(response, console.cookie_name, token, max_age=None)  # ends with the browser
    console.clear_cookie(response, console.login_cookie)
    return response


@page("viewer")
def logout(console, ctx: Ctx) -> Response:
    console.sessions.logout(ctx.token)
    response = _see_other("/ui/login")
    console.clear_cookie(response, console.cookie_name)
    return response


# --- persons and groups ------------------------------------------------------------------------
@page("viewer")
def index(console, ctx: Ctx) -> Response:
    return _see_other("/ui/persons")


@page("viewer")
def persons(console, ctx: Ctx) -> Response:
    query = ctx.request.query_params.get("q", "")[:100]
    number = ctx.request.query_params.get("page", "1")
    number = int(number) if number.isascii() and number.isdigit() and len(number) < 7 else 1
    total, rows = console.store.persons_page(ctx.appid, query, (max(number, 1) - 1) * PAGE_SIZE, PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    return console.render("persons.html", ctx, rows=rows, total=total, query=query, page=min(number, pages),
                          pages=pages, deleted=ctx.request.query_params.get("deleted", "")[:128])


def _person_page(console, ctx: Ctx, person_id: str, error: str = "", status: int = 200) -> Response:
    try:
        info = console.service.getinfo(ctx.appid, person_id)
    except ApiError as exc:
        if exc.code == errors.PERSON_UNKNOWN:
            return refused(console, ctx, 404, "no such person")
        raise
    cards = [c.fmt for c in console.store.get_credentials(ctx.appid, person_id)]  # formats, never numbers
    return console.render("person.html", ctx, status=status, person=info, cards=cards, error=error,
                          good_photos=GOOD_PHOTO_COUNTS, claims=_claims_at_the_doors(console, ctx.appid, person_id))


def _claims_at_the_doors(console, appid: str, person_id: str) -> dict:
    """The person's claims refused on the face at the site's doors in the last day (after their
    last admission or lift), and their last lift: what an operator weighs before lifting."""
    from edge.hub.claim_refusals import LONGEST_WINDOW_S, lifts_since, site_refusals
    from edge.hub.ui.sitetime import shown, site_zone

    now = time.time()
    day = now - LONGEST_WINDOW_S  # as far back as the doors' counts go
    lifted = lifts_since(console.store, appid, day, now)
    refused = [at for _, at, _ in site_refusals(console.store, appid, "", day, lifted, now, person_id,
                                                edge_groups=console.service.edge_groups)]
    lift = lifted.get(person_id)
    zone, _ = site_zone(console.store, appid)
    return {"refused": len(refused), "last_refused": shown(refused[-1], zone) if refused else "",
            "lifted": shown(lift[0], zone) if lift else "", "lifted_by": lift[1] if lift else ""}


@page("viewer")
def person(console, ctx: Ctx) -> Response:
    return _person_page(console, ctx, ctx.request.path_params["person_id"])


@page("operator")
def rename(console, ctx: Ctx) -> Response:
    person_id = ctx.request.path_params["person_id"]
    name = ctx.form.get("person_name", "").strip()
    try:
        if len(name.encode()) > _limits(console).text_bytes:
            raise ApiError(errors.PARAMETER_TOO_LONG, "the name is too long")
        console.service.setinfo(ctx.appid, person_id, name, None)
    except ApiError as exc:
        return _person_page(console, ctx, person_id, exc.message, 400)
    return _see_other(f"/ui/persons/{_q(person_id)}")


@page("operator")
def cards(console, ctx: Ctx) -> Response:
    """Add a card to the person (format, facility, number: the OSDP / Wiegand backends send it to
    the site's panel on a grant), or remove all of them. The numbers are never shown again."""
    from edge.core.credentials import Credential, CredentialError

    person_id = ctx.request.path_params["person_id"]
    try:
        kept = [] if ctx.form.get("action") == "remove_all" else console.store.get_credentials(ctx.appid, person_id)
        if ctx.form.get("action") != "remove_all":
            fields = {k: ctx.form.get(k, "").strip() for k in ("format", "facility", "number", "bits")}
            data = {k: int(v) if k != "format" else v for k, v in fields.items() if v}
            kept = [*kept, Credential.from_json(data)]
        console.service.setcredentials(ctx.appid, person_id, kept)
    except ValueError as exc:  # CredentialError, or a field that is not a whole number
        message = str(exc) if isinstance(exc, CredentialError) else "facility, number and bits are whole numbers"
        return _person_page(console, ctx, person_id, message, 400)
    except ApiError as exc:
        return _person_page(console, ctx, person_id, exc.message, 400)
    return _see_other(f"/ui/persons/{_q(person_id)}")


@page("operator")
def lift_claims(console, ctx: Ctx) -> Response:
    """Lift the lockout of the person's badge at every door (each at its next sync)."""
    person_id = ctx.request.path_params["person_id"]
    try:
        console.service.liftclaims(ctx.appid, person_id, f"console:{ctx.account.username}")
    except ApiError as exc:
        return _person_page(console, ctx, person_id, exc.message, 400)
    return _see_other(f"/ui/persons/{_q(person_id)}")


def split_groups(text: str, id_bytes: int) -> list[str]:
    """The comma-separated group ids of a form field, each checked: a space inside one is an
    error said on the page ("staff, night shift" was split at the space, and the person put
    silently in groups `night` and `shift` that no rule names)."""
    groups = [g.strip() for g in text.split(",") if g.strip()]
    return list(dict.fromkeys(check_ident("group_id", g, id_bytes) for g in groups))


@page("operator")
def move(console, ctx: Ctx) -> Response:
    """Set the person's groups to those listed (joins the new ones first, then leaves the others)."""
    person_id = ctx.request.path_params["person_id"]
    try:
        wanted = split_groups(ctx.form.get("group_ids", ""), _limits(console).id_bytes)
        if not wanted:
            raise ApiError(errors.PARAMETER_EMPTY, "a person belongs to at least one group")
        current = console.service.getinfo(ctx.appid, person_id)["group_ids"]
        joining = [g for g in wanted if g not in current]
        leaving = [g for g in current if g not in wanted]
        if joining:
            console.service.addgroupids(ctx.appid, person_id, joining)
        if leaving:
            console.service.delgroupids(ctx.appid, person_id, leaving)
    except ApiError as exc:
        return _person_page(console, ctx, person_id, exc.message, 400)
    return _see_other(f"/ui/persons/{_q(person_id)}")


@page("admin")
def delete_person(console, ctx: Ctx) -> Response:
    person_id = ctx.request.path_params["person_id"]
    try:
        console.service.delperson(ctx.appid, person_id)
    except ApiError as exc:
        return refused(console, ctx, 404, exc.message)
    # said, with where to see it leave the doors (it went back to the list without a word)
    return _see_other(f"/ui/persons?deleted={_q(person_id)}")


@page("admin")
def delete_face(console, ctx: Ctx) -> Response:
    person_id = ctx.request.path_params["person_id"]
    try:
        console.service.delface(ctx.appid, person_id, [ctx.request.path_params["face_id"]])
    except ApiError as exc:
        return _person_page(console, ctx, person_id, exc.message, 400)
    return _see_other(f"/ui/persons/{_q(person_id)}")


@page("viewer")
def face_image(console, ctx: Ctx) -> Response:
    """The face's crop, only for its own appid's accounts; never cached by the browser."""
    face_id = ctx.request.path_params["face_id"]
    try:
        console.store.face(ctx.appid, face_id)
    except ApiError:
        return Response(b"", status_code=404, headers={"Cache-Control": "no-store"})
    png = console.service.face_crop_png(ctx.appid, face_id)
    if png is None:
        return Response(PLACEHOLDER, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@page("viewer")
def groups(console, ctx: Ctx) -> Response:
    return console.render("groups.html", ctx, groups=console.store.group_sizes(ctx.appid))


# --- enrolment ---------------------------------------------------------------------------------
@page("operator")
def enrol_form(console, ctx: Ctx) -> Response:
    prefill = {"person_id": ctx.request.query_params.get("person_id", "")[:64]}
    return console.render("enrol.html", ctx, form=prefill, verdicts=[], held="", error="", outcome=None)


@page("operator")
def enrol_webcam(console, ctx: Ctx) -> Response:
    """Enrolment by webcam: this page alone may use the camera (and only this site's scripts)."""
    prefill = {"person_id": ctx.request.query_params.get("person_id", "")[:64]}
    found = console.static.get("webcam.js")
    response = console.render("enrol_webcam.html", ctx, form=prefill, verdicts=[], held="", error="",
                              outcome=None, script=found.url if found else "")
    response.headers["Permissions-Policy"] = "camera=(self), microphone=(), geolocation=()"
    return response


def _enrol_fields(ctx: Ctx) -> tuple[str, str, str]:
    return (ctx.form.get("person_id", "").strip(), ctx.form.get("person_name", "").strip(),
            ctx.form.get("group_ids", ""))


@page("operator", upload_bytes=MAX_PHOTOS * ApiLimits().body_bytes + 65536)
def enrol_check(console, ctx: Ctx) -> Response:
    """The verdict on each photo, nothing stored (htmx: only the verdicts, the form stays)."""
    person_id, _name, _groups = _enrol_fields(ctx)
    template = "verdicts.html" if ctx.request.headers.get("hx-request") else "enrol.html"
    if not ctx.files or len(ctx.files) > MAX_PHOTOS:
        return console.render(template, ctx, form=ctx.form, verdicts=[], held="", outcome=None,
                              error=f"choose 1 to {MAX_PHOTOS} photos")
    verdicts = enrolment.examine(console.service, ctx.appid, person_id or "-", ctx.files)
    return console.render(template, ctx, form=ctx.form, verdicts=verdicts, held="", error="", outcome=None)


@page("operator", upload_bytes=MAX_PHOTOS * ApiLimits().body_bytes + 65536)
def enrol(console, ctx: Ctx) -> Response:
    person_id, name, group_ids = _enrol_fields(ctx)
    if not ctx.files or len(ctx.files) > MAX_PHOTOS:
        return console.render("enrol.html", ctx, status=400, form=ctx.form, verdicts=[], held="", outcome=None,
                              error=f"choose 1 to {MAX_PHOTOS} photos")
    try:
        outcome = enrolment.enrol(console.service, ctx.appid, person_id, name,
                                  split_groups(group_ids, _limits(console).id_bytes), ctx.files,
                                  accept_look_alikes=ctx.form.get("accept_look_alikes") == "yes")
    except ApiError as exc:
        return console.render("enrol.html", ctx, status=400, form=ctx.form, verdicts=[], held="", outcome=None,
                              error=exc.message)
    return console.render("enrol.html", ctx, status=200 if outcome.saved else 409, form=ctx.form,
                          verdicts=outcome.verdicts, held=outcome.held, error="", outcome=outcome)


# --- administration ----------------------------------------------------------------------------
def _accounts_page(console, ctx: Ctx, error: str = "", status: int = 200) -> Response:
    return console.render("accounts.html", ctx, status=status, accounts=console.store.accounts(ctx.appid),
                          roles=ROLES, error=error)


@page("admin")
def accounts_list(console, ctx: Ctx) -> Response:
    return _accounts_page(console, ctx)


@page("admin")
def account_add(console, ctx: Ctx) -> Response:
    try:
        accounts.add(console.store, ctx.form.get("username", ""), ctx.appid, ctx.form.get("role", ""),
                     ctx.form.get("password", ""))
    except ValueError as exc:
        return _accounts_page(console, ctx, str(exc), 400)
    return _see_other("/ui/admin/accounts")


@page("admin")
def account_role(console, ctx: Ctx) -> Response:
    """Another role for an account of this appid (never taking its last admin away)."""
    username, role = ctx.request.path_params["username"], ctx.form.get("role", "")
    if role not in ROLES:
        return _accounts_page(console, ctx, f"role must be one of {', '.join(ROLES)}", 400)
    if username == ctx.account.username:
        return _accounts_page(console, ctx, "you cannot change your own role here", 400)
    return _account_changed(console, ctx, console.store.set_role_of(ctx.appid, username, role))


def _account_changed(console, ctx: Ctx, done: str) -> Response:
    """The answer to a change the store made of an account or refused: "missing" (another
    tenant's account is "no such account" too), "last_admin", else the list again."""
    if done == "missing":
        return _accounts_page(console, ctx, "no such account", 404)
    if done == "last_admin":
        return _accounts_page(console, ctx, "this is the appid's last admin account", 400)
    return _see_other("/ui/admin/accounts")


@page("admin")
def account_password(console, ctx: Ctx) -> Response:
    """A new password for an account of this appid (a lost one, or one that may be known):
    every session of the account ends. It needed the hub's shell (`hub user passwd`)."""
    username = ctx.request.path_params["username"]
    target = console.store.account(username)
    if target is None or target.appid != ctx.appid:  # another tenant's account is "no such account"
        return _accounts_page(console, ctx, "no such account", 404)
    try:
        accounts.reset_password(console.store, username, ctx.form.get("password", ""))
    except ValueError as exc:
        return _accounts_page(console, ctx, str(exc), 400)
    if username == ctx.account.username:
        return _see_other("/ui/login")  # its own sessions ended with it: log in with the new one
    return _accounts_page(console, ctx, f"{username} has a new password; their sessions ended", 200)


@page("admin")
def account_delete(console, ctx: Ctx) -> Response:
    username = ctx.request.path_params["username"]
    if username == ctx.account.username:
        return _accounts_page(console, ctx, "you cannot delete your own account here", 400)
    return _account_changed(console, ctx, console.store.delete_account_of(ctx.appid, username))


@page("admin")
def credentials(console, ctx: Ctx) -> Response:
    """The appid's API keys: ids and what each may do, never a secret."""
    keys = [c for c in console.credentials if c.appid == ctx.appid]
    return console.render("credentials.html", ctx, keys=keys)


async def static_file(request: Request) -> Response:
    console = request.app.state.console
    found = console.static.get(request.path_params["name"])
    if found is None or found.sha256[:16] != request.path_params["digest"]:
        return Response(b"", status_code=404)
    return Response(found.body, media_type=found.media_type,
                    headers={"Cache-Control": "public, max-age=31536000, immutable"})


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# (method, path under /ui, endpoint): every route of the console; endpoint.role where it has one
ROUTES = [
    ("GET", "/", index),
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/persons", persons),
    ("GET", "/persons/{person_id}", person),
    ("POST", "/persons/{person_id}/rename", rename),
    ("POST", "/persons/{person_id}/groups", move),
    ("POST", "/persons/{person_id}/cards", cards),
    ("POST", "/persons/{person_id}/lift", lift_claims),
    ("POST", "/persons/{person_id}/delete", delete_person),
    ("POST", "/persons/{person_id}/faces/{face_id}/delete", delete_face),
    ("GET", "/faces/{face_id}", face_image),
    ("GET", "/groups", groups),
    ("GET", "/enrol", enrol_form),
    ("GET", "/enrol/webcam", enrol_webcam),
    ("POST", "/enrol/check", enrol_check),
    ("POST", "/enrol", enrol),
    ("GET", "/decisions", decisions.decisions),
    ("GET", "/decisions/{edge_id}/{seq}", decisions.decision),
    ("POST", "/decisions/{edge_id}/{seq}/compare", decisions.compare),
    ("POST", "/decisions/{edge_id}/{seq}/train", decisions.train),
    ("GET", "/doors", doors.doors),
    ("GET", "/rules", rules.rules),
    ("POST", "/rules", rules.rules_save),
    ("POST", "/rules/timezone", rules.rules_timezone),
    ("POST", "/rules/holidays", rules.rules_holiday),
    ("POST", "/rules/start", rules.rules_start),
    ("POST", "/rules/levels", rules.rules_level),
    ("POST", "/rules/schedules", rules.rules_schedule),
    ("POST", "/rules/doors", rules.rules_door),
    ("GET", "/admin/accounts", accounts_list),
    ("POST", "/admin/accounts", account_add),
    ("POST", "/admin/accounts/{username}/delete", account_delete),
    ("POST", "/admin/accounts/{username}/role", account_role),
    ("POST", "/admin/accounts/{username}/password", account_password),
    ("GET", "/admin/credentials", credentials),
    ("GET", "/static/{digest}/{name}", static_file),
]
