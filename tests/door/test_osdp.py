"""The OSDP reader against a REAL libosdp control panel over a pseudo-terminal (what an RS-485
adapter looks like to the code): card reads byte-exact over the secure channel, a wrong key
refused, a key set in install mode that survives a restart, the panel's output, LED and status
traffic, a silent panel and a malformed byte stream. Every wait has a deadline."""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from pathlib import Path

import osdp
import pytest

from edge.bench.door_osdp import Panel, Pty
from edge.core.credentials import Credential, to_bytes
from edge.door.interface import DoorInput, DoorIOError, GrantNotice, InputKind
from edge.door.osdp import KeyStoreError, OsdpReader, OsdpSettings, read_scbk, write_scbk
from tests.conftest import wait_until

ADDRESS = 101
SCBK_D = bytes.fromhex("303132333435363738393a3b3c3d3e3f")  # the install key the standard publishes
H10301 = Credential("h10301", 12345, facility=42)
H10304 = Credential("h10304", 424242, facility=31337)
RAW = Credential("raw", 0b1011001110001, bits=13)


class Recorder:
    """What the reader hands the door controller and the event log."""

    def __init__(self) -> None:
        self.inputs: list[DoorInput] = []
        self.events: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def on_input(self, item: DoorInput) -> None:
        with self.lock:
            self.inputs.append(item)

    def on_event(self, kind: str, detail: dict) -> None:
        with self.lock:
            self.events.append((kind, detail))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [d for k, d in self.events if k == kind]


@pytest.fixture
def secrets_file(tmp_path: Path, key: bytes) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text('[hub]\nsecret_key = "kept-as-it-is"\n')
    path.chmod(0o600)
    write_scbk(path, key)
    return path


class Rig:
    """Readers and panels made by one test, all stopped at its end."""

    def __init__(self, pty: Pty):
        self.pty = pty
        self.readers: list[OsdpReader] = []
        self.panels: list[Panel] = []

    def reader(self, secrets_file: Path, rec: Recorder | None = None, **settings) -> OsdpReader:
        rec = rec or Recorder()
        settings = {"device": self.pty.path, "address": ADDRESS, "secrets_file": str(secrets_file),
                    "offline_after_s": 1.0, "libosdp_log": "error", **settings}
        reader = OsdpReader(OsdpSettings(**settings), on_event=rec.on_event)
        reader.start(rec.on_input)
        self.readers.append(reader)
        return reader

    def panel(self, scbk: bytes | None) -> Panel:
        panel = Panel(self.pty, ADDRESS, scbk)
        self.panels.append(panel)
        return panel

    def close(self) -> None:
        for panel in self.panels:
            panel.stop()
        for reader in self.readers:
            reader.close()


@pytest.fixture
def rig(pty):
    r = Rig(pty)
    yield r
    r.close()


def secure(reader: OsdpReader, panel: Panel, timeout: float = 10.0) -> bool:
    return wait_until(lambda: panel.secure() and reader.health()["secure_channel"], timeout)


def card_read(panel: Panel, timeout: float = 5.0) -> dict | None:
    return panel.events_until(lambda e: e.get("event") == osdp.Event.CardRead, timeout)


def test_card_read_arrives_byte_exact_over_the_secure_channel(rig, secrets_file, key) -> None:
    reader = rig.reader(secrets_file)
    panel = rig.panel(key)
    assert secure(reader, panel)
    for cred in (H10301, H10304, RAW):
        reader.announce_grant(GrantNotice("ev-1", "ben", (cred,)))
        event = card_read(panel)
        data, length = to_bytes(cred)
        assert event is not None
        assert (event["format"], event["length"], event["data"]) == (osdp.CardFormat.Wiegand, length, data)
    health = reader.health()
    assert health["link"] == "online" and health["secure_channel"] is True
    assert panel.cp.get_pd_id(ADDRESS).vendor_code == 0  # the identity it reads: no borrowed vendor code
    assert health["last_poll_age_s"] is not None and health["last_poll_age_s"] < 1.0


