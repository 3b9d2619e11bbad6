"""The door's state machine with an injected clock: no sleeps, every time a number."""

from __future__ import annotations

import pytest

from edge.door.controller import DoorController, DoorMode, DoorState, relay_level
from edge.door.interface import DoorInput, InputKind
from tests.door.support import contact, door, kinds, press_exit


def test_starting_locks_whatever_the_relay_was_and_never_unlocks():
    from edge.door.backends.none import NoHardware

    for lock_type in ("fail-secure", "fail-safe"):
        io = NoHardware()
        io.energised = relay_level(True, lock_type)  # left unlocked by whatever ran before
        c, clock, io = door(io, lock_type=lock_type)
        assert io.energised == relay_level(False, lock_type)
        assert c.state is DoorState.LOCKED and c.snapshot()["locked"]
        for _ in range(5):
            c.tick(clock.advance(1))
        assert io.energised == relay_level(False, lock_type)


def test_a_door_cannot_be_built_to_start_unlocked():
    from edge.door.backends.none import NoHardware

    with pytest.raises(ValueError):
        DoorController(NoHardware(), mode=DoorMode.UNLOCKED)


def test_lock_type_decides_the_relay_level_the_controller_speaks_unlock():
    c, clock, io = door(lock_type="fail-safe")
    assert io.energised is True  # fail-safe: energised = locked
    c.grant("ben_afflek", "granted")
    assert io.energised is False
    c.tick(clock.advance(3.1))
    assert io.energised is True


def test_grant_unlocks_for_unlock_s_then_locks():
    c, clock, io = door(unlock_s=3)
    c.take_events()
    assert c.grant("ben_afflek", "granted", event_id="e1")
    assert io.energised and c.state is DoorState.UNLOCKED
    events = c.take_events()
    grant = next(e for e in events if e["kind"] == "grant")
    assert grant["person_id"] == "ben_afflek" and grant["unlock_s"] == 3 and grant["decision_event_id"] == "e1"
    c.tick(clock.advance(2.9))
    assert io.energised
    c.tick(clock.advance(0.2))
    assert not io.energised and c.state is DoorState.LOCKED


def test_relock_as_soon_as_the_door_opens_then_open_closed_locked():
    c, clock, io = door(unlock_s=3, relock_on_open=True)
    c.grant("p", "granted")
    c.take_events()
    clock.advance(1)
    contact(c, True)
    assert not io.energised and c.state is DoorState.OPEN
    assert kinds(c) == ["door_open", "door_state"]
    clock.advance(2)
    contact(c, False)
    assert c.state is DoorState.LOCKED
    assert "forced_open" not in kinds(c)


def test_without_relock_on_open_the_lock_stays_open_for_its_time():
    c, clock, io = door(unlock_s=3, relock_on_open=False)
    c.grant("p", "granted")
    contact(c, True)
    assert io.energised
    c.tick(clock.advance(3.1))
    assert not io.energised and c.state is DoorState.OPEN


def test_a_stream_of_accepts_cannot_hold_the_door_open_past_max_unlock_s():
    c, clock, io = door(unlock_s=3, max_unlock_s=10)
    start = clock.now
    energised_s = 0.0
    while clock.now < start + 60:  # an accept every half second for a minute
        c.grant("p", "granted")
        was = io.energised
        c.tick(clock.advance(0.5))
        energised_s += 0.5 if was else 0.0
    assert energised_s <= 10
    assert not io.energised
    assert any(e["kind"] == "deny" and e["reason"] == "max_unlock" for e in c.take_events())
    c.tick(clock.advance(3.1))  # the stream paused for unlock_s: grants are re-armed
    assert c.grant("p", "granted") and io.energised


def test_forced_open_without_grant_or_exit_raises_an_alarm_until_closed():
    c, clock, io = door()
    c.take_events()
    clock.advance(5)
    contact(c, True)
    assert c.state is DoorState.FORCED and c.snapshot()["alarm"]
    assert kinds(c) == ["forced_open"]
    assert not io.energised
    c.tick(clock.advance(60))  # a forced door is not also "held"
    assert c.state is DoorState.FORCED
    contact(c, False)
    events = c.take_events()
    assert events[-1]["kind"] == "door_closed" and events[-1]["alarm_cleared"]
    assert c.state is DoorState.LOCKED


def test_opening_long_after_the_grant_ran_out_is_forced():
    c, clock, io = door(unlock_s=3, open_grace_s=1)
    c.grant("p", "granted")
    c.tick(clock.advance(3.5))
    contact(c, True)  # within the grace: a slow latch, still the grant's passage
    assert c.state is DoorState.OPEN
    contact(c, False)
    clock.advance(10)
    contact(c, True)
    assert c.state is DoorState.FORCED


def test_one_grant_one_passage():
    c, clock, io = door(unlock_s=3, open_grace_s=1)
    c.grant("p", "granted")
    contact(c, True)
    contact(c, False)
    clock.advance(0.5)
    contact(c, True)  # the second opening of the same grant
    assert c.state is DoorState.FORCED


