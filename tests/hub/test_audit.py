"""`edge-verifier audit`: the operator learns about look-alike persons and weak enrolment photos.

Real hub on loopback, real photos: Madonna enrolled twice under two ids (one person, two
photos), Elton John once with a good photo and once with a photo whose face is 36 px.
"""

from __future__ import annotations

import json

import cv2

from tests.support.hub import APPID, start_hub


def test_the_audit_reports_a_person_enrolled_twice_and_a_face_under_the_quality_gate(
        faces_dir, models_dir, tmp_path, capsys):
    from edge.cli import main
    from edge.core.matcher import CALIBRATED_THRESHOLDS
    from edge.hub.audit import audit
    from edge.vision import Pipeline, load_image

    celeb = faces_dir / "five_celebrity"
    pipe = Pipeline.load(models_dir, precision="int8")
    img = load_image(celeb / "Elton_John" / "train_2.jpg")
    box = pipe.analyze(img, max_faces=1)[0].box
    k = 36 / min(box[2], box[3])
    ok, small = cv2.imencode(".jpg", cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA))
    with start_hub(tmp_path) as hub, hub.client(timeout=30.0, retries=0) as client:
        client.newperson("madonna", ["staff"], (celeb / "Madonna" / "train_1.jpg").read_bytes())
        client.newperson("madonna-2", ["staff"], (celeb / "Madonna" / "train_2.jpg").read_bytes())
        client.newperson("elton", ["staff"], (celeb / "Elton_John" / "train_3.jpg").read_bytes())
        added = client.addface("elton", [small.tobytes()])
        assert added["added"] == 1
        fingerprint = pipe.fingerprint
        report = audit(hub.store, APPID, fingerprint, CALIBRATED_THRESHOLDS["int8"].accept)
        assert (report["persons"], report["faces"]) == (3, 4)
        assert [p["persons"] for p in report["look_alikes"]] == [["madonna", "madonna-2"]]
        assert report["look_alikes"][0]["score"] >= CALIBRATED_THRESHOLDS["int8"].accept
        assert report["weak_faces"] == [{"person_id": "elton", "face_id": added["face_ids"][0],
                                         "reason": "too_small"}]
        # one face each for the Madonnas, two for Elton: all three under the counts doors do best at
        assert report["photo_counts"] == {"under_3": [{"person_id": "madonna", "faces": 1},
                                                      {"person_id": "madonna-2", "faces": 1},
                                                      {"person_id": "elton", "faces": 2}], "over_5": []}

        # The same through the command line, from the hub's own config file.
        config = tmp_path / "hub.toml"
        config.write_text(
            f'[storage]\npath = "{hub.store_path}"\n[vision]\nmodels_dir = "{models_dir}"\n'
            f'[[credentials]]\nappid = "{APPID}"\nsecret_id = "{hub.secret_id}"\nsecret_key = "{hub.secret_key}"\n')
        config.chmod(0o600)
        assert main(["audit", "--config", str(config)]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["fingerprint"] == fingerprint
        assert out["appids"][APPID]["look_alikes"] == report["look_alikes"]
        # a hub whose store is named by [storage] url: the audit reads that one (it opened the
        # path alone, made an empty file there and reported no one: a false all-clear)
        config.write_text(
            f'[storage]\nurl = "sqlite:///{hub.store_path}"\npath = "{tmp_path / "elsewhere.sqlite3"}"\n'
            f'[vision]\nmodels_dir = "{models_dir}"\n'
            f'[[credentials]]\nappid = "{APPID}"\nsecret_id = "{hub.secret_id}"\nsecret_key = "{hub.secret_key}"\n')
        assert main(["audit", "--config", str(config)]) == 0
        assert json.loads(capsys.readouterr().out)["appids"][APPID]["look_alikes"] == report["look_alikes"]
        assert not (tmp_path / "elsewhere.sqlite3").exists()


def test_photo_counts_lists_persons_under_three_and_over_five_faces():
    from types import SimpleNamespace

    from edge.hub.audit import photo_counts

    faces = [SimpleNamespace(person_id=p) for p, n in (("ann", 1), ("bo", 3), ("cy", 5), ("di", 6), ("ed", 9),
                                                        ("fay", 2)) for _ in range(n)]
    assert photo_counts(faces) == {"under_3": [{"person_id": "ann", "faces": 1}, {"person_id": "fay", "faces": 2}],
                                   "over_5": [{"person_id": "ed", "faces": 9}, {"person_id": "di", "faces": 6}]}
    assert photo_counts([]) == {"under_3": [], "over_5": []}
