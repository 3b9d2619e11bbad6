"""The gpio door with the site's panel beside it (`[door] backend = "osdp"`, or `"gpio"` with
`[door.wiegand] enabled`): one DoorIO made of the local pins and the panel's links.

    local pins (edge.door.backends.gpio)   the lock relay, contact / exit / tamper inputs
    OSDP reader (edge.door.osdp)           card reads to the panel, its commands back
    Wiegand out (edge.door.wiegand)        card reads to the panel on two more pins

    grant ─► relay = "local": the local relay (controller) and the card read (announce_grant)
             relay = "panel": the card read only; the panel's output command comes back as a
                              PANEL_RELAY input and the controller moves the local relay
    contact / exit / tamper ─► the controller, and the panel (OsdpReader.report_input)
    the reader's events (link, LED, buzzer, text, keyset) ─► door events (`on_event`)

Only the local relay ever moves the lock: Wiegand and the reader carry card reads, never a second
relay. With relay = "panel" a panel link that is not up (silent, no secure channel) locks the
door at once: the panel cannot hold it open from where it no longer speaks.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from edge.door.interface import DoorInput, DoorIOError, GrantNotice, InputKind
from edge.door.osdp import RESETS_ALARM, RESETS_WINDOW_S

if TYPE_CHECKING:
    from edge.door.backends import OnEvent
    from edge.door.backends.gpio import GpioDoor
    from edge.door.osdp import OsdpReader
    from edge.door.wiegand import WiegandOut

log = logging.getLogger("edge.door")


_PANEL_COMMANDS = ("panel_led", "panel_buzzer", "panel_text")
_COMMAND_KEYS_MAX = 12
_TEXT_MAX = 32  # an OSDP reader's display line; a longer string is cut


def panel_command_fields(detail: dict[str, Any]) -> dict[str, Any]:
    """A panel command as a door event shows it: numbers, booleans and short printable strings
    only (what comes off the wire is the panel's, checked here before it is published)."""
    out: dict[str, Any] = {}
    for key, value in list(detail.items())[:_COMMAND_KEYS_MAX]:
        if not isinstance(key, str) or not key.isidentifier() or len(key) > 32:
            continue
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int):  # libosdp's enums are ints
            out[key] = int(value)
        elif isinstance(value, str):
            out[key] = "".join(ch for ch in value[:_TEXT_MAX] if ch.isprintable())
    return out