def test_a_person_without_credential_is_an_error_not_a_silent_grant(rig, secrets_file, key) -> None:
    reader = rig.reader(secrets_file)
    panel = rig.panel(key)
    assert secure(reader, panel)
    with pytest.raises(DoorIOError, match="no credential"):
        reader.announce_grant(GrantNotice("ev-2", "ann", ()))


def test_a_panel_with_the_wrong_key_gets_no_session_and_no_card(rig, secrets_file) -> None:
    rec = Recorder()
    reader = rig.reader(secrets_file, rec)
    panel = rig.panel(secrets.token_bytes(16))
    # The panel tries its key, then the default key SCBK-D, then plaintext: all refused.
    assert not wait_until(panel.secure, timeout=4.0)
    assert reader.health()["secure_channel"] is False
    with pytest.raises(DoorIOError, match="not up with a secure channel"):
        reader.announce_grant(GrantNotice("ev-3", "ben", (H10301,)))
    assert card_read(panel, timeout=1.5) is None
    assert {"state": "online"} not in rec.of("link")


def test_a_panel_without_a_key_gets_nothing_in_plaintext(rig, secrets_file) -> None:
    reader = rig.reader(secrets_file)
    panel = rig.panel(None)
    assert not wait_until(panel.secure, timeout=3.0)
    assert not panel.online()  # every plaintext poll is refused (NAK): the panel marks us offline
    with pytest.raises(DoorIOError):
        reader.announce_grant(GrantNotice("ev-4", "ben", (H10301,)))


def test_install_mode_keyset_is_stored_once_and_survives_a_restart(rig, tmp_path) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text('[hub]\nsecret_key = "kept-as-it-is"\n')
    path.chmod(0o600)
    rec = Recorder()
    reader = rig.reader(path, rec, install_mode=True)
    assert reader.health()["install_mode"] is True
    new_key = secrets.token_bytes(16)
    # libosdp's panel, refused with its key, opens a session with SCBK-D and sends KEYSET.
    panel = rig.panel(new_key)
    assert wait_until(lambda: rec.of("keyset"), timeout=10.0)
    assert rec.of("keyset") == [{"accepted": True}]
    assert read_scbk(path) == new_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert 'secret_key = "kept-as-it-is"' in path.read_text()  # the rest of the file is kept
    assert not list(tmp_path.glob(".*.new"))
    assert secure(reader, panel)
    assert reader.health()["install_mode"] is False
    panel.stop()
    reader.close()

    # A new reader process on the same secrets file: the stored key, no install mode.
    rec2 = Recorder()
    reader2 = rig.reader(path, rec2, install_mode=True)  # install_mode is ignored: the key exists
    assert reader2.health()["install_mode"] is False
    intruder = rig.panel(secrets.token_bytes(16))  # falls back to SCBK-D: refused now
    assert not wait_until(intruder.secure, timeout=4.0)
    assert read_scbk(path) == new_key
    intruder.stop()
    panel2 = rig.panel(new_key)
    assert secure(reader2, panel2, timeout=15.0)
    reader2.announce_grant(GrantNotice("ev-5", "ben", (H10301,)))
    event = card_read(panel2)
    assert event is not None and event["data"] == to_bytes(H10301)[0]


def test_in_install_mode_a_device_with_the_published_key_neither_keeps_it_nor_moves_the_lock(rig, tmp_path) -> None:
    """In install mode the reader takes the first KEYSET, over a session under SCBK-D, a key the
    OSDP standard publishes. A device on the bus offering SCBK-D itself as the new key had it
    stored: every later session was one anybody could open, and its output commands moved the
    lock (reproduced with libosdp's own panel: the relay input came 30 times). Now that key (or
    16 equal bytes) is refused, no output command is taken before a key is set, and the link
    under the install key is `install`, never `online`, so no card read goes to it."""
    path = tmp_path / "secrets.toml"
    rec = Recorder()
    reader = rig.reader(path, rec, install_mode=True, panel_output=0)
    rogue = rig.panel(SCBK_D)
    links = set()
    for _ in range(30):
        rogue.command({"command": osdp.Command.Output, "output_no": 0, "control_code": 2, "timer_count": 0})
        links.add(reader.health()["link"])
        time.sleep(0.1)
    assert wait_until(lambda: rec.of("keyset"), timeout=5.0)
    assert rec.of("keyset")[0] == {"accepted": False, "reason": "weak_key"}
    assert rec.inputs == [] and "online" not in links
    assert reader.health()["install_mode"] is True and not path.exists()  # still waiting for a real key
    with pytest.raises(DoorIOError, match="not up"):
        reader.announce_grant(GrantNotice("ev-1", "ben", (H10301,)))


