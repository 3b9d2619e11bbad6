"""Enrolment by webcam: the page's headers over HTTP, and in a real browser (Debian's chromium
driven by Playwright) with chromium's fake camera playing a video made at test time from a real
face photo: live quality hints from the check endpoint, photos taken, enrolled through the same
path as an upload, then a signed /face/verify of another photo of her matches. Skips, saying
why, without chromium or the playwright package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.hub.ui.support import PASSWORD, Browser, console_hub
from tests.support.hub import APPID

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "var" / "test-artifacts" / "console"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, models_dir):
    with console_hub(tmp_path_factory.mktemp("webcam")) as hub:
        yield hub


def test_only_the_webcam_page_may_use_the_camera_and_it_keeps_the_strict_csp(hub):
    browser = Browser(hub.url)
    browser.login("otto")
    page = browser.get("/ui/enrol/webcam")
    assert page.status_code == 200 and page.headers["Permissions-Policy"].startswith("camera=(self)")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in page.headers["Content-Security-Policy"]
    script = next(line for line in page.text.splitlines() if "webcam.js" in line)
    assert "<script src=\"/ui/static/" in script and "<script>" not in page.text  # no inline script
    src = script.split('src="')[1].split('"')[0]
    js = browser.get(src)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "getUserMedia" in js.text
    for other in ("/ui/enrol", "/ui/persons", "/ui/decisions"):
        assert browser.get(other).headers["Permissions-Policy"].startswith("camera=()"), other
    viewer = Browser(hub.url)
    viewer.login("vera")
    assert viewer.get("/ui/enrol/webcam").status_code == 403


def y4m_of(photo: Path, out: Path) -> Path:
    """A one-frame 640x480 Y4M video (chromium's fake camera loops it) of the photo, centred."""
    import cv2

    img = cv2.imread(str(photo))
    scale = min(640 / img.shape[1], 480 / img.shape[0])
    img = cv2.resize(img, (int(img.shape[1] * scale) // 2 * 2, int(img.shape[0] * scale) // 2 * 2))
    frame = np.zeros((480, 640, 3), np.uint8)
    y, x = (480 - img.shape[0]) // 2, (640 - img.shape[1]) // 2
    frame[y:y + img.shape[0], x:x + img.shape[1]] = img
    yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)
    out.write_bytes(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + yuv.tobytes())
    return out


def test_an_operator_enrols_by_webcam_with_live_hints_and_the_person_is_then_verified(hub, faces_dir, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("chromium not installed (apt-get install chromium; make test installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    video = y4m_of(faces_dir / "five_celebrity/Madonna/train_1.jpg", tmp_path / "madonna.y4m")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={video}"])
        try:
            context = chromium.new_context()
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # CSP refusals
            page.goto(f"{hub.url}/ui/login")
            page.fill("input[name=username]", "otto")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/ui/persons")
            page.goto(f"{hub.url}/ui/enrol/webcam")
            page.fill("input[name=person_id]", "madonna")
            page.fill("input[name=person_name]", "Madonna")
            page.fill("input[name=group_ids]", "staff")
            page.click("#start")
            page.wait_for_selector("#verdicts >> text=passes", timeout=60_000)  # a live hint from the check
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "enrol-webcam-desktop.png"), full_page=True)
            page.click("#take")
            page.wait_for_selector("text=1 photo(s) kept", timeout=10_000)
            page.click("button:text-is('Enrol')")
            page.wait_for_selector("text=Enrolled", timeout=60_000)
            assert not [e for e in errors if "Content Security Policy" in e or "Permissions" in e], errors
        finally:
            chromium.close()
    assert len(hub.store.get_person(APPID, "madonna").face_ids) == 1
    client = hub.client(timeout=60.0, retries=0)
    try:
        answer = client.verify("madonna", (faces_dir / "five_celebrity/Madonna/val_1.jpg").read_bytes())
    finally:
        client.close()
    assert answer["ismatch"] == 1, answer
