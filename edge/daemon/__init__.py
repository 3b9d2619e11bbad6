"""The edge daemon: settings (config), camera, tracker, decision policy (decide), sync with the
hub and its local cache, the decision events (decision_event), their durable outbox (outbox) and
MQTT transport (mqtt, behind publisher) with Home Assistant discovery (discovery), the local API
service, metrics, systemd notify, the model pack pull (pull_pack), and the wiring with its main
loop (main). It may import edge.core, edge.api, edge.vision and edge.modelpack; never edge.hub
(it reaches the hub over HTTP only), edge.dev or edge.bench (pyproject.toml's import contracts
check it)."""
