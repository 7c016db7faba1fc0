"""Loopback helpers shared by the tests in tests/ops (imported as a sibling module, like tests/data/http_fixture)."""
import contextlib
import socket
import subprocess
import sys
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(checkpoint, root, timeout: float = 90.0):
    """``python -m recstudio serve --checkpoint <checkpoint>`` on a free 127.0.0.1 port, started from ``root``;
    yields ``(url, proc)`` once ``/health`` answers and terminates the server afterwards (killed if it lingers).
    ``proc.stdout`` holds the server's output once the block is left."""
    import httpx
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recstudio", "serve", "--checkpoint", str(checkpoint),
                             "--port", str(port)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + timeout
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                httpx.get(url + "/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.time() < deadline, f"the server did not start within {timeout:.0f} s"
                time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
