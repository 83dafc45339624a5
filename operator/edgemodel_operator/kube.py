"""The only module that talks to the Kubernetes API server.

Objects go in and come out as plain JSON dictionaries, exactly as the API server speaks
them, so renderers and planners never see client-library types. Writes of children are
server-side apply under one field manager, forced, so hand edits are put right.

I/O: HTTPS to the API server through the ``kubernetes`` client's transport.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from edgemodel import api

__all__ = ["KINDS", "ApiException", "Kind", "Kube"]


@dataclasses.dataclass(frozen=True)
class Kind:
    prefix: str
    plural: str


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("/api/v1", "configmaps"),
    "Secret": Kind("/api/v1", "secrets"),
    "PersistentVolumeClaim": Kind("/api/v1", "persistentvolumeclaims"),
    "Service": Kind("/api/v1", "services"),
    "ServiceAccount": Kind("/api/v1", "serviceaccounts"),
    "Pod": Kind("/api/v1", "pods"),
    "Event": Kind("/api/v1", "events"),
    "Deployment": Kind("/apis/apps/v1", "deployments"),
    "StatefulSet": Kind("/apis/apps/v1", "statefulsets"),
    "HorizontalPodAutoscaler": Kind("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "Job": Kind("/apis/batch/v1", "jobs"),
    "CronJob": Kind("/apis/batch/v1", "cronjobs"),
    "Role": Kind("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": Kind("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "NetworkPolicy": Kind("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Lease": Kind("/apis/coordination.k8s.io/v1", "leases"),
    api.KIND: Kind(f"/apis/{api.GROUP}/{api.VERSION}", api.PLURAL),
}


def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    k = KINDS[kind]
    path = f"{k.prefix}/namespaces/{urllib.parse.quote(namespace)}/{k.plural}"
    if name is not None:
        path += f"/{urllib.parse.quote(name)}"
    if sub is not None:
        path += f"/{sub}"
    return path


class Kube:
    """A thin, typed wrapper over the API server's REST interface."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        field_manager: str,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:
        self._client = client
        self.field_manager = field_manager
        self._lock = threading.Lock()
        self.requests = 0
        """How many API requests this wrapper has made: the operator's cost in calls."""
        self.on_request = on_request
        """Called with the HTTP method and the kind once per request as it is sent (the metrics
        counter), from whichever thread sends it."""

    @classmethod
    def from_environment(
        cls, *, field_manager: str, on_request: Callable[[str, str], None] | None = None
    ) -> Kube:
        """In-cluster credentials when in a Pod, else ``$KUBECONFIG`` or ``~/.kube/config``."""
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        configuration.connection_pool_maxsize = 32
        return cls(
            kubernetes.client.ApiClient(configuration), field_manager=field_manager, on_request=on_request
        )

    # ------------------------------------------------------------------ transport

    def _request(
        self,
        method: str,
        kind: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        # The transport JSON-encodes bodies of JSON content types itself; others go as text.
        payload = body if body is None or "json" in (content_type or "json") else json.dumps(body)
        params = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=payload,
            auth_settings=["BearerToken"],
        )
        with self._lock:
            self.requests += 1
        if self.on_request is not None:
            self.on_request(method, kind)
        response = self._client.call_api(*params, _request_timeout=30)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        data = response.data
        return json.loads(data) if data else {}

    # ------------------------------------------------------------------ reads

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", kind, _path(kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_all(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespace``, or in all namespaces when it is None."""
        path = f"{KINDS[kind].prefix}/{KINDS[kind].plural}" if namespace is None else _path(kind, namespace)
        items: list[dict[str, Any]] = self._request("GET", kind, path).get("items") or []
        return items

    def list(self, kind: str, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        out = self._request("GET", kind, _path(kind, namespace), query=[("labelSelector", selector)])
        items: list[dict[str, Any]] = out.get("items") or []
        return items

    # ------------------------------------------------------------------ writes

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` under our field manager, taking over conflicting fields."""
        meta = obj["metadata"]
        return self._request(
            "PATCH",
            str(obj["kind"]),
            _path(str(obj["kind"]), str(meta["namespace"]), str(meta["name"])),
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._request(
                "DELETE",
                kind,
                _path(kind, namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
                content_type="application/json",
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch of the EdgeModel's status subresource."""
        return self._request(
            "PATCH",
            api.KIND,
            _path(api.KIND, namespace, name, "status"),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._request("POST", kind, _path(kind, namespace), body=body, content_type="application/json")

    def replace(self, kind: str, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._request(
            "PUT", kind, _path(kind, namespace, name), body=body, content_type="application/json"
        )

    def event(
        self,
        involved: Mapping[str, Any],
        *,
        type_: str,
        reason: str,
        message: str,
        component: str,
        instance: str,
    ) -> None:
        """Record a core/v1 Event about ``involved`` (an object reference)."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = str(involved["namespace"])
        self.create(
            "Event",
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
                "involvedObject": dict(involved),
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": component},
                "reportingComponent": component,
                "reportingInstance": instance,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            },
        )
