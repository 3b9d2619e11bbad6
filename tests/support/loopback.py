"""Small servers on loopback for the tests of what talks to one (the hub's client, url
downloads, the edge's sync): an HTTP handler that logs nothing and answers with a length, served
in a thread until the block ends; a raw TCP server for a peer that misbehaves on purpose (slow,
late), each connection handled in its own thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test output free of access lines."""

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Answer `status` with `body`, its Content-Length and `headers`."""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1",
            server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
            wrap_socket: Callable | None = None) -> Iterator[ThreadingHTTPServer]:
    """`handler` served on a free port of `host` in a thread (one more a request) until the block
    ends; `wrap_socket(sock)` wraps the listening socket (TLS)."""
    server = server_class((host, 0), handler)
    server.daemon_threads = True
    if wrap_socket is not None:
        server.socket = wrap_socket(server.socket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class LoopbackServer:
    """Listens on 127.0.0.1 (a free port: `.port`) until `close()`; counts `connections`."""

    def __init__(self, backlog: int = 128):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
