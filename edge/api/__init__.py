"""The face API over HTTP (the vendor's "face recognition 1.0" API, to the letter so that its
SDKs work unchanged), for both roles.

    from edge.api import create_app, FaceService, ApiLimits
    app = create_app(service, credentials, limits=ApiLimits(...), fetch_policy=FetchPolicy(...))

`service` is a `FaceService` subclass (one method per operation, parsed arguments; the hub's is
`edge.hub.service.HubService`, the edge's `edge.daemon.service.EdgeService`). Names are
imported lazily so that CLI start-up does not pay for Starlette.

Also here, because both roles need them: url inputs fetched server-side (urlfetch) and the
signed client of the face API (client: the edge's cloud fallback, sync and pack pull, the tools'
enrolment). The package imports edge.core only; edge.hub and edge.daemon build on it
(pyproject.toml's import contracts check it).
"""

from __future__ import annotations

_EXPORTS = {
    "create_app": "edge.api.app",
    "envelope": "edge.api.app",
    "ApiLimits": "edge.api.ops",
    "FaceService": "edge.api.service",
    "ApiErrorWithData": "edge.api.service",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edge.api' has no attribute {name!r}")