def test_held_open_prealarm_then_alarm_with_the_injected_clock():
    c, clock, io = door(held_open_s=30, held_prealarm_s=10)
    c.grant("p", "granted")
    contact(c, True)
    c.take_events()
    c.tick(clock.advance(19.9))
    assert kinds(c) == []
    c.tick(clock.advance(0.2))
    assert kinds(c) == ["held_open_prealarm"] and c.snapshot()["prealarm"]
    c.tick(clock.advance(9.8))  # 29.9 s open
    assert kinds(c) == []
    c.tick(clock.advance(0.2))
    assert kinds(c) == ["held_open"] and c.state is DoorState.HELD
    c.tick(clock.advance(100))
    assert kinds(c) == []  # one alarm, not one per tick
    contact(c, False)
    assert c.state is DoorState.LOCKED and not c.snapshot()["alarm"]


def test_exit_request_unlocks_and_authorises_the_opening():
    c, clock, io = door(unlock_s=3)
    c.take_events()
    press_exit(c)
    assert io.energised
    press_exit(c, False)
    contact(c, True)
    assert c.state is DoorState.OPEN
    assert "exit_request" in kinds(c)


def test_mechanical_exit_only_shunts_the_alarm():
    c, clock, io = door(exit_unlocks=False)
    press_exit(c)
    assert not io.energised
    contact(c, True)
    assert c.state is DoorState.OPEN


def test_locked_down_grants_nothing_and_exit_does_not_unlock():
    c, clock, io = door(mode=DoorMode.LOCKED_DOWN)
    assert not c.grant("p", "granted")
    assert not io.energised
    press_exit(c)
    assert not io.energised
    contact(c, True)  # free egress is mechanical: the opening is not forced
    assert c.state is DoorState.OPEN


def test_unlocked_mode_only_by_an_explicit_set_and_locks_when_left():
    c, clock, io = door()
    c.set_mode(DoorMode.UNLOCKED, "operator")
    assert io.energised
    c.tick(clock.advance(3600))  # no bound in unlocked mode: it was asked for
    assert io.energised
    contact(c, True)
    assert c.state is DoorState.OPEN
    c.tick(clock.advance(3600))
    assert c.state is DoorState.OPEN  # no held alarm in unlocked mode
    contact(c, False)
    c.set_mode(DoorMode.NORMAL)
    assert not io.energised


def test_tamper_is_an_event_a_state_and_a_fault():
    c, clock, io = door()
    c.take_events()
    c.on_input(DoorInput(InputKind.TAMPER, True, clock.now))
    assert kinds(c) == ["tamper"]
    assert c.snapshot()["tamper"] and c.health()["status"] == "degraded"
    c.on_input(DoorInput(InputKind.TAMPER, False, clock.now))
    assert c.health()["status"] == "ok"


def test_every_event_carries_the_door_state_after_it():
    c, clock, io = door()
    c.take_events()
    c.grant("p", "granted")
    for e in c.take_events():
        assert e["door_state"]["state"] == "unlocked" and e["door"] == "main"


def test_initial_open_contact_at_start_is_not_forced():
    from edge.door.backends.none import NoHardware

    class OpenAtStart(NoHardware):
        def start(self, on_input):
            on_input(DoorInput(InputKind.CONTACT, True, 0.0, detail={"initial": True}))

    c, clock, io = door(OpenAtStart())
    assert c.state is DoorState.OPEN and not c.snapshot()["alarm"]


def test_grant_announces_the_persons_credentials_to_the_backend():
    from edge.core.credentials import Credential
    from edge.door.backends.none import NoHardware
    from edge.door.controller import DoorTiming

    notices = []

    class Panel(NoHardware):
        def announce_grant(self, notice):
            notices.append(notice)

    card = Credential("h10301", 12345, 42)
    c = DoorController(Panel(), timing=DoorTiming(), credentials_of=lambda pid: (card,) if pid == "p" else ())
    c.start()
    c.grant("p", "granted", event_id="e")
    assert notices and notices[0].person_id == "p" and notices[0].credentials == (card,)
    assert "12345" not in repr(notices[0])


def test_a_panel_that_drives_the_relay_gets_the_grant_and_moves_the_relay_itself():
    from edge.door.backends.none import NoHardware

    notices = []

    class PanelRelay(NoHardware):
        relay_by_panel = True

        def announce_grant(self, notice):
            notices.append(notice)

    c, clock, io = door(PanelRelay())
    assert c.grant("p", "granted", event_id="e")
    assert not io.energised and notices  # announced, not unlocked by us
    grant = next(e for e in c.take_events() if e["kind"] == "grant")
    assert grant["relay"] == "panel"
    c.on_input(DoorInput(InputKind.PANEL_RELAY, True, clock.now, duration_s=4))
    assert io.energised
    c.tick(clock.advance(4.1))
    assert not io.energised
    c.on_input(DoorInput(InputKind.PANEL_RELAY, True, clock.now, duration_s=3600))
    c.tick(clock.advance(10.1))  # the panel cannot hold it open past max_unlock_s either
    assert not io.energised