class PanelDoor:
    """DoorIO: the local pins, with an OSDP reader and/or Wiegand out to the site's panel."""

    def __init__(self, gpio: GpioDoor, *, reader: OsdpReader | None = None, wiegand: WiegandOut | None = None,
                 relay_by_panel: bool = False, on_event: OnEvent | None = None):
        self.gpio, self.reader, self.wiegand = gpio, reader, wiegand
        self.name = "osdp" if reader is not None else "gpio"
        # The controller reads it: grants go to the panel, its PANEL_RELAY input moves the relay.
        self.relay_by_panel = relay_by_panel
        self._on_event = on_event or (lambda kind, fields: None)
        self._on_input: Callable[[DoorInput], None] = lambda _: None
        self.link = "offline"  # the reader's link, as its last `link` event said

    @classmethod
    def build(cls, gpio: GpioDoor, reader_settings: Any = None, wiegand: WiegandOut | None = None, *,
              on_event: OnEvent | None = None) -> PanelDoor:
        """`reader_settings` (OsdpSettings) adds the OSDP reader, its events through this door."""
        if reader_settings is None:
            return cls(gpio, wiegand=wiegand, on_event=on_event)
        from edge.door.osdp import OsdpReader

        door = cls(gpio, wiegand=wiegand, on_event=on_event)
        # No relay for the reader: the local pins' relay is the controller's to move (set_relay).
        door.reader = OsdpReader(reader_settings, on_event=door._reader_event)
        door.relay_by_panel = reader_settings.relay == "panel"
        door.name = "osdp"
        return door

    # -- DoorIO -------------------------------------------------------------------------------
    def start(self, on_input: Callable[[DoorInput], None]) -> None:
        self._on_input = on_input
        if self.reader is not None:
            self.reader.start(on_input)  # the panel's output command: PANEL_RELAY
        self.gpio.start(self._local_input)

    def _local_input(self, event: DoorInput) -> None:
        """A local input: the controller first (it is the door), then the panel learns it."""
        self._on_input(event)
        if self.reader is not None and event.kind in (InputKind.CONTACT, InputKind.EXIT, InputKind.TAMPER):
            try:
                self.reader.report_input(event.kind, event.active)
            except Exception as exc:  # the panel hears it again when the link comes back
                log.warning("osdp: input %s not reported to the panel: %s", event.kind, type(exc).__name__)

    def set_relay(self, energised: bool) -> None:
        self.gpio.set_relay(energised)

    def announce_grant(self, notice: GrantNotice) -> None:
        """The card read to every panel link; each is tried, the failures raised together."""
        errors = []
        for part in (self.reader, self.wiegand):
            if part is None:
                continue
            try:
                part.announce_grant(notice)
            except DoorIOError as exc:
                errors.append(str(exc))
            except Exception as exc:
                errors.append(f"{part.name}: {type(exc).__name__}")
        if errors:
            raise DoorIOError("; ".join(errors))

    def indicate(self, what: str) -> None:
        self.gpio.indicate(what)  # the panel drives the reader's own LED and buzzer

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.gpio.health())
        status = out.get("status", "ok")
        if self.reader is not None:
            osdp = self.reader.health()
            out["osdp"] = osdp
            out["link"] = osdp["link"]
            if osdp["link"] != "online" and status == "ok":
                # No card read reaches the panel; with relay = "panel" nobody can open the door.
                status = "degraded"
                out["reason"] = f"panel link {osdp['link'].replace('_', ' ')}" + (
                    f" ({osdp['serial_error']})" if osdp.get("serial_error") else "")
            elif osdp.get("session_resets_recent", 0) >= RESETS_ALARM and status == "ok":
                status = "degraded"  # up now, but someone on the bus keeps ending it
                out["reason"] = (f"panel link: secure session reset {osdp['session_resets_recent']} times in "
                                 f"{RESETS_WINDOW_S / 60:.0f} min while the panel kept talking (a device on the bus?)")
        if self.wiegand is not None:
            out.update(self.wiegand.health())
        out["status"] = status
        out["relay"] = "panel" if self.relay_by_panel else "local"
        return out

    def close(self) -> None:
        for part in (self.reader, self.wiegand):
            if part is None:
                continue
            try:
                part.close()
            except Exception as exc:  # stopping must finish, the relay last
                log.warning("closing %s failed: %s", part.name, type(exc).__name__)
        self.gpio.close()

    # -- the reader's events ------------------------------------------------------------------
    def _reader_event(self, kind: str, detail: dict[str, Any]) -> None:
        """On the reader's thread; OsdpReader catches what raises here."""
        if kind == "link":
            self.link = str(detail.get("state", "offline"))
            if self.relay_by_panel and self.link != "online":
                # The panel's output cannot be trusted to end from a link that is gone: lock now.
                self._on_input(DoorInput(InputKind.PANEL_RELAY, False, time.monotonic(),
                                         detail={"reason": f"panel_link_{self.link}"}))
            self._on_event("panel_link", {"link": self.link,
                                          **({"reason": detail["reason"]} if detail.get("reason") else {})})
        elif kind in _PANEL_COMMANDS:
            self._on_event(kind, {"command": panel_command_fields(detail)})
        elif kind == "keyset":
            self._on_event("panel_keyset", {"accepted": bool(detail.get("accepted")),
                                            "reason": detail.get("reason")})
        else:
            log.info("osdp: reader event %s not published", kind)
