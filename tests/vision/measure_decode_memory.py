"""Peak RSS growth of a real hub process under N concurrent detects of one large image (a
measurement, not a test): the figure docs/security.md gives for "full-size images at once".

    .venv/bin/python -m tests.vision.measure_decode_memory --kind grey --megapixels 39 --requests 8

Starts `edge-verifier hub` on a free loopback port, sends one detect (models loaded, one large
image seen), then N at once; prints VmRSS before, VmHWM after, and the growth in MB.
"""

from __future__ import annotations

import argparse
import base64
import math
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2


def _status_mb(pid: int, key: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _image(kind: str, megapixels: float) -> bytes:
    from tests.conftest import FACES

    photo = cv2.imread(str(Path(FACES) / "five_celebrity" / "Madonna" / "train_1.jpg"))
    side = int(math.sqrt(megapixels * 1_000_000))
    big = cv2.resize(photo, (side, side), interpolation=cv2.INTER_NEAREST)
    if kind == "grey":
        big = cv2.cvtColor(big, cv2.COLOR_BGR2GRAY)
    for quality in (30, 20, 10, 5):
        blob = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        if len(blob) * 4 / 3 < 1_450_000:
            return blob
    sys.exit("no quality keeps the image under the 1.5 MB body limit")


def main() -> None:
    from edge.dev.devstack import wait_healthy
    from tests.conftest import MODELS, free_port
    from tests.support.broker import EDGE_VERIFIER
    from tests.support.hub import APPID, SECRET_ID, HubServer, post

    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["grey", "colour"], default="grey")
    ap.add_argument("--megapixels", type=float, default=39.0)
    ap.add_argument("--requests", type=int, default=8)
    args = ap.parse_args()
    blob = _image(args.kind, args.megapixels)
    with tempfile.TemporaryDirectory() as tmp:
        port, key = free_port(), secrets.token_hex(16)
        cfg = Path(tmp) / "hub.toml"
        cfg.touch(mode=0o600)
        cfg.write_text(f'[server]\nport = {port}\n[storage]\npath = "{tmp}/hub.sqlite3"\nkeep_face_crops = false\n'
                       f'[[credentials]]\nappid = "{APPID}"\nsecret_id = "{SECRET_ID}"\nsecret_key = "{key}"\n'
                       f'[limits]\nrate_per_s = 0\n[vision]\nmodels_dir = "{MODELS}"\n')
        proc = subprocess.Popen([str(EDGE_VERIFIER), "hub", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hub = HubServer(f"http://127.0.0.1:{port}", APPID, SECRET_ID, key, Path(tmp) / "hub.sqlite3")
        body = {"appid": APPID, "image": base64.b64encode(blob).decode(), "mode": 0}
        try:
            if not wait_healthy(port, proc, timeout=60):
                sys.exit("hub did not start")
            print("warm-up:", post(hub, "detect", json=body).get("code"))
            time.sleep(0.5)
            before = _status_mb(proc.pid, "VmRSS")
            codes: list = []
            threads = [threading.Thread(target=lambda: codes.append(post(hub, "detect", json=body).get("code")))
                       for _ in range(args.requests)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            peak = _status_mb(proc.pid, "VmHWM")
            print(f"{args.requests} x {args.kind} {args.megapixels:g} MP JPEG ({len(blob)} bytes): codes {codes}; "
                  f"RSS before {before:.0f} MB, peak {peak:.0f} MB: +{peak - before:.0f} MB")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
