"""POST /face/sync: pages of changes reproduce the hub's state from cursor 0 and from a mid
cursor, with group filters, tombstones, and per-fingerprint embeddings (real hub, real photos)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from edge.api.client import CloudApiError
from tests.support.hub import start_hub


class Replica:
    """What an edge keeps: persons and faces, built only from the feed."""

    def __init__(self):
        self.persons: dict[str, tuple] = {}
        self.faces: dict[str, tuple[str, str]] = {}
        self.cursor = 0

    def apply(self, changes: list[dict]) -> None:
        for c in changes:
            if c["type"] == "person":
                if c["deleted"]:
                    self.persons.pop(c["person_id"], None)
                    self.faces = {f: v for f, v in self.faces.items() if v[0] != c["person_id"]}
                else:
                    self.persons[c["person_id"]] = (c["person_name"], c["tag"], tuple(c["group_ids"]))
            elif c["deleted"]:
                self.faces.pop(c["face_id"], None)
            else:
                self.faces[c["face_id"]] = (c["person_id"], c["embedding"])

    def pull(self, client, fingerprint, group_ids=None, limit=3) -> int:
        pages = 0
        while True:
            page = client.sync(self.cursor, fingerprint, group_ids=group_ids, limit=limit)
            seqs = [c["seq"] for c in page["changes"]]
            assert seqs == sorted(seqs) and all(s > self.cursor for s in seqs)
            assert len(seqs) <= limit and page["fingerprint"] == fingerprint
            self.apply(page["changes"])
            self.cursor = page["cursor"]
            pages += 1
            if not page["has_more"]:
                return pages


def hub_state(hub, client, fingerprint, group_ids=None):
    persons = {}
    wanted = set(group_ids) if group_ids else None
    for group in client.getgroupids()["group_ids"]:
        for pid in client.getpersonids(group)["person_ids"]:
            info = client.getinfo(pid)
            if wanted is None or wanted & set(info["group_ids"]):
                persons[pid] = (info["person_name"], info["tag"], tuple(info["group_ids"]))
    faces = {
        face.face_id: (face.person_id, base64.b64encode(np.asarray(face.embedding, "<f4").tobytes()).decode())
        for face in hub.store.embeddings(hub.appid, fingerprint, group_ids=group_ids or None)
    }
    return persons, faces


@pytest.fixture(scope="module")
def hub(tmp_path_factory, models_dir):
    with start_hub(tmp_path_factory.mktemp("sync"), vision={"also_embed": ["fp32"]}) as hub:
        client = hub.client(timeout=60)
        yield hub, client, hub.app.state.service.vision.primary.fingerprint
        client.close()


def test_paging_from_zero_and_from_a_mid_cursor_reproduce_the_hub(hub, photos):
    hub, client, fp = hub
    client.newperson("ben", ["door1"], photos("Ben_Afflek", "train_2"), person_name="Ben", tag="staff")
    client.addface("ben", [photos("Ben_Afflek", "train_3"), photos("Ben_Afflek", "train_4")])
    client.newperson("elton", ["door1", "door2"], photos("Elton_John", "train_2"))
    client.newperson("jerry", ["door2"], photos("Jerry_Seinfield", "train_2"))

    mid = Replica()
    mid.pull(client, fp)
    assert (mid.persons, mid.faces) == hub_state(hub, client, fp)

    # change, then delete
    client.setinfo("ben", person_name="Benjamin")
    ben_faces = client.getfaceids("ben")["face_ids"]
    client.delface("ben", ben_faces[:1])
    client.addgroupids("jerry", ["door1"])
    client.delgroupids("elton", ["door1"])
    client.delperson("jerry")
    client.newperson("madonna", ["door2"], photos("Madonna", "train_2"))

    pages = mid.pull(client, fp)
    assert pages >= 2
    full = Replica()
    full.pull(client, fp, limit=2)
    expected = hub_state(hub, client, fp)
    assert (mid.persons, mid.faces) == expected
    assert (full.persons, full.faces) == expected
    assert "jerry" not in full.persons and full.persons["ben"][0] == "Benjamin"
    assert ben_faces[0] not in full.faces and len(full.faces) == 2 + 1 + 1


def test_group_filter_sends_only_its_persons_and_tombstones_those_who_leave(hub, photos):
    hub, client, fp = hub
    client.newperson("lobby-a", ["lobby"], photos("Ben_Afflek", "train_5"))
    client.newperson("lobby-b", ["lobby", "garage"], photos("Elton_John", "train_5"))
    edge = Replica()
    edge.pull(client, fp, group_ids=["lobby"])
    assert set(edge.persons) == set(hub_state(hub, client, fp, ["lobby"])[0])
    assert {"lobby-a", "lobby-b"} <= set(edge.persons)

    client.delgroupids("lobby-b", ["lobby"])       # leaves the filter
    client.addgroupids("elton", ["lobby"])         # enters it, with its faces
    edge.pull(client, fp, group_ids=["lobby"])
    persons, faces = hub_state(hub, client, fp, ["lobby"])
    assert (edge.persons, edge.faces) == (persons, faces)
    assert "lobby-b" not in edge.persons and "elton" in edge.persons
    assert any(pid == "elton" for pid, _ in edge.faces.values())


def test_embeddings_are_served_for_each_stored_fingerprint(hub, photos):
    hub, client, fp = hub
    other = [f for f in hub.app.state.service.vision.fingerprints if f != fp][0]
    a = client.sync(0, fp, limit=1000)["changes"]
    b = client.sync(0, other, limit=1000)["changes"]
    ea = {c["face_id"]: c["embedding"] for c in a if c["type"] == "face" and not c["deleted"]}
    eb = {c["face_id"]: c["embedding"] for c in b if c["type"] == "face" and not c["deleted"]}
    assert ea.keys() == eb.keys() and ea
    fid = next(iter(ea))
    va = np.frombuffer(base64.b64decode(ea[fid]), "<f4")
    vb = np.frombuffer(base64.b64decode(eb[fid]), "<f4")
    assert abs(np.linalg.norm(va) - 1) < 1e-3 and not np.array_equal(va, vb)
    assert all(isinstance(c["quality"], float) for c in a if c["type"] == "face" and not c["deleted"])


def test_unknown_fingerprint_is_21_naming_both(hub):
    hub, client, fp = hub
    with pytest.raises(CloudApiError) as info:
        client.sync(0, "deadbeefdeadbeef")
    assert info.value.code == 21
    assert "deadbeefdeadbeef" in info.value.message and fp in info.value.message


def test_cursor_past_the_end_returns_an_empty_page(hub):
    hub, client, fp = hub
    last = hub.store.last_seq(hub.appid)
    page = client.sync(last, fp)
    mark = page["cursor_mark"]
    assert page == {"cursor": last, "has_more": False, "fingerprint": fp, "changes": [], "head": last,
                    "since_mark": mark, "cursor_mark": mark}
    assert len(mark) > 10  # the time the hub made change `last`
    past = client.sync(last + 5, fp)  # past its newest: no change there, the edge learns the hub went back
    assert (past["changes"], past["head"], past["since_mark"]) == ([], last, "")
