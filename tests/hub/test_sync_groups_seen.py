"""A door that syncs by group hears of a deletion only for persons once in one of its groups
(`group_members_seen`, so that a door's key taken learns nobody else's id). That table was
filled once, at the upgrade; a hub process of older code still running on the upgraded store
(the reembed steps run the new code beside the serving hub) enrolled persons without a row
there, and their deletion or their removal from a group never reached the group's doors: the
person kept passing. The groups a person is in when they are deleted or leave are recorded then.
On SQLite and on a real PostgreSQL cluster."""

from __future__ import annotations

import numpy as np
import pytest

from edge.hub.store.base import FaceRecord, Limits

FP = "fp"


def _enrol(store, person_id: str, groups: list[str]) -> None:
    face = FaceRecord(store.new_face_id(), person_id, (1, 2, 80, 80), [[1.0, 2.0]] * 5,
                      embeddings={FP: np.ones(8, np.float32) / np.sqrt(8)})
    store.create_person("app", person_id, groups, "", "", face, Limits())


def _as_older_code_left_it(store, person_id: str) -> None:
    with store._write("app") as c:
        store._q(c, "DELETE FROM group_members_seen WHERE person_id = ?", (person_id,))


@pytest.mark.parametrize("how", ["deleted", "leaves_the_group"])
def test_a_person_older_code_enrolled_is_dropped_by_the_groups_doors(hub_store, how):
    _enrol(hub_store, "bob", ["vault", "staff"])
    _as_older_code_left_it(hub_store, "bob")
    page = hub_store.sync_page("app", 0, FP, ["vault"], 100)
    assert {c.person_id for c in page.changes} == {"bob"}  # the vault door holds him
    if how == "deleted":
        hub_store.delete_person("app", "bob")
    else:
        hub_store.remove_groups("app", "bob", ["vault"])
    later = hub_store.sync_page("app", page.cursor, FP, ["vault"], 100)
    gone = [c for c in later.changes if c.person_id == "bob"]
    assert gone and all(c.deleted for c in gone), later.changes  # he stops passing there


def test_the_persons_gone_a_door_on_an_old_pack_hears_of_are_its_groups_only(hub_store):
    """What a door whose pack the hub no longer serves is told to drop: persons changed (deleted,
    out of its groups) since its cursor, of those once in its groups only (a door's key taken
    learns no one else's id), on SQLite and PostgreSQL."""
    _enrol(hub_store, "bob", ["vault"])
    _enrol(hub_store, "carol", ["board"])
    _enrol(hub_store, "dave", ["vault", "board"])
    since = hub_store.last_seq("app")
    _enrol(hub_store, "erin", ["vault"])  # enrolled since: never held there, not named
    hub_store.delete_person("app", "bob")
    hub_store.delete_person("app", "carol")
    hub_store.remove_groups("app", "dave", ["vault"])
    assert hub_store.vanished_since("app", since, ["vault"], 100) == ["bob", "dave"]
    # a door of every group: dave's groups changed too (any change drops a person there)
    assert hub_store.vanished_since("app", since, None, 100) == ["bob", "carol", "dave"]
    assert hub_store.vanished_since("app", hub_store.last_seq("app"), ["vault"], 100) == []


def test_a_door_on_an_old_pack_drops_a_person_enrolled_again_or_with_a_face_removed(hub_store):
    """Only the persons gone were named: one deleted and enrolled again under the same id (the
    fix for an enrolment with someone else's photo), or a face removed, kept their old faces at a
    door on a pack the hub no longer serves, which cannot take the new ones. Any change to a
    person it may hold drops them there (they wait for the new pack), and persons first enrolled
    after its cursor are not named (it never held them)."""
    _enrol(hub_store, "bob", ["vault"])
    _enrol(hub_store, "amy", ["vault"])
    face_id = hub_store.face_ids("app", "amy")[0]
    _enrol(hub_store, "cy", ["vault"])
    since = hub_store.last_seq("app")
    hub_store.delete_person("app", "bob")
    _enrol(hub_store, "bob", ["vault"])  # the same id, another face
    _enrol(hub_store, "amy2", ["vault"])
    hub_store.add_faces("app", "amy", [FaceRecord(hub_store.new_face_id(), "amy", (1, 2, 80, 80), [[1.0, 2.0]] * 5,
                                                   embeddings={FP: np.ones(8, np.float32) / np.sqrt(8)})], Limits())
    hub_store.delete_faces("app", "amy", [face_id])
    # `hub reembed` of every face (a change row each, nothing about the persons changed)
    hub_store.add_embeddings("app", "fp-next", {f: np.ones(8, np.float32) / np.sqrt(8)
                                                for p in ("amy", "bob", "cy") for f in hub_store.face_ids("app", p)})
    for groups in (["vault"], None):
        assert hub_store.vanished_since("app", since, groups, 100) == ["amy", "bob"]  # not cy, not amy2


def test_a_long_list_of_persons_changed_comes_in_parts(hub_store):
    """The list was the first `limit` by person_id, named again at every sync (the edge's cursor
    does not move on a pack not served): the persons after them were never dropped."""
    for i in range(5):
        _enrol(hub_store, f"p{i}", ["vault"])
    since = hub_store.last_seq("app")
    for i in range(5):
        hub_store.delete_person("app", f"p{i}")
    first = hub_store.vanished_since("app", since, ["vault"], 3)
    assert first == ["p0", "p1", "p2"]
    assert hub_store.vanished_since("app", since, ["vault"], 3, after=first[-1]) == ["p3", "p4"]

