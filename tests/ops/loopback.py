"""Loopback helpers shared by the tests in tests/ops (imported as a sibling module, like tests/data/http_fixture)."""
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
