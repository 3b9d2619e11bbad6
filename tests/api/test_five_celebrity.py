"""Enrol the five people of five_celebrity (train_* photos) in a real hub, then verify every
held-out val_* photo against every person: the right one matches, the others do not."""

from __future__ import annotations

import pytest

from edge.api.client import CloudApiError
from tests.support.hub import start_hub

TRAIN_PER_PERSON = 20  # every train_* photo (at most the 20-face limit)


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, faces_dir, photos, models_dir):
    root = faces_dir / "five_celebrity"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    with start_hub(tmp_path_factory.mktemp("celebrity")) as hub:
        client = hub.client(timeout=60)
        for name in people:
            blobs = photos.train(name)
            # enrol from the first photo with a face; add the next ones (a failed one is skipped)
            for i in range(len(blobs)):  # i: the photo enrolled, the next ones are added after it
                try:
                    client.newperson(name, ["celebrities"], blobs[i], person_name=name.replace("_", " "))
                    break
                except CloudApiError as exc:
                    assert exc.code in (-1101,), exc
            result = client.addface(name, blobs[i + 1: i + TRAIN_PER_PERSON])
            assert result["added"] >= 2, result
        val = {name: [p.read_bytes() for p in sorted(root.glob(f"{name}/val_*.jpg"))] for name in people}
        yield client, people, val
        client.close()


def test_each_held_out_photo_matches_its_person_and_no_one_else(enrolled):
    client, people, val = enrolled
    wrong = []
    for truth in people:
        for i, photo in enumerate(val[truth]):
            for claimed in people:
                try:
                    result = client.verify(claimed, photo)
                except CloudApiError as exc:
                    wrong.append((truth, i, claimed, f"code {exc.code}"))
                    continue
                if result["ismatch"] != (claimed == truth):
                    wrong.append((truth, i, claimed, result["confidence"]))
    total = sum(len(v) for v in val.values()) * len(people)
    assert not wrong, f"{len(wrong)} wrong of {total}: {wrong}"


def test_identify_ranks_the_right_person_first(enrolled):
    client, people, val = enrolled
    for truth in people:
        result = client.identify(val[truth][0], ["celebrities"])
        assert result["candidates"][0]["person_id"] == truth
        assert len(result["candidates"]) == len(people)
