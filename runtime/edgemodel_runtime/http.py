"""The HTTP server of a runtime process: ``/metrics``, ``/healthz``, ``/readyz``, ``POST /predict``.

It serves what :class:`Endpoints` produces and parses ``/predict`` requests
(:func:`parse_predict`); what the answers mean is decided by the endpoints
(:mod:`edgemodel_runtime.app`). I/O: one listening socket and at most ``workers``
threads, one per connection. A socket read or write that waits longer than ``timeout`` closes the
connection (an idle keep-alive connection too), and when every worker is busy a new
connection gets ``503`` at once rather than a thread: a slow or stuck client can hold at
most one worker for ``timeout`` per read, and never starves the kubelet's probes for long.
"""

from __future__ import annotations

import json
import logging
import threading
from http import server
from typing import Any, Protocol

from edgemodel_runtime import payloads

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_PREDICT_READINGS",
    "REQUEST_TIMEOUT",
    "WORKERS",
    "BadRequestError",
    "Endpoints",
    "Server",
    "parse_predict",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_PREDICT_READINGS = 10_000
WORKERS = 8
"""Requests served at once; probes, a scrape and a few ``/predict`` calls fit."""
REQUEST_TIMEOUT = 10.0
"""Seconds a socket read or write may wait before the connection is closed."""
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 17\r\n\r\n"
    b'{"error": "busy"}'
)


class Endpoints(Protocol):
    def metrics_text(self) -> tuple[bytes, str]: ...

    def health(self) -> tuple[bool, dict[str, Any]]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]: ...


class BadRequestError(ValueError):
    """A ``/predict`` request that cannot be answered; :attr:`answer` is the 400 body."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.answer = {"error": error, "detail": detail}


def parse_predict(
    body: bytes, schema: payloads.Schema, *, lags: int, received: float
) -> list[payloads.Reading]:
    """The readings of a ``/predict`` body, oldest first; raises :class:`BadRequestError`.

    The body is one reading (enough when ``lags`` is 0) or ``{"readings": [...]}`` with at
    least ``lags + 1`` readings. Pure.

    >>> schema = payloads.Schema(fields=("x",), device_field="device")
    >>> [r.values for r in parse_predict(b'{"device": "d", "ts": 1, "x": 2}', schema, lags=0, received=0)]
    [{'x': 2.0}]
    >>> parse_predict(b'{"device": "d", "ts": 1, "x": 2}', schema, lags=1, received=0)
    Traceback (most recent call last):
    ...
    edgemodel_runtime.http.BadRequestError: insufficient_history: lags=1: send 2 readings, oldest first
    """
    try:
        if len(body) > schema.max_bytes * 64:
            raise payloads.PayloadError("too_large", "request body is too large")
        obj = payloads.decode(body)
        raw = obj["readings"] if isinstance(obj, dict) and "readings" in obj else [obj]
        if not isinstance(raw, list) or not raw or len(raw) > MAX_PREDICT_READINGS:
            raise payloads.PayloadError(
                "wrong_type", f"readings must be a list of 1 to {MAX_PREDICT_READINGS} readings"
            )
        readings = [payloads.parse_object(r, schema, topic="predict", received=received) for r in raw]
    except payloads.PayloadError as exc:
        raise BadRequestError(exc.reason, exc.detail) from exc
    if len(readings) < lags + 1:
        raise BadRequestError("insufficient_history", f"lags={lags}: send {lags + 1} readings, oldest first")
    return readings


def _handler(endpoints: Endpoints, request_timeout: float) -> type[server.BaseHTTPRequestHandler]:
    class Handler(server.BaseHTTPRequestHandler):
        server_version = "edgemodel-runtime"
        protocol_version = "HTTP/1.1"
        timeout = request_timeout  # StreamRequestHandler.setup sets it on the socket

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


class _BoundedServer(server.HTTPServer):
    """An HTTP server whose connections are served by at most ``workers`` daemon threads."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[server.BaseHTTPRequestHandler],
        *,
        workers: int,
    ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                # read what the client sent, or closing with unread data resets the
                # connection and the client may never see the answer
                request.settimeout(0.2)
                request.recv(65536)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        threading.Thread(
            target=self._serve, args=(request, client_address), name="http-request", daemon=True
        ).start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except (TimeoutError, ConnectionError) as exc:
            log.debug("Closed an HTTP connection from %s: %r", client_address, exc)
        except Exception:
            log.exception("Failed to serve an HTTP request from %s", client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()


class Server:
    """An HTTP server on ``bind:port``; port 0 picks a free one (see :attr:`port`)."""

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        bind: str,
        port: int,
        workers: int = WORKERS,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self._server = _BoundedServer((bind, port), _handler(endpoints, timeout), workers=workers)
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
