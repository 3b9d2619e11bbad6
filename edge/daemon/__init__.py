"""The edge daemon: settings (config), decision policy (decide), local API service (service),
metrics, systemd notify, and the wiring with its main loop (main)."""
