"""Reading and parsing request bodies: capped while reading, JSON or multipart, one shape out.

Both encodings become `Params`: text fields, lists (JSON arrays, or multipart indexed parts
`name[0]`, `name[1]`, ... and `name[]`), and raw image bytes (multipart parts named `image`,
`images[i]`, `imageA`, `imageB`, or base64 strings under those names in JSON). Any other
multipart part is a text field even when it carries a filename (python-requests `files=`).
A multipart field sent more than once (`group_ids` twice, as Node's form-data does with arrays)
becomes the list of its values in order, never silently its last one; an indexed part sent twice
(`images[0]` twice) or a name sent both plain and indexed (`group_ids` beside `group_ids[0]`), or
a JSON key given twice, is refused with code 21: no value is ever dropped. JSON text with a lone
surrogate (`"\ud800"`, valid JSON but not Unicode) is refused with code 21.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

from edge.core import errors
from edge.core.errors import ApiError

IMAGE_FIELDS = frozenset({"image", "images", "imageA", "imageB"})
DECIMAL_FIELDS = frozenset({"timeout_s"})  # a claim's wait may be fractional; elsewhere 21
# Fields whose value is a list of flat objects (setcredentials): kept as list[dict] of scalars;
# edge.api.ops checks their content.
OBJECT_LIST_FIELDS = frozenset({"credentials"})
MAX_PARTS = 1000
MAX_INDEX = 999
# After the cap, keep reading (and discarding) up to this much so the client, still sending,
# gets the code-23 answer rather than a reset connection; beyond it, stop reading.
DRAIN_LIMIT = 16 * 1024 * 1024
_INDEXED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d*)\]$")


@dataclass
class Params:
    """The parsed body: values are str, list[str] (lists), or bytes / list[bytes] (images)."""

    values: dict[str, object] = field(default_factory=dict)
    encoding: str = "json"

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> object:
        return self.values.get(name)


async def read_capped(chunks: AsyncIterator[bytes], cap: int, declared: str | None,
                      timeout_s: float = 30.0) -> bytes:
    """The whole body, or ApiError 23 as soon as it exceeds `cap` bytes (memory stays bounded).

    A body that takes longer than `timeout_s` to arrive is abandoned with code 3, so a client
    trickling bytes cannot hold a worker forever.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s

    async def next_chunk() -> bytes | None:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(chunks.__anext__(), timeout=max(remaining, 0.001))
        except StopAsyncIteration:
            return None
        except (asyncio.TimeoutError, TimeoutError):
            raise ApiError(errors.BAD_REQUEST, f"request body not received within {timeout_s:g} s") from None

    if declared is not None:
        try:
            declared_len = int(declared)
        except ValueError:
            raise ApiError(errors.BAD_REQUEST, "bad Content-Length") from None
        if declared_len > DRAIN_LIMIT:
            raise ApiError(errors.BODY_TOO_LARGE, f"request body over {cap} bytes")
    parts: list[bytes] = []
    size = 0
    while (chunk := await next_chunk()) is not None:
        size += len(chunk)
        if size > cap:
            while size <= DRAIN_LIMIT and (more := await next_chunk()) is not None:
                size += len(more)
            raise ApiError(errors.BODY_TOO_LARGE, f"request body over {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse_body(body: bytes, content_type: str | None) -> Params:
    """Params from a JSON or multipart body; ApiError 3 (unparseable) or 21 (wrong shape)."""
    ctype, options = parse_options_header((content_type or "").encode("latin-1", "replace"))
    ctype = ctype.decode("latin-1").lower() if isinstance(ctype, bytes) else str(ctype).lower()
    if ctype == "multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise ApiError(errors.BAD_REQUEST, "multipart body without a boundary")
        return _from_parts(_split_multipart(body, boundary))
    if ctype in ("application/json", "text/json", "") or ctype.endswith("+json"):
        return _from_json(body)
    raise ApiError(errors.BAD_REQUEST,
                   f"unsupported Content-Type {ctype!r}: use application/json or multipart/form-data")


def _from_json(body: bytes) -> Params:
    try:
        # utf-8-sig: a body starting with a byte-order mark (some Windows clients) is JSON too
        data = json.loads(body.decode("utf-8-sig"), object_pairs_hook=_unique_keys)
    except ApiError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(errors.BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(errors.BAD_REQUEST, "JSON body must be an object")
    values: dict[str, object] = {}
    for name, value in data.items():
        _unicode("field name", name)
        if value is None:  # JSON null = not given (a caller's SDK may serialise unset fields so)
            continue
        if name in IMAGE_FIELDS:
            values[name] = _b64_images(name, value)
        elif name in DECIMAL_FIELDS and isinstance(value, float):
            values[name] = repr(value)
        elif name in OBJECT_LIST_FIELDS and isinstance(value, list):
            values[name] = [_flat_object(name, v) for v in value]
        elif isinstance(value, list):
            values[name] = [_loose(name, v) for v in value]
        else:
            values[name] = _loose(name, value)
    return Params(values, "json")


def _loose(name: str, value: object) -> object:
    """A JSON value as a field keeps it: text checked, an integer as its text (some SDKs send
    appid or mode as numbers), anything else (true, 0.8, an object) as it is, refused only by an
    endpoint that reads that field ("must be a string"): SDKs send fields of their own (a
    `need_detail: true`, a `threshold: 0.8`), which the document says to ignore, and each such
    request was refused with 21 whatever the endpoint."""
    if isinstance(value, str):
        return _unicode(name, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, or 21 for a key given twice (`json` would keep the last one silently)."""
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ApiError(errors.INVALID_PARAMETER, f"{_unicode('field name', key)[:100]} sent more than once")
        out[key] = value
    return out


def _scalar(name: str, value: object) -> str:
    # Some SDKs send appid or mode as JSON numbers; accept integers, refuse other shapes.
    if isinstance(value, str):
        return _unicode(name, value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a string")


def _flat_object(name: str, value: object) -> object:
    """An object of string keys and scalar values (kept as it is), or a scalar as _scalar has it."""
    if not isinstance(value, dict):
        return _scalar(name, value)
    for key, item in value.items():
        _unicode("field name", key)
        if isinstance(item, (dict, list, float)):
            raise ApiError(errors.INVALID_PARAMETER, f"{name}: {key[:50]} must be a string or an integer")
        if isinstance(item, str):
            _unicode(name, item)
    return value


def _unicode(name: str, value: str) -> str:
    """`value` if it is valid Unicode; a lone surrogate would break every later encode (-> 21)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        name = name.encode("utf-8", "replace").decode("utf-8")
        raise ApiError(errors.INVALID_PARAMETER, f"{name} is not valid Unicode (lone surrogate)") from None
    return value


def _b64_images(name: str, value: object) -> bytes | list[bytes]:
    if isinstance(value, list):
        return [_b64_image(name, v) for v in value]
    return _b64_image(name, value)


def _b64_image(name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a base64 string in JSON")
    text = value.strip()
    if text.startswith("data:") and "," in text:  # data: URL form
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(errors.IMAGE_DECODE_FAILED, f"{name} is not valid base64") from None


def _split_multipart(body: bytes, boundary: bytes) -> list[tuple[str, bytes]]:
    """(name, raw bytes) of every part, in order."""
    parts: list[tuple[str, bytes]] = []
    state: dict = {"name": None, "data": [], "hfield": b"", "hvalue": b"", "headers": {}}

    def on_part_begin() -> None:
        state.update(name=None, data=[], headers={})

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["hfield"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["hvalue"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["hfield"].lower()] = state["hvalue"]
        state["hfield"] = b""
        state["hvalue"] = b""

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition")
        if disposition is None:
            raise ApiError(errors.BAD_REQUEST, "multipart part without Content-Disposition")
        _, opts = parse_options_header(disposition)
        name = opts.get(b"name")
        if name is None:
            raise ApiError(errors.BAD_REQUEST, "multipart part without a name")
        state["name"] = name.decode("utf-8", "replace")

    def on_part_end() -> None:
        if len(parts) >= MAX_PARTS:
            raise ApiError(errors.INVALID_PARAMETER, f"more than {MAX_PARTS} parts")
        parts.append((state["name"], b"".join(state["data"])))

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    try:
        parser.write(body)
        parser.finalize()
    except ApiError:
        raise
    except Exception as exc:  # python-multipart raises several types on malformed input
        raise ApiError(errors.BAD_REQUEST, f"malformed multipart body: {type(exc).__name__}") from None
    return parts


def _from_parts(parts: list[tuple[str, bytes]]) -> Params:
    values: dict[str, object] = {}
    indexed: dict[str, dict[int, object]] = {}
    repeated: set[str] = set()
    for name, data in parts:
        m = _INDEXED.match(name)
        base = m.group(1) if m else name
        value: object = data if base in IMAGE_FIELDS else _text(name, data)
        if m:
            slots = indexed.setdefault(base, {})
            # `name[]` appends after the highest index so far; an index sent twice (`images[0]`
            # twice, or `group_ids[]` then `group_ids[0]`) has no one meaning: refused, never
            # one of its values dropped
            index = int(m.group(2)) if m.group(2) else max(slots, default=-1) + 1
            if index > MAX_INDEX:
                raise ApiError(errors.INVALID_PARAMETER, f"{name}: index too large")
            if index in slots:
                raise ApiError(errors.INVALID_PARAMETER, f"{base}[{index}] sent more than once")
            slots[index] = value
        elif name in values:  # repeated: collect in order
            previous = values[name]
            values[name] = [*previous, value] if name in repeated else [previous, value]
            repeated.add(name)
        else:
            values[name] = value
    for name in repeated:  # the same text sent twice (an SDK adding appid to every request) is it once
        sent = values[name]
        if isinstance(sent, list) and all(isinstance(v, str) and v == sent[0] for v in sent):
            values[name] = sent[0]
    for base, slots in indexed.items():
        if base in values:  # `group_ids` beside `group_ids[0]`: which list is meant?
            raise ApiError(errors.INVALID_PARAMETER, f"{base} sent both as {base} and as {base}[i]")
        values[base] = [slots[i] for i in sorted(slots)]
    return Params(values, "multipart")


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(errors.INVALID_PARAMETER, f"{name} is not UTF-8 text") from None
