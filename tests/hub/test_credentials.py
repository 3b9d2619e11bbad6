"""Credentials of persons on the hub: stored per person on SQLite and PostgreSQL, one card to one
person, gone with the person, in the sync feed with a change row; the API's codes, and its
answers never repeating a number except to getcredentials."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core import errors
from edge.core.credentials import Credential
from edge.hub.store import FaceRecord, Limits
from tests.conftest import code_of

FP = "fingerprint-a"
ANN = [Credential("h10301", 12345, facility=42), Credential("raw", 0b1011, bits=6)]
BEN = [Credential("h10304", 424242, facility=31337)]


def face(store, person_id: str, seed: int = 0) -> FaceRecord:
    vec = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return FaceRecord(face_id=store.new_face_id(), person_id=person_id, box=(1, 2, 30, 40),
                      landmarks=[[1.0, 2.0]] * 5, quality=0.9, embeddings={FP: vec / np.linalg.norm(vec)})


@pytest.fixture
def store(hub_store):
    s = hub_store
    for pid in ("ann", "ben"):
        s.create_person("app", pid, ["staff"], pid.title(), "", face(s, pid), Limits())
    return s


def test_set_get_replace_and_remove(store) -> None:
    assert store.get_credentials("app", "ann") == []
    store.set_credentials("app", "ann", ANN)
    assert store.get_credentials("app", "ann") == ANN  # in the order given
    store.set_credentials("app", "ann", ANN[1:])
    assert store.get_credentials("app", "ann") == ANN[1:]
    store.set_credentials("app", "ann", [])
    assert store.get_credentials("app", "ann") == []
    assert code_of(store.set_credentials, "app", "nobody", ANN) == errors.PERSON_UNKNOWN
    assert code_of(store.get_credentials, "app", "nobody") == errors.PERSON_UNKNOWN


def test_one_card_names_one_person_per_appid(store) -> None:
    store.set_credentials("app", "ann", ANN)
    assert code_of(store.set_credentials, "app", "ben", [*BEN, ANN[0]]) == errors.INVALID_PARAMETER
    assert store.get_credentials("app", "ben") == []  # nothing of the refused call stayed
    store.set_credentials("app", "ann", ANN + ANN)  # the same card twice for one person: once
    assert store.get_credentials("app", "ann") == ANN
    # another appid is another site: the same card may exist there
    store.create_person("other", "cid", ["g"], "", "", face(store, "cid"), Limits())
    store.set_credentials("other", "cid", ANN[:1])
    assert store.get_credentials("other", "cid") == ANN[:1]
    assert store.get_credentials("app", "ann") == ANN


def test_credentials_go_with_the_person(store) -> None:
    store.set_credentials("app", "ann", ANN)
    store.delete_person("app", "ann")
    store.create_person("app", "ann", ["staff"], "", "", face(store, "ann", 3), Limits())
    assert store.get_credentials("app", "ann") == []
    store.set_credentials("app", "ben", ANN)  # the card is free again


def test_sync_feed_carries_the_current_set_with_a_change_row(store) -> None:
    since = store.last_seq("app")
    store.set_credentials("app", "ann", ANN)
    page = store.sync_page("app", since, FP, None, 100)
    (change,) = page.changes
    assert change.person_id == "ann" and change.credentials == tuple(ANN)
    store.set_credentials("app", "ann", [])
    page = store.sync_page("app", page.cursor, FP, None, 100)
    assert [(c.person_id, c.credentials) for c in page.changes] == [("ann", ())]
    # outside the groups an edge syncs: nothing at all (it never held ben) ...
    store.set_credentials("app", "ben", BEN)
    assert store.sync_page("app", page.cursor, FP, ["other-group"], 100).changes == []
    # ... or, once in them, a tombstone without the credentials
    store.add_groups("app", "ben", ["other-group"], Limits())
    store.remove_groups("app", "ben", ["other-group"])
    page = store.sync_page("app", page.cursor, FP, ["other-group"], 100)
    assert page.changes and all(c.deleted and getattr(c, "credentials", ()) == () for c in page.changes)


def test_repr_of_a_change_never_shows_the_number(store) -> None:
    store.set_credentials("app", "ben", BEN)
    page = store.sync_page("app", 0, FP, None, 100)
    text = repr(page)
    assert "424242" not in text and "31337" not in text


# --- the HTTP API, on the real hub (SQLite and PostgreSQL) ------------------------------------------
def person(hub_server, pid: str) -> str:
    store = hub_server.app.state.service.store
    try:
        store.create_person(hub_server.appid, pid, ["cards"], "", "", face(store, pid, 7), Limits())
    except Exception:
        pass  # the session's hub: made by an earlier run of the test on this backend
    return pid


def test_api_setcredentials_and_getcredentials(hub_server, hub_client) -> None:
    from edge.api.client import CloudApiError

    pid = person(hub_server, "card_holder")
    body = [{"format": "h10301", "facility": 42, "number": 12345}, {"format": "raw", "bits": 6, "number": 11}]
    answer = hub_client.setcredentials(pid, body)
    assert answer["credentials"] == 2 and "12345" not in str(answer)  # no number in the answer
    assert hub_client.getcredentials(pid)["credentials"] == body  # the signed read gives them back
    assert hub_client.setcredentials(pid, [])["credentials"] == 0
    assert hub_client.getcredentials(pid)["credentials"] == []

    def code(fn, *args) -> tuple[int, str]:
        with pytest.raises(CloudApiError) as info:
            fn(*args)
        return info.value.code, info.value.message

    assert code(hub_client.setcredentials, "nobody_here", body)[0] == errors.PERSON_UNKNOWN
    c, message = code(hub_client.setcredentials, pid, [{"format": "h10301", "facility": 256, "number": 987654}])
    assert c == errors.INVALID_PARAMETER and "credentials[0]" in message and "987654" not in message
    assert code(hub_client.setcredentials, pid, [{"format": "wiegand99", "number": 1}])[0] == errors.INVALID_PARAMETER
    assert code(hub_client.setcredentials, pid, [[1, 2]])[0] == errors.INVALID_PARAMETER
    assert code(hub_client.setcredentials, pid, [{"format": "h10301", "facility": {"x": 1}, "number": 1}])[0] \
        == errors.INVALID_PARAMETER
    assert code(hub_client.setcredentials, pid, [body[0]] * 17)[0] == errors.INVALID_PARAMETER
    assert code(hub_client.call, "setcredentials", {"person_id": pid})[0] == errors.PARAMETER_EMPTY
    assert code(hub_client.call, "setcredentials", {"person_id": pid, "credentials": "12345"})[0] \
        == errors.INVALID_PARAMETER
