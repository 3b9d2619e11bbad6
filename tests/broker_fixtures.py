"""Fixtures of the broker tests (real parts, started for the test session)."""
