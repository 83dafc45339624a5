"""NetworkPolicies for the runtime and the managed broker (issue 12, item 7). Ingress only.

- **Broker** ``<name>-broker``: its MQTT port admits only this EdgeModel's runtime Pods and
  Pods labelled ``edgeml.dev/device-of: <name>`` (its devices, e.g. the simulator). Nothing
  else reaches it; the operator never connects to it.
- **Runtime** ``<name>-inference``: its HTTP port (predictions, ``/metrics``, probes) admits
  Pods of the EdgeModel's own namespace and of the operator's ``runtime_ingress_namespaces``
  (where Prometheus runs). No other port is open.

Egress is not restricted: the runtime must reach the broker, MLflow and the API server,
wherever they are. Rendered only while ``Settings.network_policies`` is on; a CNI that does
not enforce NetworkPolicy ignores them.

Pure functions; no I/O here.
"""

from __future__ import annotations

from typing import Any

from edgemodel_operator import names
from edgemodel_operator.render import broker, common, inference
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = ["KIND", "objects"]

KIND = "NetworkPolicy"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace (Kubernetes 1.22+): selects a namespace by its name."""


def _policy(
    em: EdgeModel, name: str, component: str, sources: list[dict[str, Any]], port: int
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": KIND,
        "metadata": common.metadata(em, name, component),
        "spec": {
            "podSelector": {"matchLabels": names.selector(em.name, component)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": port}]}],
        },
    }


def objects(em: EdgeModel, settings: Settings) -> list[dict[str, Any]]:
    """The policies the settings and the spec want: none when off, no broker's for an external broker."""
    if not settings.network_policies:
        return []
    out = []
    if em.spec.broker.managed:
        out.append(
            _policy(
                em,
                names.broker(em.name),
                broker.COMPONENT,
                [
                    {"podSelector": {"matchLabels": names.selector(em.name, inference.COMPONENT)}},
                    {"podSelector": {"matchLabels": {names.LABEL_DEVICE_OF: em.name}}},
                ],
                broker.port(em),
            )
        )
    runtime_sources: list[dict[str, Any]] = [{"podSelector": {}}]
    if settings.runtime_ingress_namespaces:
        runtime_sources.append(
            {
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": NAMESPACE_NAME_LABEL,
                            "operator": "In",
                            "values": sorted(settings.runtime_ingress_namespaces),
                        }
                    ]
                }
            }
        )
    out.append(
        _policy(em, names.inference(em.name), inference.COMPONENT, runtime_sources, inference.HTTP_PORT)
    )
    return out
