"""JSON Schemas (draft 2020-12) of what the edge daemon publishes and accepts over MQTT:
`event` (<prefix>/<device>/event), `state` (<prefix>/<device>/state), `cmd-verify`
(<prefix>/<device>/cmd/verify), and the door's `door-event` and `door-state`
(<prefix>/<device>/door/<door>/event and /state). Shipped with the package for consumers to validate against;
the tests check every message they receive with them.

examples/ holds the canonical example messages, one per schema but state, and a second
door-event (the OSDP panel's link: door-event-panel); docs/events.md shows copies of them; the
tests check that they conform.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

NAMES = ("event", "state", "cmd-verify", "door-event", "door-state")
EXAMPLES = ("event", "cmd-verify", "door-event", "door-state", "door-event-panel")
# An example of one schema but its own: door-event-panel is a door-event (the OSDP panel's link).


@cache
def schema(name: str) -> dict:
    """The parsed schema `name` (one of NAMES)."""
    if name not in NAMES:
        raise KeyError(name)
    return json.loads(files(__package__).joinpath(f"{name}.schema.json").read_text("utf-8"))


@cache
def example(name: str) -> dict:
    """The parsed example message `name` (one of EXAMPLES), which conforms to schema(name)."""
    if name not in EXAMPLES:
        raise KeyError(name)
    return json.loads(files(__package__).joinpath("examples").joinpath(f"{name}.json").read_text("utf-8"))
