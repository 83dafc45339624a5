"""Issue 12, item 7: the NetworkPolicies of the runtime and the managed broker. Pure, no I/O."""

from __future__ import annotations

import pytest

from edgemodel_operator import names, render
from edgemodel_operator.render import broker, inference, networkpolicy
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

ON = Settings()
SPEC = {
    "sensors": {"topics": ["plant/+/t"], "features": ["temperature"], "target": "temperature"},
    "drift": {"threshold": 1.0},
}
EXTERNAL = {**SPEC, "broker": {"host": "mqtt.site.example"}}


def _em(spec: dict, name: str = "line1") -> EdgeModel:
    return EdgeModel.from_body(
        {"metadata": {"name": name, "namespace": "plant", "uid": "u", "generation": 1}, "spec": spec}
    )


def _policies(em: EdgeModel, settings: Settings = ON) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in networkpolicy.objects(em, settings)}


def _pod_labels(em: EdgeModel, kind: str) -> dict[str, str]:
    (obj,) = [o for o in render.desired(em, ON, generated_password="pw") if o["kind"] == kind]
    return obj["spec"]["template"]["metadata"]["labels"]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_on_by_default_a_managed_broker_gets_both_policies():
    assert Settings().network_policies is True
    policies = _policies(_em(SPEC))
    assert set(policies) == {"line1-broker", "line1-inference"}
    for policy in policies.values():
        assert policy["apiVersion"] == "networking.k8s.io/v1"
        assert policy["spec"]["policyTypes"] == ["Ingress"]  # ingress only, documented
        assert policy["metadata"]["ownerReferences"][0]["uid"] == "u"
        assert policy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == names.MANAGED_BY


def test_broker_admits_its_runtime_and_its_devices_on_the_mqtt_port_only():
    em = _em(SPEC)
    policy = _policies(em)["line1-broker"]["spec"]
    # It guards exactly the broker's Pods, as the Deployment labels them.
    assert _selects(policy["podSelector"], _pod_labels(em, "Deployment"))
    assert not _selects(policy["podSelector"], _pod_labels(em, "StatefulSet"))
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": broker.MQTT_PORT}]
    sources = rule["from"]
    assert all(set(s) == {"podSelector"} for s in sources)  # same namespace only: no namespaceSelector
    runtime, device = (s["podSelector"] for s in sources)
    assert _selects(runtime, _pod_labels(em, "StatefulSet"))
    assert device == {"matchLabels": {names.LABEL_DEVICE_OF: "line1"}}
    # Another EdgeModel's runtime and devices do not match.
    other = _em(SPEC, name="line2")
    assert not any(_selects(s["podSelector"], _pod_labels(other, "StatefulSet")) for s in sources)
    assert not _selects(device, {names.LABEL_DEVICE_OF: "line2"})
    # A Pod with no labels, or only the app labels, matches nothing.
    assert not any(_selects(s["podSelector"], {"app.kubernetes.io/name": "edgemodel"}) for s in sources)


def test_runtime_admits_its_namespace_on_the_http_port_only():
    em = _em(SPEC)
    policy = _policies(em)["line1-inference"]["spec"]
    assert _selects(policy["podSelector"], _pod_labels(em, "StatefulSet"))
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": inference.HTTP_PORT}]
    assert rule["from"] == [{"podSelector": {}}]


def test_runtime_admits_the_monitoring_namespaces_by_name():
    settings = Settings(runtime_ingress_namespaces=("obs", "monitoring"))
    (rule,) = _policies(_em(SPEC), settings)["line1-inference"]["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {}},
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["monitoring", "obs"]}
                ]
            }
        },
    ]


def test_an_external_broker_gets_no_broker_policy():
    assert set(_policies(_em(EXTERNAL))) == {"line1-inference"}


@pytest.mark.parametrize("spec", [SPEC, EXTERNAL])
def test_switched_off_renders_none(spec):
    off = Settings(network_policies=False)
    assert networkpolicy.objects(_em(spec), off) == []
    assert not [
        o for o in render.desired(_em(spec), off, generated_password="pw") if o["kind"] == "NetworkPolicy"
    ]


def test_policies_are_applied_before_the_pods_they_guard():
    kinds = [o["kind"] for o in render.desired(_em(SPEC), ON, generated_password="pw")]
    last_policy = max(i for i, k in enumerate(kinds) if k == "NetworkPolicy")
    assert last_policy < kinds.index("Deployment") and last_policy < kinds.index("StatefulSet")
