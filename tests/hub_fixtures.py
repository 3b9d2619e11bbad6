"""Fixtures of the hub tests (real parts, started for the test session)."""
