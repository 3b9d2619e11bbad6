"""Home Assistant MQTT discovery: the retained messages that make a door two Home Assistant
sensors, "Last decision" and "Last person", a `lock` and three binary sensors (door contact,
tamper, alarm), without any configuration on the Home Assistant side.

The sensors read the device's `event` topic (its fields as attributes) and its `availability`
topic; the lock and the binary sensors read the retained `door/<door>/state`. The lock's
command topic is `cmd/unlock`, where an unlock is applied only when signed (edge.daemon.commands):
Home Assistant's plain `UNLOCK` is refused, so the lock shows the door and opens it only through
a signing bridge (docs/door.md#home-assistant).

Home Assistant keeps discovered entities only while it runs: when it restarts it says `online`
on `<ha_prefix>/status`, and the messages are published again (edge.daemon.mqtt subscribes to
that topic with `[mqtt] ha_discovery = true`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

# "Last person" names a person only when a door would open for them (`admits`): an event's
# person_id is also the claimed person of a refused claim and the nearest member of a refused
# stranger, and an automation on "Last person = Madonna" fired for whoever was refused as her;
# an accept is also the match of a print with liveness `flag`, which the door refuses.
_SENSORS = {
    "decision": ("Last decision", "{{ value_json.decision }}"),
    "person": ("Last person", "{{ (value_json.person_name or value_json.person_id) if value_json.admits is true"
                              " else 'none' }}"),
}
# The attributes Home Assistant keeps (in its recorder, shown to its users): a few plain fields,
# never the face image (base64, over HA's 16 KiB attribute limit) or the candidates, and a person
# only when accepted (as above).
_ATTRIBUTES = ("{{ {'decision': value_json.decision, 'reason': value_json.get('reason'),"
               " 'mode': value_json.get('mode'), 'timestamp': value_json.timestamp,"
               " 'person_id': value_json.person_id if value_json.admits is true else none,"
               " 'late_s': value_json.get('late_s')} | tojson }}")


def status_topic(ha_prefix: str) -> str:
    """Where Home Assistant says `online` when it (re)starts."""
    return f"{ha_prefix}/status"


def asks_again(payload: bytes | bytearray) -> bool:
    """Whether a message on the status topic means Home Assistant forgot our entities."""
    return payload == b"online"


_DOOR_SENSORS = {
    "contact": ("Door", "door", "{{ 'ON' if value_json.contact == 'open' else 'OFF' }}"),
    "tamper": ("Tamper", "tamper", "{{ 'ON' if value_json.tamper else 'OFF' }}"),
    "alarm": ("Door alarm", "problem", "{{ 'ON' if value_json.alarm else 'OFF' }}"),
}


def messages(ha_prefix: str, device_id: str, topic: Callable[[str], str],
             door: str | None = None) -> list[tuple[str, str]]:
    """(topic, JSON payload) of each sensor's discovery config, to publish retained (QoS 1);
    `topic(leaf)` is the device's own topic of that leaf."""
    dev = {"identifiers": [f"edge-verifier-{device_id}"], "name": f"Door {device_id}",
           "manufacturer": "edge-verifier", "model": "edge daemon"}
    common = {"availability_topic": topic("availability"), "device": dev,
              "state_topic": topic("event"), "json_attributes_topic": topic("event"),
              "json_attributes_template": _ATTRIBUTES,
              "force_update": True}  # two accepts of one person in a row are two entries, not one state
    out = []
    for key, (name, template) in _SENSORS.items():
        uid = _uid(device_id, key)
        cfg = {**common, "name": name, "unique_id": uid, "value_template": template}
        out.append((f"{ha_prefix}/sensor/{uid}/config", json.dumps(cfg)))
    if door is None:
        return out
    state = topic(f"door/{door}/state")
    base = {"availability_topic": topic("availability"), "device": dev, "state_topic": state,
            "json_attributes_topic": state}
    uid = _uid(device_id, f"door_{door}_lock")
    lock = {**base, "name": f"Lock {door}", "unique_id": uid, "command_topic": topic("cmd/unlock"),
            "value_template": "{{ 'LOCKED' if value_json.locked else 'UNLOCKED' }}",
            "state_locked": "LOCKED", "state_unlocked": "UNLOCKED"}
    out.append((f"{ha_prefix}/lock/{uid}/config", json.dumps(lock)))
    for key, (name, device_class, template) in _DOOR_SENSORS.items():
        uid = _uid(device_id, f"door_{door}_{key}")
        cfg = {**base, "name": f"{name} {door}", "unique_id": uid, "device_class": device_class,
               "value_template": template}
        out.append((f"{ha_prefix}/binary_sensor/{uid}/config", json.dumps(cfg)))
    return out


def _uid(device_id: str, key: str) -> str:
    return f"edge_verifier_{device_id}_{key}".replace("-", "_").replace(".", "_")
