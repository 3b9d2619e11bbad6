"""Logging of the long-running roles (the edge daemon, the hub): one format on stderr (the
journal), and no secret in what the HTTP client logs.

httpx logs every request's url at INFO, query and userinfo included: the hub's url inputs are
often presigned (`?X-Amz-Signature=...`, `?sig=...`, `?token=...`), good to whoever reads the
journal until they expire, and the edge's hub url may carry a userinfo. Its urls are logged
without query and userinfo at any level, and its lines only at debug (one a hub request doubled
a busy door's journal).
"""

from __future__ import annotations

import logging
import sys

from edge.core.redact import url_without_password

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=FORMAT)
    http = logging.getLogger("httpx")
    if _urls_cut not in http.filters:
        http.addFilter(_urls_cut)
    if logging.getLogger().level > logging.DEBUG:
        http.setLevel(logging.WARNING)


def url_without_query(url: str) -> str:
    """The url without its query and fragment, and its userinfo replaced by `***@`."""
    return url_without_password(url.split("?", 1)[0].split("#", 1)[0])


def _urls_cut(record: logging.LogRecord) -> bool:
    """A log record's url arguments without query and userinfo (httpx passes its URL object)."""
    if isinstance(record.args, tuple):
        record.args = tuple(url_without_query(str(a)) if "://" in str(a) else a for a in record.args)
    return True