def test_health_asks_the_backend_without_holding_the_controller_lock():
    """The OSDP reader hands the controller a panel command while holding its own lock, and its
    health() takes that lock: asking the backend under the controller's lock would deadlock."""
    import threading

    from edge.door.backends.none import NoHardware

    class Backend(NoHardware):
        got_through: bool | None = None

        def health(self):
            # the backend's thread, holding the backend's lock, hands in an input meanwhile
            t = threading.Thread(target=c.on_input, args=(DoorInput(InputKind.TAMPER, True, clock.now),))
            t.start()
            t.join(timeout=2.0)
            self.got_through = not t.is_alive()
            return super().health()

    c, clock, io = door(Backend())
    assert c.health()["tamper"] is True  # the input went in while health() asked the backend
    assert io.got_through is True


def test_an_exit_button_pressed_at_start_is_stuck_not_a_request():
    """A button held (or shorted) when the edge started unlocked the door at every start, before
    the start's own state went out: starting must never unlock."""
    from edge.door.backends.none import NoHardware

    class PressedAtStart(NoHardware):
        def start(self, on_input):
            on_input(DoorInput(InputKind.EXIT, True, 0.0, detail={"initial": True}))

    c, clock, io = door(PressedAtStart())
    assert not io.energised and c.state is DoorState.LOCKED
    stuck = [e for e in c.take_events() if e["kind"] == "exit_stuck"]
    assert stuck and stuck[0]["reason"] == "pressed_at_start"
    press_exit(c, False)  # released: the next press is a request again
    press_exit(c)
    assert io.energised


def test_a_chattering_exit_button_does_not_hold_the_door_open():
    """Pressed and released every half second, the button unlocked the door again each time:
    unlocked 58 s of 60, no fault. Exit unlocks now re-arm like grants after max_unlock_s, and a
    chattering input is muted behind one input_flapping."""
    c, clock, io = door(unlock_s=3, max_unlock_s=10)
    c.take_events()
    unlocked = 0.0
    for _ in range(120):
        press_exit(c)
        c.tick(clock.advance(0.25))
        press_exit(c, False)
        c.tick(clock.advance(0.25))
        unlocked += 0.5 if io.energised else 0.0
    assert unlocked <= 20, unlocked
    assert "input_flapping" in kinds(c)


def test_a_grant_in_unlocked_mode_says_no_end_not_infinity():
    import json

    c, clock, io = door()
    c.set_mode(DoorMode.UNLOCKED, "schedule")
    c.take_events()
    assert c.grant("p", "granted", source="remote:ops")
    grant = next(e for e in c.take_events() if e["kind"] == "grant")
    assert grant["unlock_s"] is None
    json.dumps(grant, allow_nan=False)  # Infinity is no JSON: strict parsers and the access log refused it


def test_credentials_that_cannot_be_read_lose_neither_the_grant_nor_its_event():
    from edge.door.backends.none import NoHardware
    from edge.door.controller import DoorTiming

    def broken(person_id):
        raise RuntimeError("the cache is unreadable")

    c = DoorController(NoHardware(), timing=DoorTiming(unlock_s=3), credentials_of=broken)
    c.start()
    c.take_events()
    assert c.grant("ben", "granted", event_id="e1") is True  # raised here, after the relay opened
    assert "grant" in [e["kind"] for e in c.take_events()]


def test_an_event_carries_the_time_it_happened_and_lost_ones_are_counted():
    """Door events were stamped when the main loop published them: an alarm raised while the loop
    was held up carried its later time. And events lost to the queue's bound were counted where
    nobody looked."""
    import time as wall

    c, clock, io = door()
    c.take_events()
    from datetime import datetime

    before = wall.time()
    contact(c, True)  # forced open
    wall.sleep(0.3)  # the loop takes its events later
    taken = wall.time()
    forced = next(e for e in c.take_events() if e["kind"] == "forced_open")
    stamped = datetime.fromisoformat(forced["timestamp"]).timestamp()
    assert before - 0.01 <= stamped <= taken - 0.25  # when it happened, not when it was taken
    assert c.health()["events_dropped"] == 0


def test_after_close_no_path_unlocks_the_relay_again():
    """close() locked the relay and released the backend, but a grant arriving after it (a
    signed cmd/unlock on the broker's thread during a stop: MQTT is still connected then) drove
    the relay again, and nothing was left to relock it. A closed door unlocks for nobody."""
    from edge.door.backends.none import NoHardware

    io = NoHardware()
    c, clock, io = door(io)
    c.close()
    driven: list[bool] = []
    io.set_relay = driven.append  # type: ignore[method-assign]  # what reaches the backend after close
    assert c.grant("p", "remote_unlock", source="remote:ops") is False
    c.set_mode(DoorMode.UNLOCKED, "schedule")
    c.on_input(DoorInput(InputKind.EXIT, True, clock.advance(0.1)))
    c.tick(clock.advance(1))
    assert relay_level(True, "fail-secure") not in driven
