"""`edge-verifier bench decode-memory`: peak RSS growth of a real hub under concurrent detects
of one large image, the figure the documented image limits promise ("full-size images at once").

Starts `edge-verifier hub` on a loopback port (no rate limit, no face crops kept), sends one
detect so that the models are loaded and one large image has been seen, then `--requests` at
once; prints JSON with VmRSS before and VmHWM (the peak) after, and the growth in MB. The image is
a photo of ../shared/faces scaled to `--megapixels` and JPEG-encoded under the 1.5 MB body limit.
A measurement, not a test: run it by hand on an otherwise idle machine (Linux: reads /proc).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge.dev.localenv import shared_faces_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["grey", "colour"], default="grey", help="8-bit grey or colour JPEG")
    parser.add_argument("--megapixels", type=float, default=39.0, help="image size (default 39 MP)")
    parser.add_argument("--requests", type=int, default=8, help="detects sent at once (default 8)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")


def _status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def large_jpeg(kind: str, megapixels: float) -> bytes:
    """A face photo scaled to `megapixels`, encoded small enough for the body limit."""
    import cv2

    photo = cv2.imread(str(shared_faces_dir() / "five_celebrity" / "Madonna" / "train_1.jpg"))
    if photo is None:
        raise SystemExit(f"no sample photo under {shared_faces_dir()}")
    side = int(math.sqrt(megapixels * 1_000_000))
    big = cv2.resize(photo, (side, side), interpolation=cv2.INTER_NEAREST)
    if kind == "grey":
        big = cv2.cvtColor(big, cv2.COLOR_BGR2GRAY)
    for quality in (30, 20, 10, 5):
        blob = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if len(blob) * 4 / 3 < 1_450_000:  # base64 in a JSON body
            return blob
    raise SystemExit("no JPEG quality keeps the image under the 1.5 MB body limit")


def run(args) -> int:
    from edge.api.client import CloudApiError, CloudUnavailable
    from edge.dev.devstack import HubProc

    blob = large_jpeg(args.kind, args.megapixels)
    image = base64.b64encode(blob).decode()
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProc(Path(tmp), models_dir=args.models_dir,
                      sections={"limits": {"rate_per_s": 0}})
        hub.start()
        try:
            assert hub.proc is not None
            client = hub.client(timeout=300, retries=0)

            def detect() -> str:
                try:
                    client.call("detect", {"image": image, "mode": 0})
                    return "0"
                except (CloudApiError, CloudUnavailable) as exc:
                    return str(getattr(exc, "code", type(exc).__name__))

            print(f"[decode-memory] warm-up detect: {detect()}", file=sys.stderr, flush=True)
            time.sleep(0.5)
            before = _status_mb(hub.proc.pid, "VmRSS")
            codes: list[str] = []
            threads = [threading.Thread(target=lambda: codes.append(detect())) for _ in range(args.requests)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            peak = _status_mb(hub.proc.pid, "VmHWM")
        finally:
            hub.stop()
    print(json.dumps({"kind": args.kind, "megapixels": args.megapixels, "requests": args.requests,
                      "image_bytes": len(blob), "codes": codes, "rss_before_mb": round(before),
                      "peak_mb": round(peak), "growth_mb": round(peak - before)}))
    return 0
