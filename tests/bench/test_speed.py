"""`bench speed` runs the packs side by side and counts their MACs honestly."""

import json
import subprocess
import sys

import pytest


def test_bench_speed_reports_every_stage_and_the_mac_cost_of_each_pack(models_dir, faces_dir):
    out = subprocess.run(
        [sys.executable, "-m", "edge", "bench", "speed", "--json", "--repeats", "2",
         "--packs", "int8,fp32,int8-lite,int8-mirror", "--rounds", "2", "--reference", "opencv-zoo"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    report = json.loads(out.stdout)
    for pack in ("int8", "fp32", "int8-lite", "int8-mirror"):
        variant = report[pack]
        assert variant["per_face_ms"] > 0 and variant["cold_start_ms"] > 0 and variant["peak_rss_mb"] > 0
        assert variant["rounds"] == 2
        for stages in variant["threads"].values():
            assert set(stages) >= {"detect_ms", "landmarks_ms", "align_ms", "embed_ms", "per_face_ms"}
    assert report["int8"]["fingerprint"] != report["fp32"]["fingerprint"]
    # Same graphs, same MACs: quantization changes the arithmetic, not the work.
    assert report["int8"]["gmac"] == report["fp32"]["gmac"]
    # The default pack's SFace costs more than the lite pack's 512-d embedder.
    assert 0.1 < report["int8-lite"]["gmac_per_face"] < report["int8"]["gmac_per_face"]
    assert report["int8"]["gmac"]["embed"] > report["int8-lite"]["gmac"]["embed"]
    assert report["gmac_per_face"] == report["int8"]["gmac_per_face"]
    assert report["ratios"]["fp32_over_int8_per_face_1thread"] > 0
    # int8-mirror runs int8's files and its embedder twice a face: twice the embedding MACs.
    mirror = report["int8-mirror"]
    assert mirror["gmac"]["embed"] == pytest.approx(2 * report["int8"]["gmac"]["embed"], abs=2e-4)  # each rounded
    assert mirror["gmac"]["detect"] == report["int8"]["gmac"]["detect"]
    assert mirror["fingerprint"] != report["int8"]["fingerprint"]
    assert report["ratios"]["int8-mirror_over_int8_embed_1thread"] > 0
    # OpenCV Zoo's own YuNet + SFace, the pipeline behind issue 2's Pi 4 anchor, beside ours:
    # the same SFace MACs, and YuNet counted at the 320x240 it is given (its graph stores
    # 640x640 shapes, which once made the count 0.34 GMAC).
    zoo = report["opencv_zoo"]
    assert zoo["per_face_ms"] > 0 and zoo["threads"]["1"]["embed_ms"] > 0 and zoo["rounds"] == 2
    assert zoo["gmac"]["embed"] == report["int8"]["gmac"]["embed"]
    assert 0.03 < zoo["gmac"]["detect"] < 0.1
    assert report["ratios"]["opencv_zoo_over_int8_per_face"] > 0
    # The speed goal is that ratio, reported (not asserted: timing here is no test).
    goal = report["goals"]["faster_than_opencv_zoo_per_face"]
    assert goal["at_least"] == 1.5 and goal["measured"] == report["ratios"]["opencv_zoo_over_int8_per_face"]
    assert goal["met"] is (goal["measured"] >= 1.5)
