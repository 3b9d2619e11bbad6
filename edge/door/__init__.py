"""The door: the controller's state machine, the access rules, the I/O backends (gpio relay and
inputs, OSDP reader, Wiegand out, MQTT command) and the edge's access log.

The daemon wires it: a settled decision goes to `AccessRules.evaluate`, a grant to the
`DoorController`, which drives a `DoorIO` backend. Contracts in edge/door/interface.py.
"""
