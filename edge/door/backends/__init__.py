"""The door's hardware backends behind `DoorIO` (edge/door/interface.py), chosen by `[door] backend`:

    none  no hardware: the state machine runs and reports (demo, tests, a site trying it out)
    gpio  a lock relay and the contact / exit / tamper inputs on the Pi's header (gpiozero)
    mqtt  a signed single-use command to an external controller, per lock change
    osdp  the gpio pins and a reader link to the site's panel (edge.door.backends.panel,
          edge.door.osdp; libosdp imported only when chosen)
    [door.wiegand] enabled: gpio or osdp with Wiegand out beside them (edge.door.backends.panel)

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
# (door event kind, its fields): what the panel said, for the door's event path
OnEvent = Callable[[str, dict[str, Any]], None]


def make_door_io(s: DoorSettings, *, send: Send | None = None, pin_factory: Any = None,
                 on_event: OnEvent | None = None) -> DoorIO:
    """The backend of `s.backend`; ConfigError when it cannot be built here. `send` carries the
    mqtt backend's commands; `pin_factory` overrides gpio's (tests pass a MockFactory);
    `on_event` takes the panel's events (osdp) as door events."""
    if s.backend == "none":
        from edge.door.backends.none import NoHardware

        return NoHardware(s.simulate_inputs or None)
    if s.backend == "mqtt":
        from edge.door.backends.mqtt import MqttDoor

        if send is None:
            raise ConfigError("[door] backend = \"mqtt\" needs [mqtt] enabled: its commands go to the broker")
        return MqttDoor.from_settings(s, send)
    if s.backend not in ("gpio", "osdp"):
        raise ConfigError(f"[door] backend = {s.backend!r} is not one of none, gpio, mqtt, osdp")
    from edge.door.backends.gpio import GpioDoor, pin_factory_named

    factory = pin_factory if pin_factory is not None else pin_factory_named(s.pin_factory)
    if s.backend == "gpio" and not s.wiegand.enabled:
        return GpioDoor.from_settings(s, pin_factory=factory)
    return _panel_door(s, factory, on_event)


def _panel_door(s: DoorSettings, factory: Any, on_event: OnEvent | None) -> DoorIO:
    """The local pins with the panel's links beside them (edge.door.backends.panel); every part
    built so far is closed again when a later one cannot be."""
    from edge.door.backends.gpio import GpioDoor
    from edge.door.backends.panel import PanelDoor
    from edge.door.interface import DoorIOError

    wiegand = None
    gpio = GpioDoor.from_settings(s, pin_factory=factory)
    try:
        if s.wiegand.enabled:
            from edge.door.wiegand import WiegandOut, open_driver

            try:
                wiegand = WiegandOut(s.wiegand, open_driver(s.wiegand, factory))
            except DoorIOError as exc:
                raise ConfigError(f"[door.wiegand] {exc}") from None
            except Exception as exc:  # a pin in use
                raise ConfigError(f"[door.wiegand] pins {s.wiegand.d0_pin}/{s.wiegand.d1_pin}: "
                                  f"{type(exc).__name__}: {exc}") from None
        if s.backend == "gpio":
            return PanelDoor.build(gpio, wiegand=wiegand)
        try:
            importlib.import_module("osdp")
        except ModuleNotFoundError:
            raise ConfigError("[door] backend = \"osdp\" needs libosdp's Python binding (the osdp package: "
                              "docs/osdp-wiegand.md)") from None
        try:
            return PanelDoor.build(gpio, s.osdp, wiegand, on_event=on_event)
        except DoorIOError as exc:  # no key and no install mode, a secrets file others can read
            raise ConfigError(f"[door.osdp] {exc}") from None
    except BaseException:
        if wiegand is not None:
            wiegand.close()
        gpio.close()
        raise