def test_keyset_outside_install_mode_is_refused_and_the_key_kept(rig, secrets_file, key) -> None:
    rec = Recorder()
    reader = rig.reader(secrets_file, rec)
    panel = rig.panel(key)
    assert secure(reader, panel)
    panel.command({"command": osdp.Command.Keyset, "type": 1, "data": secrets.token_bytes(16)})
    assert wait_until(lambda: rec.of("keyset"), timeout=5.0)
    assert rec.of("keyset") == [{"accepted": False, "reason": "not_in_install_mode"}]
    assert read_scbk(secrets_file) == key


def test_no_key_and_no_install_mode_refuses_to_start(tmp_path, pty) -> None:
    path = tmp_path / "secrets.toml"
    with pytest.raises(DoorIOError, match="no \\[osdp\\] scbk"):
        OsdpReader(OsdpSettings(device=pty.path, secrets_file=str(path)))
    path.write_text('[osdp]\nscbk = "00112233445566778899aabbccddeeff"\n')
    path.chmod(0o644)
    with pytest.raises(DoorIOError, match="chmod 600"):
        OsdpReader(OsdpSettings(device=pty.path, secrets_file=str(path)))
    with pytest.raises(DoorIOError, match="secrets_file is required"):
        OsdpReader(OsdpSettings(device=pty.path))


def test_write_scbk_refuses_a_short_key_and_keeps_other_tables(tmp_path) -> None:
    path = tmp_path / "s.toml"
    with pytest.raises(KeyStoreError):
        write_scbk(path, b"short")
    first, second = secrets.token_bytes(16), secrets.token_bytes(16)
    write_scbk(path, first)
    write_scbk(path, second)  # replaced, not duplicated
    assert read_scbk(path) == second
    assert path.read_text().count("[osdp]") == 1


@pytest.mark.parametrize("weak", [SCBK_D, bytes(16), b"\xaa" * 16], ids=["scbk_d", "zeros", "constant"])
def test_the_published_or_a_constant_key_written_by_hand_is_refused(tmp_path, pty, weak) -> None:
    """KEYSET refused these keys (`weak_key`); written by hand in the secrets file (the docs
    say an operator may write it; some panel manuals print SCBK-D as "the default") the reader
    took them, and any device on the bus opened a session: card reads went to it, and its
    output command moved the relay. The reader's start refuses them now, and so does write_scbk."""
    path = tmp_path / "secrets.toml"
    path.write_text(f'[osdp]\nscbk = "{weak.hex()}"\n')
    path.chmod(0o600)
    with pytest.raises(DoorIOError, match="published install key"):
        OsdpReader(OsdpSettings(device=pty.path, address=ADDRESS, secrets_file=str(path)))
    with pytest.raises(KeyStoreError, match="published install key"):
        write_scbk(tmp_path / "other.toml", weak)
    assert not (tmp_path / "other.toml").exists()


