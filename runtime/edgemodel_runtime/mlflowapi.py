"""MLflow's REST API as the runtime uses it, over the standard library (no MLflow client).

The runtime needs six calls: resolve an alias, read a model version, download two files of
it, and log a training window as a run (experiment, run, one CSV artifact, metrics, end).
The MLflow client costs +40 MB RSS and 2-5 s of import on top of the serving core
(``docs/runtime.md``, Footprint; ``python -m bench footprint``); these calls cost none of it.

Artifacts go through the tracking server: a version's files through
``/model-versions/get-artifact`` (the server resolves the version's source), a run's
artifact by ``PUT`` to the ``mlflow-artifacts`` proxy (the run's artifact URI must be
``mlflow-artifacts:``, as with ``mlflow server --serve-artifacts``, the default).

Credentials are read from the variables MLflow's client reads (the operator sets them from
the tracking Secret): ``MLFLOW_TRACKING_TOKEN`` (bearer), or ``MLFLOW_TRACKING_USERNAME``
and ``MLFLOW_TRACKING_PASSWORD`` (basic); ``MLFLOW_TRACKING_SERVER_CERT_PATH`` is a CA
bundle to trust, ``MLFLOW_TRACKING_INSECURE_TLS=true`` turns verification off.

Safe loading is :func:`load_version`'s: the file's SHA-256 recorded at registration is
checked on the downloaded bytes before anything parses them (:mod:`edgemodel.modelstore`).
A version with ``model.onnx`` is served with onnxruntime, one without from its skops file.

I/O: HTTP(S) to the tracking server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from edgemodel import modelmeta, modelstore

__all__ = ["Client", "MlflowApiError", "client_for"]

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
TIMEOUT = 30.0
_CHUNK = 1 << 16
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


class MlflowApiError(RuntimeError):
    """A call the tracking server refused; ``error_code`` is MLflow's (e.g. ``RESOURCE_DOES_NOT_EXIST``)."""

    def __init__(self, message: str, *, status: int | None = None, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


def _ssl_context(env: Mapping[str, str]) -> ssl.SSLContext:
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)


def _auth_header(env: Mapping[str, str]) -> str | None:
    token = env.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return f"Bearer {token}"
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


