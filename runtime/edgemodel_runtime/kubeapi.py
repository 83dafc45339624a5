"""The Kubernetes API as the runtime uses it: JSON over HTTPS with the Pod's token (no kubernetes client).

The runtime makes three calls: merge-patch its entry of the EdgeModel's status, read that
status, and list the inference Service's EndpointSlices. The kubernetes client costs
+12.5 MB RSS and 0.4-1.4 s of import (``docs/runtime.md``, Footprint; ``python -m bench
footprint``) for them.

Credentials, as :func:`from_environment` finds them:

- in a Pod (``KUBERNETES_SERVICE_HOST`` is set and the ServiceAccount is mounted): the
  projected token, re-read every minute as the kubelet rotates it, and the cluster CA;
- else the kubeconfig (``KUBECONFIG``, else ``~/.kube/config``): its current context's
  server, CA, and a token, token file, client certificate or basic credentials. Exec and
  auth-provider plugins are not supported (a runtime does not run as a person).

I/O: HTTPS to the API server; reads the token, CA and kubeconfig files.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "Client",
    "ConfigError",
    "client_for",
    "custom_object_path",
    "from_environment",
    "from_kubeconfig",
]

SERVICE_ACCOUNT = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REFRESH = 60.0
"""Seconds between re-reads of a token file (the kubelet rotates projected tokens)."""
TIMEOUT = 10.0


class ConfigError(RuntimeError):
    """No usable credentials: neither in a Pod nor a kubeconfig this client understands."""


class ApiError(RuntimeError):
    """The API server answered with an error status; ``reason`` is the Status' reason (e.g. ``NotFound``)."""

    def __init__(self, message: str, *, status: int, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class Client:
    """One API server, and how to authenticate to it."""

    def __init__(
        self,
        server: str,
        *,
        context: ssl.SSLContext | None = None,
        token: str | None = None,
        token_file: pathlib.Path | None = None,
        basic: tuple[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        scheme = urllib.parse.urlsplit(server).scheme
        if scheme not in ("https", "http"):
            raise ConfigError(f"the API server must be an http(s) URL, not {server!r}")
        self.server = server.rstrip("/")
        # No proxy from the environment: the API server is reached directly, as the kubernetes
        # client does unless a kubeconfig names a proxy.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)
        self._token = token
        self._token_file = token_file
        self._token_read = -TOKEN_REFRESH
        self._basic = basic
        self._lock = threading.Lock()
        self.timeout = timeout

    def _authorization(self) -> str | None:
        if self._token_file is not None:
            with self._lock:
                now = time.monotonic()
                if now - self._token_read >= TOKEN_REFRESH:
                    self._token = self._token_file.read_text().strip()
                    self._token_read = now
        if self._token:
            return f"Bearer {self._token}"
        if self._basic is not None:
            return "Basic " + base64.b64encode(":".join(self._basic).encode()).decode()
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """One call; the answer's JSON. Raises :class:`ApiError` on an error status."""
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        auth = self._authorization()
        if auth is not None:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - checked
        try:
            # the scheme is checked in __init__
            with self._opener.open(request, timeout=self.timeout if timeout is None else timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()[:2000]
            exc.close()
            reason, message = None, raw.decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                status = json.loads(raw)
                reason, message = status.get("reason"), status.get("message", message)
            raise ApiError(
                f"{method} {path}: HTTP {exc.code} {reason or ''}: {message}".replace("  ", " "),
                status=exc.code,
                reason=reason,
            ) from None

    # ------------------------------------------------------------------ the calls the runtime makes

    def merge_patch(self, path: str, patch: Any) -> Any:
        """A JSON merge patch (RFC 7386) of the object at ``path``."""
        return self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    def list_endpoint_slices(self, namespace: str, *, label_selector: str) -> Any:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{urllib.parse.quote(namespace)}/endpointslices"
        return self.request("GET", path, query={"labelSelector": label_selector})


def custom_object_path(group: str, version: str, namespace: str, plural: str, name: str) -> str:
    """The path of one namespaced custom object; add ``/status`` for its status subresource."""
    q = urllib.parse.quote
    return f"/apis/{group}/{version}/namespaces/{q(namespace)}/{plural}/{q(name)}"


def _context(
    *,
    ca_file: str | None = None,
    ca_data: bytes | None = None,
    cert: tuple[str, str] | None = None,
    cert_data: tuple[bytes, bytes] | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file, cadata=None if ca_data is None else ca_data.decode())
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        context.load_cert_chain(cert[0], cert[1])
    elif cert_data is not None:
        # ssl reads a certificate and key only from files: a private folder, removed at once
        with tempfile.TemporaryDirectory() as tmp:
            crt, key = pathlib.Path(tmp) / "tls.crt", pathlib.Path(tmp) / "tls.key"
            for path, data in ((crt, cert_data[0]), (key, cert_data[1])):
                path.touch(mode=0o600)
                path.write_bytes(data)
            context.load_cert_chain(str(crt), str(key))
    return context


def in_cluster(env: Mapping[str, str], root: pathlib.Path = SERVICE_ACCOUNT) -> Client | None:
    """The Pod's ServiceAccount, when this runs in a Pod; else ``None``."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token, ca = root / "token", root / "ca.crt"
    if not (host and port and token.is_file()):
        return None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Client(server, context=_context(ca_file=str(ca) if ca.is_file() else None), token_file=token)


def _named(items: Any, name: str, kind: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, Mapping) and item.get("name") == name:
            found = item.get(kind)
            return dict(found) if isinstance(found, Mapping) else {}
    raise ConfigError(f"the kubeconfig has no {kind} named {name!r}")


def from_kubeconfig(path: pathlib.Path, *, context: str | None = None) -> Client:
    """A client for the kubeconfig's current (or the named) context."""
    import yaml  # noqa: PLC0415 - only outside a Pod

    config = yaml.safe_load(path.read_text()) or {}
    base = path.resolve().parent
    name = context or config.get("current-context")
    if not name:
        raise ConfigError(f"{path} has no current-context")
    ctx = _named(config.get("contexts"), name, "context")
    cluster = _named(config.get("clusters"), str(ctx.get("cluster")), "cluster")
    user = _named(config.get("users"), str(ctx.get("user")), "user") if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"{path}: exec and auth-provider credentials are not supported by the runtime")

    def local(key: str, source: Mapping[str, Any]) -> str | None:
        value = source.get(key)
        return None if not value else str(base / str(value))

    def data(key: str, source: Mapping[str, Any]) -> bytes | None:
        value = source.get(key)
        return None if not value else base64.b64decode(str(value))

    client_cert, client_key = local("client-certificate", user), local("client-key", user)
    cert_data = data("client-certificate-data", user), data("client-key-data", user)
    ssl_context = _context(
        ca_file=local("certificate-authority", cluster),
        ca_data=data("certificate-authority-data", cluster),
        cert=(client_cert, client_key) if client_cert and client_key else None,
        cert_data=(cert_data[0], cert_data[1]) if cert_data[0] and cert_data[1] else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )
    token_file = local("tokenFile", user)
    basic = (str(user["username"]), str(user["password"])) if user.get("username") else None
    return Client(
        str(cluster.get("server", "")),
        context=ssl_context,
        token=user.get("token"),
        token_file=pathlib.Path(token_file) if token_file else None,
        basic=basic,
    )


def from_environment(env: Mapping[str, str] | None = None) -> Client:
    """In-cluster credentials when in a Pod, else the kubeconfig (``KUBECONFIG``, else ``~/.kube/config``)."""
    env = os.environ if env is None else env
    client = in_cluster(env)
    if client is not None:
        return client
    paths = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    path = pathlib.Path(paths[0]) if paths else pathlib.Path.home() / ".kube" / "config"
    if not path.is_file():
        raise ConfigError(f"not in a Pod, and no kubeconfig at {path}")
    return from_kubeconfig(path)


def client_for(api_client: Any) -> Client:
    """``api_client`` itself, or a :class:`Client` with the credentials of a kubernetes ``ApiClient``.

    Lets callers that hold the kubernetes client (tests, tools) hand it over; nothing here
    imports it.
    """
    if isinstance(api_client, Client):
        return api_client
    conf = getattr(api_client, "configuration", None)
    if conf is None:
        raise TypeError(f"expected a kubeapi.Client or a kubernetes ApiClient, not {type(api_client)!r}")
    auth = (getattr(conf, "api_key", None) or {}).get("authorization") or (
        getattr(conf, "api_key", None) or {}
    ).get("BearerToken")
    prefix = (getattr(conf, "api_key_prefix", None) or {}).get("authorization", "")
    token = None
    if auth:
        value = f"{prefix} {auth}".strip()
        token = value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value
    cert = (conf.cert_file, conf.key_file) if conf.cert_file and conf.key_file else None
    ssl_context = _context(ca_file=conf.ssl_ca_cert or None, cert=cert, insecure=not conf.verify_ssl)
    basic = (conf.username, conf.password) if getattr(conf, "username", None) and not token else None
    return Client(conf.host, context=ssl_context, token=token, basic=basic)
