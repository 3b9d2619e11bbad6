"""The door's hardware backends behind `DoorIO` (edge/door/interface.py), chosen by `[door] backend`:

    none  no hardware: the state machine runs and reports (demo, tests, a site trying it out)
    gpio  a lock relay and the contact / exit / tamper inputs on the Pi's header (gpiozero)
    mqtt  a signed single-use command to an external controller, per lock change
    osdp  a reader link to the site's panel (edge.door.osdp, imported only when chosen)

`make_door_io` builds the chosen one; each backend module imports its library only when built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from edge.core.settings import ConfigError

if TYPE_CHECKING:
    from edge.door.interface import DoorIO
    from edge.door.settings import DoorSettings

# (leaf under <prefix>/<device>/, payload) -> whether the broker took it now
Send = Callable[[str, bytes], bool]


def make_door_io(s: DoorSettings, *, send: Send | None = None, pin_factory: Any = None) -> DoorIO:
    """The backend of `s.backend`; ConfigError when it cannot be built here. `send` carries the
    mqtt backend's commands; `pin_factory` overrides gpio's (tests pass a MockFactory)."""
    if s.backend == "none":
        from edge.door.backends.none import NoHardware

        return NoHardware(s.simulate_inputs or None)
    if s.backend == "gpio":
        from edge.door.backends.gpio import GpioDoor

        return GpioDoor.from_settings(s, pin_factory=pin_factory)
    if s.backend == "mqtt":
        from edge.door.backends.mqtt import MqttDoor

        if send is None:
            raise ConfigError("[door] backend = \"mqtt\" needs [mqtt] enabled: its commands go to the broker")
        return MqttDoor.from_settings(s, send)
    if s.backend == "osdp":
        try:
            osdp = importlib.import_module("edge.door.osdp")
        except ModuleNotFoundError as exc:
            if exc.name not in ("edge.door.osdp", "osdp"):
                raise
            raise ConfigError(f"[door] backend = \"osdp\" is not available in this build ({exc.name} "
                              "is missing): docs/door.md#osdp-and-wiegand") from None
        factory = getattr(osdp, "make_door_io", None)
        if factory is None:
            raise ConfigError("[door] backend = \"osdp\": edge.door.osdp has no make_door_io(settings)")
        return factory(s)  # type: ignore[no-any-return]
    raise ConfigError(f"[door] backend = {s.backend!r} is not one of none, gpio, mqtt, osdp")
