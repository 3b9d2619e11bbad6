"""The core both roles stand on: domain values, the face API's error codes, the matcher with its
calibrated thresholds and false-admit tables, request signatures, the settings base each role's
config builds on, the SQLite helper, and the sync feed's wire format with its change records. It
imports nothing of the project (the standard library and third-party packages only), so every
other package may import it; the import contracts in pyproject.toml check that."""
