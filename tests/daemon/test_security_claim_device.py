"""A single-use `/edge/claim` signature may name its door (`f=/edge/claim/<device>`), and must
with `[mqtt] commands_device_bound`: doors sharing `[api] credentials` took a claim signed for
another (sniffed on the LAN, its person changed) as their own, where the MQTT `cmd/verify`
carrying the same claim was refused as another device's. A real daemon's local API."""

from __future__ import annotations

import httpx
import pytest

from edge.api.app import check_bound_to
from edge.core import errors
from edge.core.errors import ApiError
from edge.core.signature import Verifier
from tests.conftest import free_port
from tests.support.broker import EDGE_API, DaemonProc, edge_auth, write_edge_config

DEVICE = "door-1"


class NoHub:  # a [hub] nobody answers at
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDclaimdev", "d" * 32


def test_a_device_bound_door_takes_only_claims_signed_for_it(tmp_path):
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device=DEVICE, camera=f"files:{tmp_path}/none/*", broker=None,
                            hub=NoHub, storage=tmp_path / "data", api_port=port,
                            sections={"mqtt": {"enabled": False, "commands_device_bound": True}})
    daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
    try:
        daemon.wait_health(lambda h: True, 60)

        def claim(f: str, person: str = "madonna") -> int:
            body = {"appid": EDGE_API.appid, "person_id": person}
            return httpx.post(f"http://127.0.0.1:{port}/edge/claim", json=body,
                              headers={"Authorization": edge_auth(expiry=0, fileid=f)}, timeout=30).json()["code"]

        assert claim("/edge/claim/door-2") == errors.SIGNATURE_INVALID  # another door's
        assert claim("/edge/claim") == errors.SIGNATURE_INVALID  # naming no door: refused when bound
        assert claim(f"/edge/claim/{DEVICE}") == 0
    finally:
        assert daemon.terminate() == 0


def test_an_unbound_door_takes_a_claim_naming_no_door_or_itself_and_never_another():
    verifier = Verifier([EDGE_API])
    for f, ok in (("/edge/claim", True), (f"/edge/claim/{DEVICE}", True), ("/edge/claim/door-2", False),
                  ("/face/verify", False)):
        sig = verifier.verify(edge_auth(expiry=0, fileid=f))
        if ok:
            check_bound_to(sig, "/edge/claim", DEVICE)
        else:
            with pytest.raises(ApiError):
                check_bound_to(sig, "/edge/claim", DEVICE)
    check_bound_to(verifier.verify(edge_auth(expiry=0, fileid="/face/verify")), "/face/verify")  # the hub: as ever
