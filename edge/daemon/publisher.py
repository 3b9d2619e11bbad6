"""What the daemon needs from its event transport (`Publisher`), and the transport when MQTT
is off (`NullPublisher`: decisions are logged and counted, nothing is sent).

edge.daemon.mqtt is the real transport; the main loop, health and metrics see only this
interface, so they neither import paho nor know how an event reaches the broker.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from typing import Any

log = logging.getLogger(__name__)


class Publisher(ABC):
    """What the daemon needs from the event transport."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def publish_event(self, event: dict[str, Any], leaf: str = "event") -> None:
        """Durably (outbox), on <prefix>/<device>/<leaf>: decisions on `event`, the door's on
        `door/<door>/event`."""

    def publish_retained(self, leaf: str, message: dict[str, Any]) -> None:  # noqa: B027 (optional)
        """The latest `message` of a retained topic (the door's state); sent again on reconnect."""

    def publish_direct(self, leaf: str, payload: bytes) -> bool:
        """Now or never (QoS 1, not queued): False when it cannot leave now (door commands)."""
        return False

    @abstractmethod
    def publish_state(self, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    connected: bool = False

    def outbox_depth(self) -> int:
        return 0

    def outbox_rejected(self) -> int:
        return 0

    def outbox_health(self) -> dict[str, Any]:
        return {"writable": True, "held_in_memory": 0, "dropped": 0}

    def sender_alive(self) -> bool:
        return True

    def loop_health(self) -> dict[str, Any]:
        """The transport's network loop (edge.daemon.mqtt.MqttPublisher.loop_health)."""
        return {"status": "ok", "reason": "", "restarts": 0, "handler_errors": 0}


class NullPublisher(Publisher):
    """MQTT disabled: decisions are only counted and logged."""

    def start(self) -> None:
        pass

    def publish_event(self, event: dict[str, Any], leaf: str = "event") -> None:
        # never the face image into the log ([mqtt] include_face_image with MQTT off)
        log.info("%s %s", leaf, json.dumps({k: v for k, v in event.items() if k != "face_image"}))

    def publish_state(self, state: dict[str, Any]) -> None:
        pass

    def stop(self) -> None:
        pass