def test_panel_output_command_becomes_a_panel_relay_input(rig, secrets_file, key) -> None:
    rec = Recorder()
    reader = rig.reader(secrets_file, rec, panel_output=0)
    panel = rig.panel(key)
    assert secure(reader, panel)
    # temporary on for 30 x 100 ms, then permanent off
    assert panel.command({"command": osdp.Command.Output, "output_no": 0, "control_code": 5, "timer_count": 30})
    assert wait_until(lambda: len(rec.inputs) >= 1, timeout=5.0)
    assert panel.command({"command": osdp.Command.Output, "output_no": 0, "control_code": 1, "timer_count": 0})
    assert wait_until(lambda: len(rec.inputs) >= 2, timeout=5.0)
    on, off = rec.inputs[:2]
    assert (on.kind, on.active, on.duration_s) == (InputKind.PANEL_RELAY, True, 3.0)
    assert (off.kind, off.active, off.duration_s) == (InputKind.PANEL_RELAY, False, None)
    # an output the reader does not have: refused (NAK; libosdp's panel then drops the link), no input
    panel.command({"command": osdp.Command.Output, "output_no": 3, "control_code": 2, "timer_count": 0})
    assert wait_until(lambda: not panel.online(), timeout=5.0)
    assert len(rec.inputs) == 2


def test_panel_led_and_buzzer_commands_show_up(rig, secrets_file, key) -> None:
    rec = Recorder()
    reader = rig.reader(secrets_file, rec)
    panel = rig.panel(key)
    assert secure(reader, panel)
    panel.command({"command": osdp.Command.LED, "led_number": 0, "reader": 0, "control_code": 1,
                   "on_color": osdp.CommandLEDColor.Green, "off_color": osdp.CommandLEDColor.Black,
                   "on_count": 10, "off_count": 0, "temporary": False})
    panel.command({"command": osdp.Command.Buzzer, "reader": 0, "control_code": 2, "on_count": 2,
                   "off_count": 1, "rep_count": 3})
    assert wait_until(lambda: rec.of("panel_led") and rec.of("panel_buzzer"), timeout=5.0)
    assert rec.of("panel_led")[0]["on_color"] == osdp.CommandLEDColor.Green
    assert rec.of("panel_buzzer")[0]["rep_count"] == 3
    assert reader.health()["last_panel_command"]["kind"] in {"panel_led", "panel_buzzer"}


def test_tamper_and_inputs_reach_the_panel(rig, secrets_file, key) -> None:
    reader = rig.reader(secrets_file)
    panel = rig.panel(key)
    assert secure(reader, panel)
    reader.report_input(InputKind.TAMPER, True)
    event = panel.events_until(lambda e: e.get("event") == osdp.Event.Status and e.get("type")
                               == osdp.StatusReportType.Local and e["report"][0] == 1, 5.0)
    assert event is not None
    reader.report_input(InputKind.CONTACT, True)
    event = panel.events_until(lambda e: e.get("event") == osdp.Event.Status and e.get("type")
                               == osdp.StatusReportType.Input and e["report"] == bytes([1, 0]), 5.0)
    assert event is not None


def test_silent_panel_goes_offline_once_and_no_stale_card_read_follows(rig, secrets_file, key) -> None:
    rec = Recorder()
    reader = rig.reader(secrets_file, rec)
    panel = rig.panel(key)
    assert secure(reader, panel)
    panel.stop()
    assert wait_until(lambda: reader.health()["link"] == "offline", timeout=5.0)
    assert reader.health()["secure_channel"] is False
    with pytest.raises(DoorIOError):
        reader.announce_grant(GrantNotice("ev-6", "ben", (H10301,)))
    states = [d["state"] for d in rec.of("link")]
    assert states[-2:] == ["online", "offline"] and states.count("offline") == 1
    assert all(a != b for a, b in zip(states, states[1:]))  # one event per change
    panel2 = rig.panel(key)
    assert secure(reader, panel2, timeout=15.0)
    assert card_read(panel2, timeout=1.0) is None  # nothing queued while it was away
    states = [d["state"] for d in rec.of("link")]
    assert states[-1] == "online" and states.count("offline") == 1