class Client:
    """The tracking server at ``tracking_uri`` (``http://`` or ``https://``)."""

    def __init__(
        self, tracking_uri: str, *, env: Mapping[str, str] | None = None, timeout: float = TIMEOUT
    ) -> None:
        scheme = urllib.parse.urlsplit(tracking_uri).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"the runtime reaches MLflow over http(s) only, not {tracking_uri!r}")
        self.tracking_uri = tracking_uri.rstrip("/")
        env = os.environ if env is None else env
        self._auth = _auth_header(env)
        self._context = _ssl_context(env) if scheme == "https" else None
        self.timeout = timeout

    # ------------------------------------------------------------------ transport

    def _open(
        self, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if self._auth is not None:
            headers["Authorization"] = self._auth
        if content_type is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self.tracking_uri + path, data=body, method=method, headers=headers
        )
        try:
            return urllib.request.urlopen(request, timeout=self.timeout, context=self._context)  # noqa: S310  # nosec B310
        except urllib.error.HTTPError as exc:
            raw = exc.read()[:2000]
            exc.close()
            code, message = None, raw.decode(errors="replace")
            try:
                answer = json.loads(raw)
                code, message = answer.get("error_code"), answer.get("message", message)
            except (ValueError, AttributeError):
                pass
            raise MlflowApiError(
                f"{method} {path.partition('?')[0]}: HTTP {exc.code}: {message}",
                status=exc.code,
                error_code=code,
            ) from None

    def call(self, method: str, endpoint: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One JSON call of the REST API: GET with ``payload`` as the query, POST with it as the body."""
        path = f"{API}/{endpoint}"
        body = None
        if method == "GET":
            if payload:
                path += "?" + urllib.parse.urlencode(payload)
        else:
            body = json.dumps(payload or {}).encode()
        content_type = None if body is None else "application/json"
        with self._open(method, path, body=body, content_type=content_type) as resp:
            answer = json.loads(resp.read() or b"{}")
        return answer if isinstance(answer, dict) else {}

    # ------------------------------------------------------------------ the model registry

    def resolve_alias(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or ``None`` when there is no such model or alias."""
        try:
            answer = self.call("GET", "registered-models/alias", {"name": name, "alias": alias})
        except MlflowApiError as exc:
            if exc.error_code in _NOT_FOUND or exc.status == 404:
                return None
            raise
        return str(answer["model_version"]["version"])

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        answer = self.call("GET", "model-versions/get", {"name": name, "version": version})
        tags = answer.get("model_version", {}).get("tags") or []
        return {str(t["key"]): str(t.get("value", "")) for t in tags}

    def download_version_file(self, name: str, version: str, path: str, dest: pathlib.Path) -> str:
        """Stream one file of a version's artifact folder to ``dest``; its SHA-256 (hex)."""
        query = urllib.parse.urlencode({"name": name, "version": version, "path": path})
        digest = hashlib.sha256()
        with (
            self._open("GET", f"/model-versions/get-artifact?{query}") as resp,
            dest.open("wb") as out,
        ):
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()

    def load_version(
        self, name: str, version: str, *, workdir: pathlib.Path | None = None
    ) -> modelmeta.LoadedModel:
        """Download one version and load it safely; :class:`modelstore.ModelLoadError` if refused.

        A version with ``model.onnx`` and its SHA-256 tag is served from it with onnxruntime
        (scikit-learn and skops are then never imported); one without, from ``model.skops``
        with the same checks as :func:`edgemodel.registry.load_version`. Either way the
        file's SHA-256 recorded at registration is checked on the downloaded bytes before
        anything parses them, and a mismatch refuses the version (no fallback to the other file).
        """
        tags = self.version_tags(name, version)
        onnx_sha256 = tags.get(modelmeta.TAGS["onnx_sha256"])
        expected = onnx_sha256 or tags.get(modelmeta.TAGS["sha256"])
        if not expected:
            raise modelstore.ModelLoadError(
                f"model {name} version {version} has no {modelmeta.TAGS['sha256']} tag; refusing to load it"
            )
        filename = modelstore.ONNX_FILE if onnx_sha256 else modelstore.MODEL_FILE
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            local = pathlib.Path(tmp)
            try:
                actual = self.download_version_file(name, version, filename, local / filename)
                self.download_version_file(name, version, modelmeta.META_FILE, local / modelmeta.META_FILE)
            except MlflowApiError as exc:
                if exc.status is not None and exc.status < 500:
                    raise modelstore.ModelLoadError(
                        f"model {name} version {version}: artifacts could not be downloaded: {exc}"
                    ) from exc
                raise
            if actual != expected:  # checked again by modelstore, on the bytes it parses
                raise modelstore.ModelLoadError(
                    f"model {name} version {version}: the downloaded {filename} has SHA-256 "
                    f"{actual[:12]}…, but {expected[:12]}… was recorded at registration; "
                    "refusing a changed artifact"
                )
            model: modelstore.Predictor
            if onnx_sha256:
                model = modelstore.load_onnx((local / filename).read_bytes(), expected_sha256=expected)
            else:
                model = modelstore.load(local / filename, expected_sha256=expected)
            try:
                meta = modelmeta.ModelMeta.from_json((local / modelmeta.META_FILE).read_text())
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise modelstore.ModelLoadError(
                    f"model {name} version {version}: unreadable {modelmeta.META_FILE}: {exc}"
                ) from exc
        modelstore.sanity_check(model, len(meta.columns))
        return modelmeta.LoadedModel(
            name=name, version=version, model=model, meta=meta, format="onnx" if onnx_sha256 else "skops"
        )

    # ------------------------------------------------------------------ runs (the training window)

    def experiment_id(self, name: str) -> str:
        """The id of the experiment ``name``, created if missing (another replica may win the race)."""
        for attempt in range(2):
            try:
                answer = self.call("GET", "experiments/get-by-name", {"experiment_name": name})
                return str(answer["experiment"]["experiment_id"])
            except MlflowApiError as exc:
                if exc.error_code not in _NOT_FOUND or attempt:
                    raise
            try:
                return str(self.call("POST", "experiments/create", {"name": name})["experiment_id"])
            except MlflowApiError as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        raise AssertionError("unreachable")

    def create_run(self, experiment_id: str, tags: Mapping[str, str]) -> tuple[str, str]:
        """Start a run; its id and artifact URI."""
        answer = self.call(
            "POST",
            "runs/create",
            {
                "experiment_id": experiment_id,
                "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )
        info = answer["run"]["info"]
        return str(info["run_id"]), str(info["artifact_uri"])

    def upload_artifact(self, artifact_uri: str, path: str, data: bytes) -> None:
        """``PUT`` ``data`` as ``path`` under a run's ``mlflow-artifacts:`` URI (through the server)."""
        parsed = urllib.parse.urlsplit(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":
            raise MlflowApiError(
                f"the run's artifacts are at {artifact_uri!r}; the runtime uploads only through the "
                "tracking server's artifact proxy (mlflow-artifacts:)"
            )
        if parsed.netloc:
            raise MlflowApiError(f"the runtime uploads only to its own tracking server, not {artifact_uri!r}")
        target = f"{ARTIFACTS}/{urllib.parse.quote(parsed.path.strip('/') + '/' + path)}"
        with self._open("PUT", target, body=data, content_type="application/octet-stream") as resp:
            resp.read()

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self.call(
            "POST",
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [{"key": k, "value": v, "timestamp": now, "step": 0} for k, v in metrics.items()],
            },
        )

    def end_run(self, run_id: str, status: str) -> None:
        """Mark the run ``FINISHED`` or ``FAILED``."""
        end = int(time.time() * 1000)
        self.call("POST", "runs/update", {"run_id": run_id, "status": status, "end_time": end})


def client_for(client: Any) -> Client:
    """``client`` itself, or a :class:`Client` for the tracking URI of another client (an MlflowClient)."""
    if isinstance(client, Client):
        return client
    uri = getattr(client, "tracking_uri", None)
    if not isinstance(uri, str):
        raise TypeError(f"expected an mlflowapi.Client or a client with a tracking_uri, not {type(client)!r}")
    return Client(uri)
