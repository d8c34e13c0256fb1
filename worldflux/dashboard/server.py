"""The dashboard's web server: the standard library's ``ThreadingHTTPServer`` on loopback, serving the page
(``/``), the state as JSON (``/api/state``) and a health check (``/healthz``).

It runs on a daemon thread, so it never keeps the process alive or blocks training from stopping; it keeps
serving after training ends for as long as the process lives, until :meth:`DashboardServer.close`.
Only loopback addresses are accepted: the page has no authentication.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from .state import DashboardState

__all__ = ["LOOPBACK_HOSTS", "DashboardServer"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def _page(refresh_ms: int, title: str) -> bytes:
    template = resources.files("worldflux.dashboard").joinpath("page.html").read_text(encoding="utf-8")
    safe_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return template.replace("__REFRESH_MS__", str(int(refresh_ms))).replace("__TITLE__", safe_title).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Requests are not logged to the terminal (the page polls every refresh)."""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/api/state":
            body = json.dumps(self.server.state.snapshot()).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok", "text/plain")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # request threads never delay shutdown or process exit
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: DashboardState, page: bytes) -> None:
        self.state = state
        self.page = page
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (closed tab, timed-out poll) is normal; other errors print as usual."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class DashboardServer:
    """Serve ``state`` at ``http://host:port/`` from a daemon thread.

    Args:
        state: the recorded data.
        host: ``"127.0.0.1"`` or ``"localhost"`` (loopback only; anything else raises ValueError).
        port: TCP port; 0 picks a free one. A busy port raises OSError naming it.
        refresh_ms: how often the page polls ``/api/state``.
    """

    def __init__(self, state: DashboardState, host: str = "127.0.0.1", port: int = 8765, refresh_ms: int = 1000):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"dashboard host must be a loopback address {list(LOOPBACK_HOSTS)}, got {host!r}")
        self.state = state
        bind = "127.0.0.1" if host == "localhost" else host
        try:
            self._server = _Server((bind, int(port)), state, _page(refresh_ms, state.title))
        except OSError as exc:
            raise OSError(f"cannot serve the dashboard on {bind}:{port}: {exc.strerror or exc}") from exc
        self.host = bind
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="worldflux-dashboard", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving (idempotent); waits at most ``timeout`` seconds for the server thread."""
        if self._closed:
            return
        self._closed = True
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout)
        self._thread.join(timeout)
        self._server.server_close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (for tests and ``port = 0`` previews)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
