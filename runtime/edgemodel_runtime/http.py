"""The HTTP server of a runtime process: ``/metrics``, ``/healthz``, ``/readyz``, ``POST /predict``.

It only serves what :class:`Endpoints` produces; what the answers mean is decided in
:mod:`edgemodel_runtime.app`. I/O: one listening socket, a thread per request.
"""

from __future__ import annotations

import json
import logging
import threading
from http import server
from typing import Any, Protocol

__all__ = ["MAX_BODY_BYTES", "Endpoints", "Server"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20


class Endpoints(Protocol):
    def metrics_text(self) -> tuple[bytes, str]: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]: ...


def _handler(endpoints: Endpoints) -> type[server.BaseHTTPRequestHandler]:
    class Handler(server.BaseHTTPRequestHandler):
        server_version = "edgemodel-runtime"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, obj: dict[str, Any]) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = endpoints.metrics_text()
                self._send(200, body, content_type)
            elif path == "/healthz":
                ok, detail = endpoints.health()
                self._json(200 if ok else 503, detail)
            elif path == "/readyz":
                ok, detail = endpoints.readiness()
                self._json(200 if ok else 503, detail)
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/predict":
                self._json(404, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY_BYTES:
                self.close_connection = True
                self._json(
                    413, {"error": "too_large", "detail": f"body must be at most {MAX_BODY_BYTES} bytes"}
                )
                return
            code, answer = endpoints.predict(self.rfile.read(length))
            self._json(code, answer)

    return Handler


class Server:
    """A threaded HTTP server on ``bind:port``; port 0 picks a free one (see :attr:`port`)."""

    def __init__(self, endpoints: Endpoints, *, bind: str, port: int) -> None:
        self._server = server.ThreadingHTTPServer((bind, port), _handler(endpoints))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
