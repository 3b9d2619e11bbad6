"""A fresh edge holds its camera until its first sync: a member who is at the door while the
edge boots meets the synced gallery, not an empty one (and is not turned away as unknown).

Real hub, mosquitto, models and photos; between the edge and the hub a loopback proxy that
answers late, as a hub over a slow link does. Without the hold the member's only frame was
decided against the empty gallery before the sync ended.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

from tests.conftest import free_port
from tests.support.broker import Broker, DaemonProc, Subscriber, enrol_five, write_edge_config
from tests.support.hub import start_hub
from tests.support.loopback import LoopbackServer


class LateProxy(LoopbackServer):
    """TCP on loopback to `target_port`, each connection held `delay_s` before it is forwarded."""

    def __init__(self, target_port: int, delay_s: float):
        self.target_port, self.delay_s = target_port, delay_s
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        time.sleep(self.delay_s)
        with conn, socket.create_connection(("127.0.0.1", self.target_port), timeout=10) as up:
            back = threading.Thread(target=_pump, args=(up, conn), daemon=True)
            back.start()
            _pump(conn, up)
            back.join(10)


def _pump(a: socket.socket, b: socket.socket) -> None:
    """a -> b until a ends, then b's write side closes (the other direction carries on)."""
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def test_a_fresh_edge_decides_its_first_face_on_the_synced_gallery(tmp_path, faces_dir):
    frames = tmp_path / "frames"
    frames.mkdir()
    member = min(p for p in (faces_dir / "five_celebrity").iterdir() if p.is_dir())
    shutil.copy(member / "val_1.jpg", frames / "00.jpg")  # one frame, read as soon as the camera opens
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        with start_hub(tmp_path / "hub") as hub, hub.client(timeout=30.0, retries=0) as client:
            enrolled = enrol_five(client, faces_dir, photos=1)
            proxy = LateProxy(int(hub.url.rsplit(":", 1)[1].split("/")[0]), delay_s=1.5)
            sub = Subscriber(broker, "test/door-boot/#")
            port = free_port()
            cfg = write_edge_config(tmp_path / "edge.toml", device="door-boot", camera=f"files:{frames}/*",
                                    broker=broker, hub=hub, storage=tmp_path / "data", api_port=port,
                                    sections={"identify": {"groups": ["staff"]},
                                              "hub": {"url": f"http://127.0.0.1:{proxy.port}"}})
            daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
            try:
                health = daemon.wait_health(lambda h: h["decisions"] >= 1 and h["pending"] == 0, 120)
                assert sub.wait_for(lambda: len(sub.json("/event")) >= 1, 15)
            finally:
                assert daemon.terminate() == 0
                sub.close()
                proxy.close()
    finally:
        broker.stop()
    event = sub.json("/event")[0]
    assert (event["decision"], event["person_id"]) == ("accept", member.name.lower())
    assert proxy.connections >= 1  # the edge really went through the late proxy
    assert health["sync"]["syncs"] >= 1 and health["cache"]["persons"] == len(enrolled)
    assert "waits for the first sync" in (tmp_path / "daemon.log").read_text()
