"""The runtime's HTTP server on a real socket: request timeouts and a bounded number of workers.

The endpoints are a plain object; what is under test is the server's connection handling.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
import urllib.request

import pytest

from edgemodel_runtime import http, payloads

TIMEOUT = 0.5


class Endpoints:
    def metrics_text(self) -> tuple[bytes, str]:
        return b"# nothing\n", "text/plain"

    def health(self) -> tuple[bool, dict[str, object]]:
        return True, {"status": "ok"}

    def readiness(self) -> tuple[bool, dict[str, object]]:
        return True, {"status": "ready"}

    def predict(self, body: bytes) -> tuple[int, dict[str, object]]:
        schema = payloads.Schema(fields=("x",), device_field="device")
        try:
            readings = http.parse_predict(body, schema, lags=0, received=0.0)
        except http.BadRequestError as exc:
            return 400, exc.answer
        return 200, {"device": readings[-1].device}


@pytest.fixture
def server():
    s = http.Server(Endpoints(), bind="127.0.0.1", port=0, workers=2, timeout=TIMEOUT).start()
    yield s
    s.stop()


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:  # nosec B310
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _idle(port: int) -> socket.socket:
    """A connection that sends nothing: it holds a worker until the server's timeout."""
    return socket.create_connection(("127.0.0.1", port), timeout=10)


class Stuck(Endpoints):
    """``/healthz`` holds its worker until the test lets go: a busy server with no clock in it."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()

    def health(self) -> tuple[bool, dict[str, object]]:
        self.entered.release()
        self.go.wait(30)
        return True, {"status": "ok"}


def test_a_busy_server_answers_503_then_serves_again_once_a_worker_is_free():
    endpoints = Stuck()
    s = http.Server(endpoints, bind="127.0.0.1", port=0, workers=2, timeout=30).start()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            held = [pool.submit(_get, s.port, "/healthz") for _ in range(2)]
            for _ in held:
                assert endpoints.entered.acquire(timeout=30), "a request never reached a worker"
            # Both workers are taken: the next connection is refused at once, not queued.
            code, body = _get(s.port, "/readyz")
            assert (code, json.loads(body)) == (503, {"error": "busy"})
            endpoints.go.set()
            assert [f.result(30) for f in held] == [(200, b'{"status": "ok"}')] * 2
        assert _get(s.port, "/readyz") == (200, b'{"status": "ready"}')
    finally:
        endpoints.go.set()
        s.stop()


def test_an_idle_connection_is_closed_after_the_timeout_and_frees_its_worker(server):
    idle = [_idle(server.port), _idle(server.port)]  # as many as there are workers
    for conn in idle:
        # The client's own timeout (10 s) is far above the server's (TIMEOUT): recv raises
        # if the server never closes the connection.
        assert conn.recv(1) == b"", "the server closes an idle connection after its timeout"
        conn.close()
    assert _get(server.port, "/healthz") == (200, b'{"status": "ok"}')


def test_a_body_that_never_arrives_times_out_and_frees_the_worker(server):
    conn = _idle(server.port)
    conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert conn.recv(1) == b"", "the server gives up on the body after its timeout"
    conn.close()
    assert _get(server.port, "/readyz")[0] == 200


def test_predict_parsing_errors_are_400(server):
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/predict", data=b'{"readings": []}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)  # nosec B310
    assert err.value.code == 400
    assert json.loads(err.value.read())["error"] == "wrong_type"
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/predict", data=b'{"device": "d", "ts": 1, "x": 2}', method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # nosec B310
        assert json.loads(r.read()) == {"device": "d"}
