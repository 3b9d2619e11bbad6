"""Fixtures and helpers of the real parts several test folders use (broker, hub, PostgreSQL, TLS
files, the models), registered as pytest plugins by tests/conftest.py."""
