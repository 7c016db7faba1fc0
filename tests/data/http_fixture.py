"""A local HTTP server for download tests (127.0.0.1, a free port, never the internet).

Usage in a test module::

    from http_fixture import http_server, refused_url      # noqa: F401  (pytest fixture)

    def test_x(http_server):
        url = http_server.add("/data.zip", b"...")           # serve these bytes
        ...
        assert http_server.hits["/data.zip"] == 1

Modes of :meth:`FixtureServer.add`: ``"ok"``; ``"truncate"`` (announces the full
Content-Length, sends half the body, closes the connection); ``"status:404"`` (an error
status); ``"slow:<seconds>"`` (waits before answering).
"""
import collections
import http.server
import socket
import threading
import time

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        fixture = self.server.fixture
        path = self.path.split("?", 1)[0]
        with fixture.lock:
            fixture.hits[path] += 1
        if path not in fixture.routes:
            self.send_error(404, "not in fixture")
            return
        data, mode = fixture.routes[path]
        if mode.startswith("status:"):
            self.send_error(int(mode.split(":", 1)[1]))
            return
        if mode.startswith("slow:"):
            time.sleep(float(mode.split(":", 1)[1]))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeouts)
            pass


class FixtureServer:
    """A threaded HTTP server on 127.0.0.1 serving in-memory files; counts requests per path."""

    def __init__(self):
        self.routes = {}
        self.hits = collections.Counter()
        self.lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.fixture = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def start(self) -> "FixtureServer":
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes, mode: str = "ok") -> str:
        """Serve ``data`` at ``path``; returns the full URL."""
        self.routes[path] = (bytes(data), mode)
        return self.url(path)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server():
    """A started :class:`FixtureServer`, stopped after the test."""
    server = FixtureServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def refused_url():
    """A URL on 127.0.0.1 where the connection is refused (as when offline)."""
    return lambda name="file.zip": f"http://127.0.0.1:{free_port()}/{name}"
