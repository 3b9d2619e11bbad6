"""Credentials cut out of URLs before they are shown: logs, /health, events, error messages.

Both roles show URLs that may carry secrets: the edge its camera source (RTSP and HTTP cameras
take `user:password@` or `?user=...&password=...`), the hub its PostgreSQL storage url. One rule
for both, so a form fixed for one is fixed for the other:
- the userinfo, `scheme://user:password@host`: everything from `://` to the LAST `@` of the url,
  so a password holding `@` (or `/`, `?`, `#`, which cameras accept unencoded) is cut whole (a
  url with an `@` in its path loses its host too: hiding too much is the safe side);
- a query or path parameter whose name says credential (`?user=admin&password=...`, Dahua's
  `/user=admin&password=...&channel=1`, `token`, `key`, `auth`, ...; any case): its value.
"""

from __future__ import annotations

import re

# A parameter whose name says it holds a credential; its value goes, whatever it contains. After
# `?`, `&`, `;` or `/`: some cameras take `/user=admin&password=...&channel=1` in the path.
_CREDENTIAL_PARAM = re.compile(
    r"(?i)(?<=[?&;/])([a-z0-9_.-]*(?:user|login|pass|pwd|pw|token|key|secret|auth|sig|cred|session)"
    r"[a-z0-9_.-]*=)[^&;\s'\"<>]*")
# The userinfo runs to the LAST `@` of the url: a password may itself hold `@`, `/`, `?` or `#`.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"<>]*@")


def without_password(text: str) -> str:
    """`text` with every url's userinfo replaced by `***@` and every credential-like parameter's
    value by `***` (query first: a value holding `@` must not pass for a userinfo)."""
    return _USERINFO.sub(r"\1***@", _CREDENTIAL_PARAM.sub(r"\1***", text))


# A url given alone (a camera source as configured): its userinfo runs to the last `@`, whatever
# it holds. Inside a message, quotes and spaces end a url; alone, a password may hold them
# (`rtsp://admin:pa'ss@cam` was shown whole).
_WHOLE_USERINFO = re.compile(r"(?s)^(.*?://).*@")  # from the first `://` (after `opencv:`) to the last `@`


def url_without_password(url: str) -> str:
    """`without_password` of a text that is one url as a whole (a configured source)."""
    # the query first, as without_password does: a value holding `@` must not pass for a userinfo
    return _WHOLE_USERINFO.sub(r"\1***@", _CREDENTIAL_PARAM.sub(r"\1***", url))


# The parameters that hold a secret (not a name, a path or a mode: `user=`, `sslkey=/path`,
# `passfile=`, `target_session_attrs=` do not): what makes a file holding the url one to keep
# private. After `?`, `&`, `;` or `/` (Dahua cameras: `/user=admin&password=...`); any case.
_SECRET_PARAMS = frozenset({
    "password", "passwd", "pass", "pwd", "pw", "sslpassword", "token", "access_token", "auth_token", "apikey",
    "api_key", "key", "secret", "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential", "auth", "authorization", "session",
    "sessionid"})
_PARAM = re.compile(r"(?<=[?&;/])([A-Za-z0-9_.-]+)=([^&;/\s]*)")


def holds_password(url: str) -> bool:
    """Whether a configured url carries a secret: a password in its userinfo (`user:pw@`; one
    holding `/` too, which cameras accept unencoded) or a secret's parameter (`?password=...`,
    `?sig=...`). A user name alone is none, nor a port, nor an `@` in the path."""
    _, scheme, rest = url.partition("://")
    if not scheme:  # no url (`files:` globs, `picamera2`, a device): a folder named key=... is none
        return False
    if "@" in rest:
        authority = re.sub(r"\[[^\]]*\]", "", rest.split("/", 1)[0])  # an IPv6 host's colons are none
        if "@" in authority:
            if authority.rsplit("@", 1)[0].partition(":")[2]:  # user:password@ (user:@ is no password)
                return True
        # the `@` comes after a `/`: a path's (`/live@main`), or a password's `/` (`admin:p/ss@cam`)
        elif ":" in authority and authority.rsplit(":", 1)[1] and not authority.rsplit(":", 1)[1].isdigit():
            return True
    return any(name.lower() in _SECRET_PARAMS and value for name, value in _PARAM.findall(url))
