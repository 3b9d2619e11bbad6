// Enrolment by webcam (docs/console.md): the page's only script, served from /ui/static like
// htmx (no inline script: the Content-Security-Policy allows none). The camera runs only in a
// secure context (https, or http on loopback) and only on this page (Permissions-Policy).
// Every few seconds a frame goes to /ui/enrol/check, the same quality gate and look-alike
// check as an upload, and its verdict is shown; "Take photo" keeps a frame; "Enrol" sends the
// kept frames as the upload form's photos, through the same enrolment path.
"use strict";

(function () {
  const form = document.getElementById("webcam-form");
  if (!form) return;
  const video = document.getElementById("camera");
  const canvas = document.getElementById("frame");
  const status = document.getElementById("camera-status");
  const kept = document.getElementById("kept");
  const photos = form.querySelector("input[name=photos]");
  const csrf = form.querySelector("input[name=csrf]").value;
  const shots = [];
  let checking = false;
  let timer = null;

  function say(text) { status.textContent = text; }

  function grab() {
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  }

  function showVerdict(html) {
    const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("verdicts");
    const old = document.getElementById("verdicts");
    if (fresh && old) old.replaceWith(document.importNode(fresh, true));
  }

  async function check() {
    if (checking || !video.videoWidth) return;
    checking = true;
    try {
      const body = new FormData();
      body.append("csrf", csrf);
      body.append("person_id", form.querySelector("input[name=person_id]").value || "-");
      body.append("photos", await grab(), "webcam.jpg");
      const answer = await fetch("/ui/enrol/check", {method: "POST", body: body, credentials: "same-origin",
                                                    headers: {"HX-Request": "true", "X-CSRF-Token": csrf}});
      if (answer.ok) showVerdict(await answer.text());
      else say("the check answered " + answer.status);
    } catch (err) {
      say("the check failed: " + err);
    } finally {
      checking = false;
    }
  }

  function keep(blob) {
    shots.push(new File([blob], "webcam-" + (shots.length + 1) + ".jpg", {type: "image/jpeg"}));
    const files = new DataTransfer();
    shots.slice(-10).forEach((f) => files.items.add(f));
    photos.files = files.files;
    kept.textContent = photos.files.length + " photo(s) kept";
  }

  document.getElementById("start").addEventListener("click", async () => {
    if (!window.isSecureContext || !navigator.mediaDevices) {
      say("the camera needs https (or http on this machine's loopback address)");
      return;
    }
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}, audio: false});
      await video.play();
      say("camera on: hints every 2 s");
      timer = timer || setInterval(check, 2000);
      check();
    } catch (err) {
      say("no camera: " + err.name);
    }
  });

  document.getElementById("take").addEventListener("click", async () => {
    if (!video.videoWidth) { say("start the camera first"); return; }
    keep(await grab());
  });

  window.addEventListener("pagehide", () => {
    if (timer) clearInterval(timer);
    if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
  });
})();
