"""The door as an OSDP reader (a PD, IEC 60839-11-5) on the site's panel (the CP), with libosdp.

    grant ─► announce_grant ─► card read (the person's credential, raw Wiegand bits) ─► panel
    panel ─► LED / buzzer / text ─► on_event("panel_led" | "panel_buzzer" | "panel_text", ...)
    panel ─► output command ─► DoorInput(PANEL_RELAY, active, duration_s) ─► the door controller
    door contact, exit button ─► report_input ─► input status to the panel; tamper ─► local status

The link is a serial device given by path (an RS-485 adapter such as /dev/ttyUSB0; a
pseudo-terminal is the same thing to this code). The secure channel is enforced: the PD answers
nothing but the secure-channel handshake until the panel proves it holds the SCBK, so a panel
with another key never sees a card read. The SCBK lives in the 0600 secrets file as
`[osdp] scbk = "<32 hex digits>"`. With no key there yet and `install_mode` on, the reader
accepts the panel's KEYSET once over a session of the published default key (SCBK-D), writes
the key atomically (temp file, fsync, rename, 0600) before acknowledging it, and leaves install
mode; from then on only the new key opens a session, across restarts.

The link is `online` (a secure session with a polling panel), `no_secure_channel` (frames but no
session with our key) or `offline` (silence), in `health()` and as a `link` event once per
change. A card read is never queued for later: unless the link is online, `announce_grant`
raises DoorIOError, and the events still queued when the link drops are flushed, so a panel
coming back does not receive a minutes-old grant. Nothing read from the wire can crash the
reader: libosdp drops malformed frames, and every callback here catches its own errors.
Card numbers and keys are never logged and never in events.
"""

from __future__ import annotations

import logging
import os
import secrets
import termios
import threading
import time
import tomllib
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import ConfigDict, Field

from edge.core.credentials import Credential, to_bytes
from edge.core.settings import Section, write_private
from edge.door.interface import DoorInput, DoorIOError, GrantNotice, InputKind

log = logging.getLogger(__name__)

BAUD_RATES = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
              115200: termios.B115200, 230400: termios.B230400}
