"""Fixtures of the vision tests (real parts, started for the test session)."""
