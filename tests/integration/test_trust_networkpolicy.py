"""Issue 12, item 7, on the real API server: the operator's NetworkPolicies for runtime and broker.

The operator runs under the chart's RBAC rules. With the default settings it applies an
ingress NetworkPolicy for the managed broker (its MQTT port, from the EdgeModel's runtime
Pods and its devices) and one for the runtime (its HTTP port), whose selectors match the
Pods the broker Deployment and the inference StatefulSet make. A hand edit that widens one
is put right; switching them off deletes them; deleting the EdgeModel deletes them.

The harness's kube-apiserver stores and validates NetworkPolicies, but nothing enforces
them here (kwok runs no Pod network); docs/security.md says what enforces them where.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from edgemodel import api
from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

MANAGED = edgemodels.spec(broker={})


def _policies(client, namespace: str) -> dict[str, Any]:
    net = kubernetes.client.NetworkingV1Api(client)
    return {p.metadata.name: p for p in net.list_namespaced_network_policy(namespace).items}


def _wait_policies(client, namespace: str, want: set[str], what: str) -> dict[str, Any]:
    processes.wait_until(lambda: set(_policies(client, namespace)) == want, timeout=60, what=what)
    return _policies(client, namespace)


def _matches(selector: Any, labels: dict[str, str]) -> bool:
    assert not selector.match_expressions
    return all(labels.get(k) == v for k, v in (selector.match_labels or {}).items())


def _broker_rule_ok(policy: Any, runtime_labels: dict[str, str]) -> bool:
    (rule,) = policy.spec.ingress
    sources = [s.pod_selector for s in rule._from]
    return (
        [(p.protocol, p.port) for p in rule.ports] == [("TCP", 1883)]
        and len(sources) == 2
        and _matches(sources[0], runtime_labels)
        and sources[1].match_labels == {"edgeml.dev/device-of": "em"}
    )


def test_policies_guard_the_pods_they_are_for_and_are_put_right(api_client, namespace, operators):
    operators()
    edgemodels.create(api_client, namespace, "em", MANAGED)
    policies = _wait_policies(api_client, namespace, {"em-broker", "em-inference"}, "both NetworkPolicies")
    apps = kubernetes.client.AppsV1Api(api_client)
    processes.wait_until(
        lambda: (
            apps.list_namespaced_stateful_set(namespace).items
            and apps.list_namespaced_deployment(namespace).items
        ),
        timeout=60,
        what="the inference StatefulSet and the broker Deployment",
    )
    broker_pods = apps.read_namespaced_deployment("em-broker", namespace).spec.template.metadata.labels
    runtime_pods = apps.read_namespaced_stateful_set("em-inference", namespace).spec.template.metadata.labels

    broker = policies["em-broker"]
    assert broker.spec.policy_types == ["Ingress"]
    assert _matches(broker.spec.pod_selector, broker_pods)
    assert not _matches(broker.spec.pod_selector, runtime_pods)
    assert _broker_rule_ok(broker, runtime_pods)
    assert all(s.namespace_selector is None for s in broker.spec.ingress[0]._from)

    runtime = policies["em-inference"]
    assert runtime.spec.policy_types == ["Ingress"]
    assert _matches(runtime.spec.pod_selector, runtime_pods)
    assert not _matches(runtime.spec.pod_selector, broker_pods)
    (rule,) = runtime.spec.ingress
    assert [(p.protocol, p.port) for p in rule.ports] == [("TCP", 8080)]
    assert len(rule._from) == 1 and rule._from[0].pod_selector.to_dict() == {
        "match_expressions": None,
        "match_labels": None,
    }
    for policy in (broker, runtime):
        (owner,) = policy.metadata.owner_references
        assert (owner.kind, owner.name, owner.controller) == (api.KIND, "em", True)

    # Someone opens the broker to every Pod in the namespace: the operator puts it right.
    net = kubernetes.client.NetworkingV1Api(api_client)
    widened = net.patch_namespaced_network_policy(
        "em-broker",
        namespace,
        {
            "spec": {
                "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 1883}]}]
            }
        },
    )
    assert not _broker_rule_ok(widened, runtime_pods)  # the edit took (the operator may undo it at once)
    processes.wait_until(
        lambda: _broker_rule_ok(net.read_namespaced_network_policy("em-broker", namespace), runtime_pods),
        timeout=60,
        what="the broker's NetworkPolicy put right",
    )

    # Deleting the EdgeModel deletes them with its other children.
    kubernetes.client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em"
    )
    _wait_policies(api_client, namespace, set(), "the NetworkPolicies deleted with the EdgeModel")


def test_switched_off_the_operator_deletes_the_policies_it_made(api_client, namespace, operators):
    first = operators()
    edgemodels.create(api_client, namespace, "em", MANAGED)
    _wait_policies(api_client, namespace, {"em-broker", "em-inference"}, "both NetworkPolicies")
    # Someone's own policy in the namespace stays.
    net = kubernetes.client.NetworkingV1Api(api_client)
    mine = {"podSelector": {}, "policyTypes": ["Ingress"]}
    net.create_namespaced_network_policy(namespace, {"metadata": {"name": "default-deny"}, "spec": mine})
    first.stop()

    operators(identity="operator-1", EDGEMODEL_NETWORK_POLICIES="false")
    _wait_policies(api_client, namespace, {"default-deny"}, "only the user's own NetworkPolicy left")
    # The rest of the EdgeModel is still there, and a later spec change renders no policy.
    apps = kubernetes.client.AppsV1Api(api_client)
    assert apps.read_namespaced_deployment("em-broker", namespace) is not None
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em", {"spec": {"scaling": {"maxReplicas": 2}}}
    )
    processes.wait_until(
        lambda: (
            (edgemodels.get(api_client, namespace, "em").get("status") or {}).get("observedGeneration") == 2
        ),
        timeout=60,
        what="a pass over the new generation",
    )
    assert set(_policies(api_client, namespace)) == {"default-deny"}
