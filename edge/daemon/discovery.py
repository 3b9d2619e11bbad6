"""Home Assistant MQTT discovery: the retained messages that make a door two Home Assistant
sensors, "Last decision" and "Last person", without any configuration on the Home Assistant side.

Both sensors read the device's `event` topic (its fields as attributes) and its `availability`
topic. Home Assistant keeps discovered entities only while it runs: when it restarts it says
`online` on `<ha_prefix>/status`, and the messages are published again (edge.daemon.mqtt
subscribes to that topic with `[mqtt] ha_discovery = true`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

_SENSORS = {
    "decision": ("Last decision", "{{ value_json.decision }}"),
    "person": ("Last person", "{{ value_json.person_name or value_json.person_id or 'unknown' }}"),
}


def status_topic(ha_prefix: str) -> str:
    """Where Home Assistant says `online` when it (re)starts."""
    return f"{ha_prefix}/status"


def asks_again(payload: bytes | bytearray) -> bool:
    """Whether a message on the status topic means Home Assistant forgot our entities."""
    return payload == b"online"


def messages(ha_prefix: str, device_id: str, topic: Callable[[str], str]) -> list[tuple[str, str]]:
    """(topic, JSON payload) of each sensor's discovery config, to publish retained (QoS 1);
    `topic(leaf)` is the device's own topic of that leaf."""
    dev = {"identifiers": [f"edge-verifier-{device_id}"], "name": f"Door {device_id}",
           "manufacturer": "edge-verifier", "model": "edge daemon"}
    common = {"availability_topic": topic("availability"), "device": dev,
              "state_topic": topic("event"), "json_attributes_topic": topic("event")}
    out = []
    for key, (name, template) in _SENSORS.items():
        uid = f"edge_verifier_{device_id}_{key}".replace("-", "_").replace(".", "_")
        cfg = {**common, "name": name, "unique_id": uid, "value_template": template}
        out.append((f"{ha_prefix}/sensor/{uid}/config", json.dumps(cfg)))
    return out
