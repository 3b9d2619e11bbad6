"""edge-verifier: on-device face verification and the face API hub it syncs from."""

__version__ = "0.1.0"