# OSDP output control codes (osdp_OUT): what the panel asks of an output.
_OUTPUT_ON = {2, 4}  # permanent on (aborting / completing a timed one)
_OUTPUT_OFF = {1, 3, 6}  # permanent off (...), temporary off
_OUTPUT_TIMED_ON = 5  # temporary on for timer_count x 100 ms, then back
_LOG_LEVELS = {"error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}  # libosdp's (syslog's)
# The install key every OSDP device knows (the standard's SCBK-D): never kept as the key.
SCBK_D = bytes.fromhex("303132333435363738393a3b3c3d3e3f")
# A secure session that ends while the panel keeps talking: libosdp ends it on any frame with
# sequence number 0 or a CHLNG before any MAC is checked (the standard's "the panel restarts"),
# so one unauthenticated 7-byte frame from any device on the bus does it, and libosdp's own panel
# waits minutes before a new handshake. A real panel restarts now and then; RESETS_ALARM within
# RESETS_WINDOW_S is someone on the bus, and the door says so (health, docs/security.md).
RESETS_WINDOW_S = 600.0
RESETS_ALARM = 3


class OsdpSettings(Section):
    """`[door.osdp]`: the reader link to the site's access-control panel."""

    model_config = ConfigDict(frozen=True)

    device: str = Field("/dev/ttyUSB0", description="Serial device of the RS-485 adapter the panel is on.")
    baud: Literal[9600, 19200, 38400, 57600, 115200, 230400] = Field(
        9600, description="Line speed; the panel's setting for this reader.")
    address: int = Field(0, ge=0, le=126, description="This reader's OSDP address on the bus (0-126).")
    secrets_file: str = Field(
        "", description="0600 TOML holding `[osdp] scbk = \"<32 hex digits>\"`, the secure channel key.")
    install_mode: bool = Field(
        False, description="While secrets_file has no scbk: accept the panel's KEYSET once (over the default "
                           "key SCBK-D, so only on a bus you control), store it and leave install mode.")
    relay: Literal["local", "panel"] = Field(
        "local", description="Who moves the lock relay (the [door] gpio relay_pin): local = our grant energises it\n"
        "and the card read also goes to the panel; panel = our grant only sends the card read, the\n"
        "panel's output command (panel_output) moves it (docs/osdp-wiegand.md).")
    reader_no: int = Field(0, ge=0, le=255, description="Reader number the card reads carry.")
    panel_output: int = Field(0, ge=0, le=255,
                              description="The panel's output number that drives the lock relay (relay = \"panel\").")
    offline_after_s: float = Field(8.0, gt=0, description="No poll for this long: the link is offline.")
    refresh_ms: int = Field(5, ge=1, le=50, description="How often libosdp's state machine runs, in ms.")
    libosdp_log: Literal["error", "warning", "notice", "info", "debug"] = Field(
        "warning", description="libosdp's own log level (it writes to stderr).")


# --- the key in the secrets file -------------------------------------------------------------------
class KeyStoreError(Exception):
    """The secrets file cannot give or take the key; the message says why (never the key)."""


def read_scbk(path: str | Path) -> bytes | None:
    """The `[osdp] scbk` of a private secrets file; None when the file or the key is absent."""
    from edge.core.settings import ConfigError, require_private

    path = Path(path)
    if not path.exists():
        return None
    try:
        require_private(path, "secrets file")
        table = tomllib.loads(path.read_text()).get("osdp")
    except (ConfigError, tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise KeyStoreError(str(exc)) from None
    if table is None:
        return None
    if not isinstance(table, dict) or set(table) != {"scbk"} or not isinstance(table["scbk"], str):
        raise KeyStoreError(f"{path}: [osdp] holds exactly one string, scbk")
    try:
        key = bytes.fromhex(table["scbk"])
    except ValueError:
        raise KeyStoreError(f"{path}: [osdp] scbk is not hexadecimal") from None
    if len(key) != 16:
        raise KeyStoreError(f"{path}: [osdp] scbk must be 16 bytes (32 hex digits), not {len(key)}")
    refuse_weak_scbk(key, f"{path}: [osdp] scbk")
    return key


def is_weak_scbk(key: bytes) -> bool:
    """The published install key (SCBK-D, which some panel manuals print as "the default") or
    16 equal bytes: kept as the key, every session is one anybody on the bus can open."""
    return key == SCBK_D or len(set(key)) == 1


def refuse_weak_scbk(key: bytes, where: str) -> None:
    if is_weak_scbk(key):
        # Taken, any device on the bus got a secure session: card reads went to it, and its
        # output command moved the relay. KEYSET refused these; a key written by hand was not.
        raise KeyStoreError(f"{where} is the published install key (SCBK-D) or a constant one: anyone on the bus "
                            "can open a session with it; write a random key (docs/osdp-wiegand.md)")


def write_scbk(path: str | Path, key: bytes) -> None:
    """Set `[osdp] scbk` in the secrets file, keeping its other tables: a new file beside it
    (0600), fsync'd, checked to read back with only that key changed, renamed over the old one,
    and the directory fsync'd. A crash leaves the old file or the new one, never half of one."""
    if len(key) != 16:
        raise KeyStoreError("an SCBK is 16 bytes")
    refuse_weak_scbk(key, "the new SCBK")
    path = Path(path)
    old_text = ""
    if path.exists():
        read_scbk(path)  # refuses a file readable by others or not TOML before touching it
        old_text = path.read_text()
    kept = _without_table(old_text, "osdp")
    text = f"{kept.rstrip()}\n\n" if kept.strip() else ""
    text += ("# OSDP secure channel key (SCBK) of this reader, set by the panel in install mode.\n"
             f"[osdp]\nscbk = \"{key.hex()}\"\n")
    before = tomllib.loads(old_text) if old_text else {}
    after = tomllib.loads(text)
    before.pop("osdp", None)
    if after.pop("osdp", None) != {"scbk": key.hex()} or after != before:
        raise KeyStoreError(f"{path}: cannot rewrite [osdp] without touching the rest; edit it by hand")
    write_private(path, text)


def _without_table(text: str, name: str) -> str:
    """`text` without the `[name]` table (its header line up to the next table header)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped.split("#")[0].strip() == f"[{name}]"
        if not skipping:
            out.append(line)
    return "".join(out)


# --- the serial link ---------------------------------------------------------------------------------
class SerialLink:
    """A raw, non-blocking serial device for libosdp's channel: read and write never raise
    (a lost device reads as silence and is reopened by the reader's loop)."""

    def __init__(self, device: str, baud: int):
        self.device = device
        self.baud = baud
        self.fd: int | None = None
        self.error = ""
        self.last_rx = 0.0  # monotonic time of the last bytes read

    def open(self) -> None:
        fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            if not os.isatty(fd):
                raise OSError(f"{self.device} is not a serial device")
            tty.setraw(fd)  # no echo, no line editing, 8 bits: OSDP frames are binary
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = BAUD_RATES[self.baud]
            attrs[2] = (attrs[2] | termios.CLOCAL | termios.CREAD) & ~termios.CSTOPB  # 8N1, no modem lines
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            termios.tcflush(fd, termios.TCIOFLUSH)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.error = ""

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _lost(self, exc: OSError) -> None:
        self.error = f"{self.device}: {exc.strerror or exc}"
        log.warning("osdp: serial link lost: %s", self.error)
        self.close()

    def read(self, max_bytes: int) -> bytes:
        if self.fd is None:
            return b""
        try:
            data = os.read(self.fd, max_bytes)
        except BlockingIOError:
            return b""
        except OSError as exc:
            self._lost(exc)
            return b""
        if data:
            self.last_rx = time.monotonic()
        return data

    def write(self, buf: bytes) -> int:
        if self.fd is None:
            return 0
        try:
            return os.write(self.fd, buf)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._lost(exc)
            return 0

    def flush(self) -> None:
        if self.fd is not None:
            try:
                termios.tcflush(self.fd, termios.TCIFLUSH)
            except OSError:
                pass


def _channel(link: SerialLink) -> Any:
    """libosdp's Channel over `link` (a subclass of its abstract base, made here so that
    importing this module needs no libosdp)."""
    import osdp

    class _Channel(osdp.Channel):
        def read(self, max_bytes: int) -> bytes:
            return link.read(max_bytes)

        def write(self, buf: bytes) -> int:
            return link.write(buf)

        def flush(self) -> None:
            link.flush()

    return _Channel()


# --- the reader ------------------------------------------------------------------------------------
@dataclass
class _State:
    link: str = "offline"  # offline | no_secure_channel | online (LINK_STATES)
    changes: int = 0
    last_error: str = ""
    panel_commands: int = 0
    refused_commands: int = 0
    last_panel_command: dict[str, Any] = field(default_factory=dict)
    session_resets: list[float] = field(default_factory=list)  # when, within RESETS_WINDOW_S
    session_resets_total: int = 0


class OsdpReader:
    """The OSDP backend (DoorIO): a PD on the panel's bus. `relay`, if given, is the lock relay
    this backend switches (a GPIO output); without one there is no local relay to energise."""

    name = "osdp"

    def __init__(self, settings: OsdpSettings, *, relay: Callable[[bool], None] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if not settings.secrets_file:
            raise DoorIOError("[door.osdp] secrets_file is required: the secure channel key lives there")
        self.settings = settings
        self._relay = relay
        self._on_event = on_event or (lambda kind, detail: None)
        self._clock = clock
        self._on_input: Callable[[DoorInput], None] = lambda _: None
        self._lock = threading.RLock()  # libosdp's context is not thread-safe: one caller at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._link = SerialLink(settings.device, settings.baud)
        self._pd: Any = None
        self._state = _State()
        self._inputs = {InputKind.CONTACT: False, InputKind.EXIT: False}
        self._tamper = False
        try:
            key = read_scbk(settings.secrets_file)
        except KeyStoreError as exc:
            raise DoorIOError(f"osdp: {exc}") from None
        self._installing = key is None
        if key is None and not settings.install_mode:
            raise DoorIOError(f"osdp: no [osdp] scbk in {settings.secrets_file}; set install_mode = true once "
                              "to receive it from the panel")
        if key is not None and settings.install_mode:
            log.info("osdp: install_mode ignored, %s already holds the key", settings.secrets_file)
        # In install mode the PD still needs a key of its own to enforce the secure channel: a
        # random one nobody knows, so only the default key's session (SCBK-D) can set the real one.
        self._scbk = key if key is not None else secrets.token_bytes(16)

    # -- DoorIO -----------------------------------------------------------------------------------
    def start(self, on_input: Callable[[DoorInput], None]) -> None:
        if self._thread is not None:
            return
        self._on_input = on_input
        self._open_link()
        self._thread = threading.Thread(target=self._run, name="osdp-pd", daemon=True)
        self._thread.start()

    def set_relay(self, energised: bool) -> None:
        if self._relay is None:
            if energised:
                raise DoorIOError("osdp: no local relay; with relay = \"panel\" the panel drives the lock")
            return
        try:
            self._relay(energised)
        except DoorIOError:
            raise
        except Exception as exc:
            raise DoorIOError(f"osdp: relay: {exc}") from exc

    def announce_grant(self, notice: GrantNotice) -> None:
        """Send the person's first credential (the one the hub lists first) as a card read, over
        the secure channel only."""
        if not notice.credentials:
            raise DoorIOError(f"osdp: no credential for event {notice.event_id}: nothing to send the panel")
        self.send_card(notice.credentials[0], notice.event_id)

    def send_card(self, cred: Credential, event_id: str = "") -> None:
        import osdp

        data, length = to_bytes(cred)
        with self._lock:
            if self._link_state() != "online":
                raise DoorIOError("osdp: the panel link is not up with a secure channel; card read not sent")
            ok = self._pd.submit_event({"event": osdp.Event.CardRead, "reader_no": self.settings.reader_no,
                                        "format": osdp.CardFormat.Wiegand, "direction": 0,
                                        "length": length, "data": data})
        if not ok:
            raise DoorIOError("osdp: libosdp refused the card read (event queue full)")
        log.info("osdp: card read sent for event %s (%s, %d bits)", event_id or "-", cred.fmt, length)

    def indicate(self, what: str) -> None:
        """The panel drives the reader's LED and buzzer (osdp_LED / osdp_BUZ); nothing local."""

    def report_input(self, kind: InputKind, active: bool) -> None:
        """Tell the panel about a door input: contact and exit button as input status (inputs 0
        and 1), tamper as the reader's local status. Sent again whenever the secure link comes
        (back) up, so the panel always learns the current state."""
        with self._lock:
            if kind is InputKind.TAMPER:
                self._tamper = active
            elif kind in self._inputs:
                self._inputs[kind] = active
            else:
                return
            if self._link_state() == "online":
                self._pd.submit_event(self._status_event(local=kind is InputKind.TAMPER))

    def _status_event(self, local: bool) -> dict[str, Any]:
        import osdp

        if local:  # [tamper, power failure]
            return {"event": osdp.Event.Status, "type": osdp.StatusReportType.Local,
                    "report": bytes([int(self._tamper), 0])}
        return {"event": osdp.Event.Status, "type": osdp.StatusReportType.Input,
                "report": bytes(int(self._inputs[k]) for k in (InputKind.CONTACT, InputKind.EXIT))}

    def health(self) -> dict[str, Any]:
        with self._lock:
            age = self._clock() - self._link.last_rx if self._link.last_rx else None
            state = self._state
            return {
                "backend": self.name, "device": self.settings.device, "address": self.settings.address,
                "link": state.link, "secure_channel": state.link == "online",
                "last_poll_age_s": None if age is None else round(age, 3),
                "install_mode": self._installing, "serial_error": self._link.error,
                "panel_commands": state.panel_commands, "refused_commands": state.refused_commands,
                "last_panel_command": dict(state.last_panel_command), "last_error": state.last_error,
                "session_resets": state.session_resets_total,
                "session_resets_recent": sum(self._clock() - t < RESETS_WINDOW_S for t in state.session_resets),
            }

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            self._pd = None
            self._link.close()
        if self._relay is not None:
            try:
                self._relay(False)
            except Exception:
                log.exception("osdp: releasing the relay failed")

    # -- the loop -----------------------------------------------------------------------------------
    def _open_link(self) -> bool:
        try:
            self._link.open()
        except OSError as exc:
            self._link.error = f"{self.settings.device}: {exc.strerror or exc}"
            return False
        with self._lock:
            self._pd = self._make_pd()
        return True

    def _make_pd(self) -> Any:
        import osdp
        import osdp_sys  # the binding itself: the osdp wrapper's queue keeps every command for ever

        osdp_sys.set_loglevel(_LOG_LEVELS[self.settings.libosdp_log])
        flags = [osdp.LibFlag.EnforceSecure]
        if self._installing:
            flags.append(osdp.LibFlag.InstallMode)
        # The identity the panel reads (osdp_ID): no IEEE vendor code of our own, so 0 rather
        # than libosdp's example one.
        ident = osdp.PdId(version=1, model=1, vendor_code=0, serial_number=0, firmware_version=1)
        info = osdp.PDInfo(self.settings.address, _channel(self._link), scbk=self._scbk, flags=flags,
                           name="edge-verifier", id=ident)
        caps = osdp.PDCapabilities([
            (osdp.Capability.CommunicationSecurity, 1, 1),
            (osdp.Capability.CardDataFormat, 1, 1),  # raw Wiegand bits
            (osdp.Capability.LEDControl, 1, 1),
            (osdp.Capability.AudibleControl, 1, 1),
            (osdp.Capability.OutputControl, 1, 1),  # the lock relay, with relay = "panel"
            (osdp.Capability.ContactStatusMonitoring, 1, 2),  # door contact, exit button
        ])
        pd = osdp_sys.PeripheralDevice(info.get(), capabilities=caps.get())
        pd.set_command_callback(self._on_command)
        return pd

    def _link_state(self) -> str:
        """offline: nothing from the panel for offline_after_s (or no device); no_secure_channel:
        frames arrive but no session with our key (a wrong key, a handshake under way, noise);
        install: a session under the published install key (SCBK-D), good for the panel's KEYSET
        only; online: a secure session with a panel that polls. Only online carries card reads."""
        last = self._link.last_rx
        if (self._link.fd is None or self._pd is None or not last
                or self._clock() - last >= self.settings.offline_after_s):
            return "offline"
        if not self._pd.is_sc_active():
            return "no_secure_channel"
        return "install" if self._installing else "online"

    def _run(self) -> None:
        period = self.settings.refresh_ms / 1000.0
        reopen_at = 0.0
        while not self._stop.is_set():
            try:
                if self._link.fd is None and self._clock() >= reopen_at:
                    if not self._open_link():
                        reopen_at = self._clock() + 1.0
                with self._lock:
                    if self._pd is not None and self._link.fd is not None:
                        self._pd.refresh()
                self._watch_link()
            except Exception as exc:  # the reader must outlive any surprise; the door stays as it is
                with self._lock:
                    self._state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("osdp: reader loop error")
                self._stop.wait(0.5)
            self._stop.wait(period)

    def _watch_link(self) -> None:
        with self._lock:
            link = self._link_state()
            state = self._state
            if link == state.link:
                return
            reset = state.link == "online" and link == "no_secure_channel"  # ended, the panel still talking
            state.link = link
            state.changes += 1
            if reset:
                now = self._clock()
                state.session_resets = [t for t in state.session_resets if now - t < RESETS_WINDOW_S] + [now]
                state.session_resets_total += 1
            if link != "online" and self._pd is not None:
                dropped = self._pd.flush_events()  # no stale card read when the panel comes back
                if dropped:
                    log.warning("osdp: %d queued event(s) dropped with the secure link", dropped)
            elif self._pd is not None:  # the panel learns the inputs as they are now
                self._pd.submit_event(self._status_event(local=False))
                self._pd.submit_event(self._status_event(local=True))
        if reset:
            log.warning("osdp: panel link: the secure session ended while the panel kept talking (%d time(s) in "
                        "%.0f min; more than a few: a device on the bus resetting it)",
                        len(state.session_resets), RESETS_WINDOW_S / 60)
        else:
            log.warning("osdp: panel link %s", link.replace("_", " "))
        self._emit("link", {"state": link, **({"reason": "session_reset"} if reset else {})})

    def _emit(self, kind: str, detail: dict[str, Any]) -> None:
        try:
            self._on_event(kind, detail)
        except Exception:
            log.exception("osdp: event handler failed for %s", kind)

    # -- commands from the panel (on the loop's thread, inside refresh) ------------------------------------
    def _on_command(self, cmd: dict) -> tuple[int, None]:
        """libosdp's command callback: 0 acknowledges, -1 refuses (NAK). Never raises: an
        exception here would reach libosdp's C code."""
        try:
            ok = self._command(cmd)
        except Exception as exc:
            log.exception("osdp: panel command failed")
            self._state.last_error = f"{type(exc).__name__}: {exc}"
            ok = False
        if not ok:
            self._state.refused_commands += 1
        return (0 if ok else -1), None

    def _command(self, cmd: dict) -> bool:
        import osdp

        kind = cmd.get("command")
        self._state.panel_commands += 1
        if kind == osdp.Command.Keyset:
            return self._keyset(cmd)
        if self._installing:
            # The install session runs under SCBK-D, a key anyone can read in the standard: any
            # device on the bus could open one and drive the lock's output. Only KEYSET is taken.
            log.warning("osdp: panel command %s refused in install mode (only KEYSET is taken)", kind)
            return False
        if kind == osdp.Command.Output:
            return self._output(cmd)
        names = {osdp.Command.LED: "panel_led", osdp.Command.Buzzer: "panel_buzzer", osdp.Command.Text: "panel_text"}
        if kind in names:
            detail = {k: v for k, v in cmd.items() if k != "command" and not isinstance(v, bytes)}
            self._state.last_panel_command = {"kind": names[kind], **detail}
            self._emit(names[kind], detail)
            return True
        log.info("osdp: panel command %s not supported", kind)
        return False

    def _output(self, cmd: dict) -> bool:
        output_no, code, timer = int(cmd.get("output_no", -1)), int(cmd.get("control_code", 0)), cmd.get("timer_count")
        if output_no != self.settings.panel_output:
            log.info("osdp: panel output %d is not the lock's (%d)", output_no, self.settings.panel_output)
            return False
        if code == _OUTPUT_TIMED_ON:
            active, duration = True, max(0.0, float(timer or 0) * 0.1)
        elif code in _OUTPUT_ON:
            active, duration = True, None
        elif code in _OUTPUT_OFF:
            active, duration = False, None
        else:  # 0: no operation
            return True
        self._state.last_panel_command = {"kind": "panel_output", "output_no": output_no, "control_code": code,
                                          "active": active, "duration_s": duration}
        try:
            self._on_input(DoorInput(InputKind.PANEL_RELAY, active, self._clock(), duration_s=duration,
                                     detail={"output_no": output_no, "control_code": code}))
        except Exception:
            log.exception("osdp: the door controller refused the panel's output command")
            return False
        return True

    def _keyset(self, cmd: dict) -> bool:
        key = cmd.get("data")
        if not self._installing:
            log.warning("osdp: KEYSET refused: not in install mode (the key is set once; clear [osdp] scbk "
                        "and enable install_mode to set it again)")
            self._emit("keyset", {"accepted": False, "reason": "not_in_install_mode"})
            return False
        if cmd.get("type") != 1 or not isinstance(key, bytes) or len(key) != 16:
            log.warning("osdp: KEYSET refused: not a 16-byte SCBK")
            self._emit("keyset", {"accepted": False, "reason": "malformed"})
            return False
        if is_weak_scbk(key):
            log.warning("osdp: KEYSET refused: the panel offered the published install key or a constant one")
            self._emit("keyset", {"accepted": False, "reason": "weak_key"})
            return False
        try:
            write_scbk(self.settings.secrets_file, key)
        except (KeyStoreError, OSError) as exc:
            log.error("osdp: KEYSET refused: the key could not be stored: %s", exc)
            self._emit("keyset", {"accepted": False, "reason": "not_stored"})
            return False
        # Acknowledged only now that the key is on disk; libosdp switches to it after the ACK,
        # ends the session and leaves install mode. Ours ends too: a second KEYSET is refused.
        self._scbk, self._installing = key, False
        log.warning("osdp: new SCBK received from the panel and stored in %s; install mode left",
                    self.settings.secrets_file)
        self._emit("keyset", {"accepted": True})
        return True
