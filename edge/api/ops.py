"""One function per endpoint: validate the parsed body, resolve images, call the service.

Argument rules (the vendor API's): a missing or empty required field is -1301; identifiers
(person_id, group_id, face_id) with a space, slash, tab, CR or newline are -1313 and longer
than `id_bytes` UTF-8 bytes -1304; a field of the wrong shape is 21; no image at all or an
empty one is -1300. When both an image and a url are given, the url wins.
"""

from __future__ import annotations

import asyncio
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edge.api.body import Params
from edge.api.service import FaceService
from edge.api.urlfetch import FetchGate, FetchPolicy
from edge.core import errors, syncwire
from edge.core.access_chain import decode_cursor
from edge.core.credentials import MAX_CREDENTIALS, Credential, CredentialError
from edge.core.domain import ID_FORBIDDEN
from edge.core.errors import MAX_BODY_BYTES, ApiError
from edge.core.settings import Section

# The appid of the request being served (set by the app before the handler runs): url
# downloads are bounded per appid.
current_appid: ContextVar[str] = ContextVar("current_appid", default="")
# The edge the request's key is bound to ([[credentials]] edge_id on the hub), "" for a key of
# the whole appid. A door's Pi hangs by the door: whoever takes its card has its hub key, so that
# key serves only what an edge does (sync, the cloud fallback, its own log, the model packs) and
# speaks for that one edge; never enrols, deletes, changes rules or lifts lockouts.
current_edge_key: ContextVar[str] = ContextVar("current_edge_key", default="")
# The groups that key is bound to ([[credentials]] groups), () for every group: it syncs those
# groups only and the cloud fallback verifies their persons only.
current_edge_groups: ContextVar[tuple[str, ...]] = ContextVar("current_edge_groups", default=())
EDGE_OPS = frozenset({"sync", "verify", "uploadlog", "packs", "packfile"})

MAX_LIST = 1000
# urls[] of one addface: fetched in parallel, so the request lasts at most one download timeout
MAX_URLS = 20  # images (or urls) of one addface: a person holds at most 20 faces


class ApiLimits(Section):
    """Limits of the HTTP layer (part of the hub's [limits]; the count limits live in the store)."""

    model_config = ConfigDict(frozen=True)

    body_bytes: int = Field(MAX_BODY_BYTES, ge=1024,
                            description="Largest request body in bytes, refused while reading (code 23).")
    body_timeout_s: float = Field(30.0, gt=0,
                                  description="A request body slower than this to arrive is abandoned (code 3).")
    rate_per_s: float = Field(50.0, ge=0,
                              description="Sustained requests per second per appid (code 15 beyond); 0 = unlimited.")
    burst: int = Field(100, ge=1, description="Requests an appid may send at once before the rate applies.")
    id_bytes: int = Field(128, ge=1, description="Longest person_id / group_id / face_id in UTF-8 bytes (code -1304).")
    text_bytes: int = Field(1024, ge=1, description="Longest person_name / tag in UTF-8 bytes (code -1304).")


@dataclass(frozen=True)
class Ctx:
    service: FaceService
    limits: ApiLimits
    fetch_policy: FetchPolicy
    fetch_gate: FetchGate = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fetch_gate", FetchGate(self.fetch_policy))


