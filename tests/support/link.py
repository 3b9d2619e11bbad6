"""A TCP link between a client and a real server that can go quiet, the way Wi-Fi or a pulled
cable does: `pass` forwards, `quiet` keeps the connections open and drops every byte (TCP
notices nothing; only the protocol's keepalive does), `refuse` closes new connections."""

from __future__ import annotations

import socket
import threading


class QuietLink:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.mode = "pass"
        self.target = (host, target_port)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed
                return
            if self.mode == "refuse":
                conn.close()
                continue
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            self._open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                if self.mode == "pass":
                    b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self._server.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass
