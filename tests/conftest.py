"""Shared fixtures. Network tests only ever talk to a server on 127.0.0.1 that the test starts."""

from __future__ import annotations

import functools
import http.server
import signal
import threading
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def children_take_ctrl_c():
    """Processes the tests start take SIGINT as from a terminal, as the Ctrl-C tests need.

    A suite started in the background by a script (`make test &`, `bash -c '...' &`: no job control)
    inherits SIGINT ignored, and so would every child; Python leaves an ignored SIGINT ignored.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


class _FolderHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; answers 503 to the first `fail_first` requests; records every request path."""

    served: "LocalServers"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.served.record_and_should_fail(self.path):
            self.send_error(503, "Service Unavailable (test server told to fail)")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


class LocalServers:
    """The `http_server` fixture: `http_server(directory, fail_first=0) -> base_url` (no trailing slash).

    `http_server.requests` lists the paths requested from every server this test started, in order.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._failures_left = 0
        self._lock = threading.Lock()
        self._servers: list[http.server.ThreadingHTTPServer] = []

    def __call__(self, directory: str | Path, fail_first: int = 0) -> str:
        self._failures_left = fail_first
        handler = functools.partial(type("Handler", (_FolderHandler,), {"served": self}), directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # a short poll interval: shutdown() at teardown waits for one poll
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def record_and_should_fail(self, path: str) -> bool:
        with self._lock:
            self.requests.append(path)
            if self._failures_left > 0:
                self._failures_left -= 1
                return True
            return False

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def http_server() -> Iterator[LocalServers]:
    servers = LocalServers()
    yield servers
    servers.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the port was free a moment ago and is closed now."""
    from ganops.servers import free_port

    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def local_servers(tmp_path_factory):
    """A real PostgreSQL (unix socket) and `mlflow server` over it on 127.0.0.1 with proxied artifacts.

    Started once for the session by the same code as `make servers`; both stop at the end, also when
    a test (or the start itself) failed.
    """
    from ganops import servers

    folder = tmp_path_factory.mktemp("servers")
    try:
        yield servers.start(folder, port=servers.free_port())
    finally:
        servers.stop(folder)
