"""`bench speed` runs both precisions side by side and stays inside the MAC budget."""

import json
import subprocess
import sys


def test_bench_speed_reports_every_stage_for_both_precisions_within_the_mac_budget(models_dir, faces_dir):
    out = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "speed", "--json", "--repeats", "2"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    report = json.loads(out.stdout)
    for precision in ("int8", "fp32"):
        variant = report[precision]
        assert variant["per_face_ms"] > 0 and variant["cold_start_ms"] > 0 and variant["peak_rss_mb"] > 0
        for stages in variant["threads"].values():
            assert set(stages) >= {"detect_ms", "landmarks_ms", "align_ms", "embed_ms", "per_face_ms"}
    assert report["int8"]["fingerprint"] != report["fp32"]["fingerprint"]
    # The budget: detection + landmarks + embedding at most 0.4 GMAC per face.
    assert 0.1 < report["gmac_per_face"] <= 0.4
    assert report["ratios"]["fp32_over_int8_per_face_1thread"] > 0