# --- field helpers ----------------------------------------------------------------------------
def text(p: Params, name: str, ctx: Ctx, *, required: bool = False) -> str | None:
    value = p.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(errors.PARAMETER_EMPTY, f"{name} is required")
        return None if value is None else ""
    if not isinstance(value, str):
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a string")
    if "\x00" in value:  # PostgreSQL refuses it in text: the hub then said its storage failed
        raise ApiError(errors.ILLEGAL_CHARACTERS, f"{name} contains a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: valid JSON text, no UTF-8 to store
        raise ApiError(errors.ILLEGAL_CHARACTERS, f"{name} is not UTF-8 text (a lone surrogate)") from None
    if size > ctx.limits.text_bytes:
        raise ApiError(errors.PARAMETER_TOO_LONG, f"{name} longer than {ctx.limits.text_bytes} bytes")
    return value


def ident_value(name: str, value: object, ctx: Ctx) -> str:
    return check_ident(name, value, ctx.limits.id_bytes)


def check_ident(name: str, value: object, max_bytes: int) -> str:
    """The id rules (also applied to MQTT commands, which have no Ctx)."""
    if value is None or value == "":
        raise ApiError(errors.PARAMETER_EMPTY, f"{name} is required")
    if not isinstance(value, str):
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a string")
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:  # a lone surrogate is refused below
        raise ApiError(errors.PARAMETER_TOO_LONG, f"{name} longer than {max_bytes} bytes")
    if any(ch in ID_FORBIDDEN for ch in value) or not value.isprintable():
        raise ApiError(errors.ILLEGAL_CHARACTERS, f"{name} contains a space, slash, tab, newline or control character")
    return value


def ident(p: Params, name: str, ctx: Ctx) -> str:
    return ident_value(name, p.get(name), ctx)


def ident_list(p: Params, name: str, ctx: Ctx, *, required: bool = True) -> list[str]:
    value = p.get(name)
    if value is None or value == "" or value == []:
        if required:
            raise ApiError(errors.PARAMETER_EMPTY, f"{name} is required")
        return []
    if isinstance(value, str):  # one plain field instead of an array: be lenient
        value = [value]
    if not isinstance(value, list):
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be an array")
    if len(value) > MAX_LIST:
        raise ApiError(errors.INVALID_PARAMETER, f"{name}: more than {MAX_LIST} entries")
    return list(dict.fromkeys(ident_value(f"{name}[{i}]", v, ctx) for i, v in enumerate(value)))


INTEGER = re.compile(r"-?[0-9]+")


def integer(p: Params, name: str, default: int, lo: int, hi: int) -> int:
    value = p.get(name)
    if value is None or value == "":
        return default
    # ASCII digits after at most one "-" ("²" is a digit int() refuses; "--5" one it fails on)
    if not isinstance(value, str) or not INTEGER.fullmatch(value.strip()) or len(value) > 20:
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be an integer")
    number = int(value)
    if not lo <= number <= hi:
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be within {lo}..{hi}")
    return number


async def _fetch(url: object, name: str, ctx: Ctx) -> bytes:
    if current_edge_key.get():
        # A door sends the image's bytes; a url from its key would draw on the appid's download
        # slots (8), which a key taken off a door could hold with a slow server of its own.
        raise ApiError(errors.EDGE_KEY_REFUSED, f"{name}: a key bound to an edge sends the image, not a url")
    if not isinstance(url, str):
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a string")
    return await ctx.fetch_gate.fetch(current_appid.get(), url)


async def image(p: Params, ctx: Ctx, image_name: str = "image", url_name: str = "url") -> bytes:
    url = p.get(url_name)
    if url not in (None, ""):
        return await _fetch(url, url_name, ctx)
    data = p.get(image_name)
    if data is None:
        raise ApiError(errors.IMAGE_EMPTY, f"{image_name} or {url_name} is required")
    if isinstance(data, list):  # images[0] sent where one image is expected
        if len(data) != 1:
            raise ApiError(errors.INVALID_PARAMETER, f"{image_name} must be one image")
        data = data[0]
    if not isinstance(data, bytes):
        raise ApiError(errors.INVALID_PARAMETER, f"{image_name} must be an image")
    if not data:
        raise ApiError(errors.IMAGE_EMPTY, f"{image_name} is empty")
    return data


async def images(p: Params, ctx: Ctx) -> list[bytes | ApiError]:
    urls = p.get("urls")
    if urls not in (None, "", []):
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or len(urls) > MAX_URLS:
            raise ApiError(errors.INVALID_PARAMETER, f"urls must be an array of at most {MAX_URLS}")

        async def one(i: int, url: object) -> bytes | ApiError:
            try:
                return await _fetch(url, f"urls[{i}]", ctx)
            except ApiError as exc:
                return exc

        return list(await asyncio.gather(*(one(i, u) for i, u in enumerate(urls))))
    data = p.get("images")
    if data is None:
        data = p.get("image")
    if data is None or data == []:
        raise ApiError(errors.IMAGE_EMPTY, "images or urls is required")
    if isinstance(data, bytes):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(d, bytes) for d in data):
        raise ApiError(errors.INVALID_PARAMETER, "images must be image parts")
    if len(data) > MAX_URLS:
        # as many as urls: JSON took any number (30,838 tiny images that decode large fit one
        # body, each a quarter of a second of detection: hours of CPU for one request)
        raise ApiError(errors.INVALID_PARAMETER, f"images must be at most {MAX_URLS}")
    return [d if d else ApiError(errors.IMAGE_EMPTY, f"images[{i}] is empty") for i, d in enumerate(data)]