def test_a_malformed_byte_stream_does_not_crash_the_reader(rig, secrets_file, key, pty) -> None:
    reader = rig.reader(secrets_file)
    garbage = [
        os.urandom(512),
        bytes([0x53, ADDRESS, 0xFF, 0xFF, 0x04, 0x60, 0x00, 0x00]),  # SOM, a length far past the data
        bytes([0x53, ADDRESS, 0x08, 0x00, 0x04, 0x60, 0xDE, 0xAD]),  # a POLL with a wrong checksum
        bytes([0x53, ADDRESS, 0x0E, 0x00, 0x0C, 0x03, 0x11, 0x00, 0x61, 0x01, 0x02, 0x03, 0x04, 0x05]),  # bad SCB
        b"\x53" * 300,
    ]
    for chunk in garbage:
        os.write(pty.master, chunk)
    assert wait_until(lambda: reader.health()["last_poll_age_s"] is not None, timeout=5.0)  # it read them
    assert reader.health()["link"] != "online"  # noise is no panel
    panel = rig.panel(key)
    assert secure(reader, panel, timeout=15.0)
    reader.announce_grant(GrantNotice("ev-7", "ben", (H10304,)))
    event = card_read(panel)
    assert event is not None and event["data"] == to_bytes(H10304)[0]
    assert reader.health()["last_error"] == ""
    assert reader._thread is not None and reader._thread.is_alive()


def test_logs_never_show_the_card_number(rig, secrets_file, key, caplog) -> None:
    caplog.set_level("DEBUG")
    reader = rig.reader(secrets_file)
    panel = rig.panel(key)
    assert secure(reader, panel)
    reader.announce_grant(GrantNotice("ev-8", "ben", (H10304,)))
    assert card_read(panel) is not None
    assert "424242" not in caplog.text and "31337" not in caplog.text and key.hex() not in caplog.text


def test_a_missing_or_wrong_device_is_reported_not_fatal(tmp_path, secrets_file) -> None:
    for device, message in [(str(tmp_path / "ttyUSB9"), "No such file"), (str(secrets_file), "not a serial device")]:
        reader = OsdpReader(OsdpSettings(device=device, secrets_file=str(secrets_file), libosdp_log="error"))
        reader.start(lambda _: None)
        try:
            health = reader.health()
            assert health["link"] == "offline" and message in health["serial_error"]
            with pytest.raises(DoorIOError):
                reader.announce_grant(GrantNotice("ev-9", "ben", (H10301,)))
            with pytest.raises(DoorIOError, match="no local relay"):
                reader.set_relay(True)
            reader.set_relay(False)  # releasing is always fine
        finally:
            reader.close()


def test_a_card_read_queued_as_the_panel_goes_silent_is_never_delivered_later(rig, secrets_file, key) -> None:
    reader = rig.reader(secrets_file, offline_after_s=2.0)
    panel = rig.panel(key)
    assert secure(reader, panel)
    panel.stop()  # silent from now on; the reader still believes in the link for up to 2 s
    reader.announce_grant(GrantNotice("ev-10", "ben", (H10301,)))  # queued, never polled for
    assert wait_until(lambda: reader.health()["link"] == "offline", timeout=6.0)
    panel2 = rig.panel(key)
    assert secure(reader, panel2, timeout=15.0)
    assert card_read(panel2, timeout=2.0) is None  # the grant of minutes ago does not open the door now


def test_inputs_changed_while_offline_reach_the_panel_when_it_comes_back(rig, secrets_file, key) -> None:
    reader = rig.reader(secrets_file)
    reader.report_input(InputKind.EXIT, True)  # no panel yet
    reader.report_input(InputKind.TAMPER, True)
    panel = rig.panel(key)
    assert secure(reader, panel)
    inputs = panel.events_until(lambda e: e.get("event") == osdp.Event.Status
                                and e.get("type") == osdp.StatusReportType.Input, 5.0)
    assert inputs is not None and inputs["report"] == bytes([0, 1])
    tamper = panel.events_until(lambda e: e.get("event") == osdp.Event.Status
                                and e.get("type") == osdp.StatusReportType.Local, 5.0)
    assert tamper is not None and tamper["report"][0] == 1