def call(fn: Callable, *args, **kwargs) -> Awaitable[dict]:
    return run_in_threadpool(fn, *args, **kwargs)


# --- endpoints ----------------------------------------------------------------------------------
async def newperson(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    group_ids = ident_list(p, "group_ids", ctx)
    name = text(p, "person_name", ctx) or ""
    tag = text(p, "tag", ctx) or ""
    img = await image(p, ctx)
    return await call(ctx.service.newperson, appid, person_id, group_ids, img, name, tag)


async def delperson(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.delperson, appid, ident(p, "person_id", ctx))


async def addface(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    tag = text(p, "tag", ctx) or ""
    imgs = await images(p, ctx)
    return await call(ctx.service.addface, appid, person_id, imgs, tag)


async def delface(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    return await call(ctx.service.delface, appid, person_id, ident_list(p, "face_ids", ctx))


async def setinfo(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    return await call(ctx.service.setinfo, appid, person_id, text(p, "person_name", ctx), text(p, "tag", ctx))


def credential_list(p: Params, name: str) -> list[Credential]:
    """A person's credentials: [{format, facility, number}] (raw: {format, bits, number}); 21
    naming the entry and the field, never the number."""
    value = p.get(name)
    if value is None:
        raise ApiError(errors.PARAMETER_EMPTY, f"{name} is required ([] removes them)")
    if not isinstance(value, list):
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be an array of objects")
    if len(value) > MAX_CREDENTIALS:
        raise ApiError(errors.INVALID_PARAMETER, f"{name}: at most {MAX_CREDENTIALS} per person")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(Credential.from_json(item))
        except CredentialError as exc:
            raise ApiError(errors.INVALID_PARAMETER, f"{name}[{i}]: {exc}") from None
    return out


async def setcredentials(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    return await call(ctx.service.setcredentials, appid, person_id, credential_list(p, "credentials"))


async def getcredentials(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getcredentials, appid, ident(p, "person_id", ctx))


MAX_RULES_BYTES = 262144  # a site's rule document is a few kB


async def setrules(appid: str, p: Params, ctx: Ctx) -> dict:
    """`rules`: the rule document as JSON text (docs/access.md); `version`: the version it
    replaces, optional (given: -1508 when another write came first)."""
    document = p.get("rules")
    if document is None or document == "":
        raise ApiError(errors.PARAMETER_EMPTY, "rules is required")
    if not isinstance(document, str):
        raise ApiError(errors.INVALID_PARAMETER, "rules must be the rule document as JSON text")
    expected = None if p.get("version") in (None, "") else integer(p, "version", 0, 0, 2**31)
    return await call(ctx.service.setrules, appid, document, expected)


async def getrules(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getrules, appid)


MAX_UPLOAD_BYTES = 1_048_576  # one batch of access log records (at most 1000)


def own_edge(edge_id: str) -> str:
    """`edge_id`, unless the request's key is bound to another edge (EDGE_KEY_REFUSED): a door's
    key uploads and reports for that door only, so a stolen one cannot write another door's log
    or its claim refusals (edge.hub.claim_refusals)."""
    bound = current_edge_key.get()
    if bound and edge_id != bound:
        raise ApiError(errors.EDGE_KEY_REFUSED, f"this key belongs to edge {bound}: it cannot speak for {edge_id}")
    return edge_id


async def uploadlog(appid: str, p: Params, ctx: Ctx) -> dict:
    """`edge_id`: the uploading edge; `records`: a batch of its access log as JSON text;
    `crops` (optional): the records' sealed face crops as JSON text."""
    edge_id = own_edge(ident(p, "edge_id", ctx))
    records = p.get("records")
    if records is None or records == "":
        raise ApiError(errors.PARAMETER_EMPTY, "records is required")
    if not isinstance(records, str):
        raise ApiError(errors.INVALID_PARAMETER, "records must be the batch as JSON text")
    crops = p.get("crops")
    if crops is not None and not isinstance(crops, str):
        raise ApiError(errors.INVALID_PARAMETER, "crops must be JSON text")
    return await call(ctx.service.uploadlog, appid, edge_id, records, crops or None)


SEARCH_FILTERS = ("person_id", "door", "edge_id", "decision", "outcome", "reason", "kind")


async def searchlog(appid: str, p: Params, ctx: Ctx) -> dict:
    """Filters (each optional, all must match), `since`/`until` (epoch seconds), `limit`
    (1..1000, default 100) and `after` (the `next` of the page before)."""
    filters = {name: ident(p, name, ctx) for name in SEARCH_FILTERS if p.get(name) not in (None, "")}
    since = None if p.get("since") in (None, "") else integer(p, "since", 0, 0, 2**40)
    until = None if p.get("until") in (None, "") else integer(p, "until", 0, 0, 2**40)
    after = text(p, "after", ctx)
    try:
        decode_cursor(after)
    except ValueError as exc:
        raise ApiError(errors.INVALID_PARAMETER, str(exc)) from None
    return await call(ctx.service.searchlog, appid, filters, since, until, after, integer(p, "limit", 100, 1, 1000))


async def getinfo(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getinfo, appid, ident(p, "person_id", ctx))


async def getgroupids(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getgroupids, appid)


async def getpersonids(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getpersonids, appid, ident(p, "group_id", ctx))


async def getfaceids(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getfaceids, appid, ident(p, "person_id", ctx))


async def getfaceinfo(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.getfaceinfo, appid, ident(p, "face_id", ctx))


async def addgroupids(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    return await call(ctx.service.addgroupids, appid, person_id, ident_list(p, "group_ids", ctx))


async def delgroupids(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    return await call(ctx.service.delgroupids, appid, person_id, ident_list(p, "group_ids", ctx))


async def verify(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    groups = current_edge_groups.get()
    if groups:  # a door's key asks about the people of its groups only; the others do not exist to it
        info = await call(ctx.service.getinfo, appid, person_id)  # PERSON_UNKNOWN for no one
        if not set(info.get("group_ids") or ()) & set(groups):  # the store's words: nothing told apart
            raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")
    return await call(ctx.service.verify, appid, person_id, await image(p, ctx))


async def identify(appid: str, p: Params, ctx: Ctx) -> dict:
    group_ids = ident_list(p, "group_ids", ctx, required=False)
    if p.get("group_id") not in (None, ""):
        group_ids = list(dict.fromkeys([ident(p, "group_id", ctx), *group_ids]))
    if not group_ids:
        raise ApiError(errors.PARAMETER_EMPTY, "group_id or group_ids is required")
    return await call(ctx.service.identify, appid, group_ids, await image(p, ctx))


async def compare(appid: str, p: Params, ctx: Ctx) -> dict:
    a = await image(p, ctx, "imageA", "urlA")
    b = await image(p, ctx, "imageB", "urlB")
    return await call(ctx.service.compare, appid, a, b)


async def detect(appid: str, p: Params, ctx: Ctx) -> dict:
    mode = integer(p, "mode", 0, 0, 1)
    return await call(ctx.service.detect, appid, await image(p, ctx), mode)


async def sync(appid: str, p: Params, ctx: Ctx) -> dict:
    since = integer(p, "since", 0, 0, 2**62)
    limit = integer(p, "limit", 500, 1, 1000)
    fingerprint = text(p, "fingerprint", ctx, required=True)
    group_ids = ident_list(p, "group_ids", ctx, required=False)
    allowed = current_edge_groups.get()
    if allowed and (not group_ids or not set(group_ids) <= set(allowed)):
        raise ApiError(errors.EDGE_KEY_REFUSED, f"this key syncs the groups {', '.join(allowed)} only: set "
                       "[identify] groups on the edge to them (asked: " + (", ".join(group_ids) or "every group") + ")")
    with_rules = bool(integer(p, "rules", 0, 0, 1))  # an edge that reads rules changes (edge.core.syncwire)
    # a door on a pack no longer served, asking for the persons changed after its last full list
    after = p.get(syncwire.VANISHED_AFTER)
    vanished_after = "" if after in (None, "") else ident_value(syncwire.VANISHED_AFTER, after, ctx)
    if p.get("edge_id") in (None, ""):
        return await call(ctx.service.sync, appid, since, fingerprint, group_ids, limit, with_rules,
                          vanished_after=vanished_after)
    edge_id = own_edge(ident(p, "edge_id", ctx))  # an edge reporting what it runs (edge.core.syncwire)
    try:
        report = {"edge_id": edge_id, **syncwire.check_report(p),
                  syncwire.REPORT_KEY: syncwire.KEY_EDGE if current_edge_key.get() else syncwire.KEY_APPID}
    except ValueError as exc:
        raise ApiError(errors.INVALID_PARAMETER, str(exc)) from None
    # the claims other doors refused since then, for the edge's lockout (0 or absent: not asked)
    refusals_since = integer(p, syncwire.REFUSALS_SINCE, 0, 0, 2**40) or None
    return await call(ctx.service.sync, appid, since, fingerprint, group_ids, limit, with_rules, report,
                      refusals_since, bool(allowed), vanished_after=vanished_after)


async def claim(appid: str, p: Params, ctx: Ctx) -> dict:
    person_id = ident(p, "person_id", ctx)
    return await call(ctx.service.claim, appid, person_id, p.get("timeout_s"), text(p, "request_id", ctx))


async def packs(appid: str, p: Params, ctx: Ctx) -> dict:
    return await call(ctx.service.packs, appid)


async def packfile(appid: str, p: Params, ctx: Ctx) -> dict:
    # ident(): no slash, backslash, space or control character reaches the service
    pack, name = ident(p, "pack", ctx), ident(p, "name", ctx)
    return await call(ctx.service.packfile, appid, pack, name, integer(p, "offset", 0, 0, 2**40))


async def liftclaims(appid: str, p: Params, ctx: Ctx) -> dict:
    # a signed request of the appid (its key holder); the console names its account instead
    return await call(ctx.service.liftclaims, appid, ident(p, "person_id", ctx), "api")


OPS: dict[str, Callable[[str, Params, Ctx], Awaitable[dict]]] = {
    "newperson": newperson, "delperson": delperson, "addface": addface, "delface": delface,
    "setinfo": setinfo, "getinfo": getinfo, "getgroupids": getgroupids,
    "getpersonids": getpersonids, "getfaceids": getfaceids, "getfaceinfo": getfaceinfo,
    "addgroupids": addgroupids, "delgroupids": delgroupids, "verify": verify,
    "identify": identify, "compare": compare, "detect": detect, "sync": sync, "claim": claim,
    "packs": packs, "packfile": packfile, "setcredentials": setcredentials, "getcredentials": getcredentials,
    "setrules": setrules, "getrules": getrules, "uploadlog": uploadlog, "searchlog": searchlog,
    "liftclaims": liftclaims,
}
# Every operation is POST /face/<op> but these, which are the edge's own (not the cloud API's).
AREA = {"claim": "edge"}
# Bodies without images: capped far below an upload, and not waited for as long.
SMALL_BODY = {"claim": (4096, 10.0), "packs": (4096, 10.0), "packfile": (4096, 10.0),  # bytes, seconds
              "setcredentials": (16384, 10.0), "getcredentials": (4096, 10.0),
              "setrules": (MAX_RULES_BYTES + 4096, 10.0), "getrules": (4096, 10.0),
              "uploadlog": (MAX_UPLOAD_BYTES, 30.0), "searchlog": (4096, 10.0), "liftclaims": (4096, 10.0)}
