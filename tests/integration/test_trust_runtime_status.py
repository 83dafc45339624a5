"""A runtime Pod may change only ``status.replicaDrift.<its own Pod>``: proved on the API server.

The chart's ValidatingAdmissionPolicy is rendered with the real ``helm template`` and applied
as shipped. The runtime's ServiceAccount, Role and RoleBinding are the ones the operator
renders for the EdgeModel. The runtime's credential is a real token bound to a Pod (the
TokenRequest API with ``boundObjectRef`` kind Pod), of a Pod kwok scheduled, exactly what
the kubelet projects into a runtime Pod. As that token: its own entry is written (by the
runtime's own reporting code), everything else in status is refused with a message that
says why, and spec is refused by RBAC. A token of the same ServiceAccount not bound to a
Pod may write nothing; the operator's identity and the admin may still write everything.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from edgemodel import api
from edgemodel_dev.harness import binaries, processes
from edgemodel_operator import names, render
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings
from edgemodel_runtime import reporting

pytestmark = pytest.mark.cluster

CHART = binaries.repo_root() / "helm" / "edgemodel"
RELEASE, RELEASE_NAMESPACE = "em", "edgemodel-system"
OPERATOR_ACCOUNT = "em-edgemodel"  # the chart's operator ServiceAccount for release "em"
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
FAR_FUTURE = "2030-01-01T00:00:00Z"


def _stamp(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _entry(rmse: float, *, detected: bool = False, when: str | None = None) -> dict[str, Any]:
    return {
        "rmse": rmse,
        "samples": 100,
        "detected": detected,
        "reportTime": when or _stamp(NOW),
        "modelVersion": "3",
    }


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def policy(cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """The chart's runtime-status policy and binding, rendered by helm and applied as they are."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "c"),
        "HELM_CONFIG_HOME": str(home / "f"),
        "HELM_DATA_HOME": str(home / "d"),
    }
    out = subprocess.run(
        [
            str(binaries.find("helm")),
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--kube-version",
            binaries.versions()["K8S_VERSION"],
            "--show-only",
            "templates/runtime-status-policy.yaml",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=out)
    try:
        yield docs
    finally:
        for doc in reversed(docs):
            cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found")


def _kubeconfig_with_token(cluster, token: str, path: pathlib.Path) -> pathlib.Path:
    """The admin kubeconfig's cluster, with ``token`` as the only credential."""
    config = yaml.safe_load(pathlib.Path(cluster.kubeconfig).read_text())
    config["users"] = [{"name": "token", "user": {"token": token}}]
    config["contexts"] = [
        {"name": "token", "context": {"cluster": config["clusters"][0]["name"], "user": "token"}}
    ]
    config["current-context"] = "token"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _token(core, namespace: str, account: str, pod: Any | None = None) -> str:
    spec: dict[str, Any] = {"audiences": [], "expirationSeconds": 3600}
    if pod is not None:
        spec["boundObjectRef"] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": pod.metadata.name,
            "uid": pod.metadata.uid,
        }
    status = core.create_namespaced_service_account_token(account, namespace, {"spec": spec}).status
    return str(status.token)


class Stack:
    """One EdgeModel with two runtime Pods, the operator-rendered runtime RBAC, and clients."""

    def __init__(
        self, cluster, namespace: str, tmp_path: pathlib.Path, name: str, *, seeded: bool = True
    ) -> None:
        self.namespace, self.name = namespace, name
        self.admin = cluster.api_client()
        self.custom = kubernetes.client.CustomObjectsApi(self.admin)
        core = kubernetes.client.CoreV1Api(self.admin)
        body = self.custom.create_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {"name": name},
                "spec": {
                    "sensors": {
                        "topics": ["plant/+/telemetry"],
                        "features": ["temperature", "humidity"],
                        "target": "temperature",
                    },
                    "drift": {"threshold": 1.5, "window": 100},
                    "model": {"algorithm": "ridge"},
                },
            },
        )
        # The runtime's ServiceAccount, Role and RoleBinding, exactly as the operator renders them.
        em = EdgeModel.from_body(body)
        self.account = f"{name}-runtime"
        for obj in render.desired(em, Settings(), generated_password="x"):
            if (
                obj["kind"] in ("ServiceAccount", "Role", "RoleBinding")
                and obj["metadata"]["name"] == self.account
            ):
                cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(obj))
        self.pods = {}
        for pod_name in ("replica-a", "replica-b"):
            core.create_namespaced_pod(
                namespace,
                {
                    "metadata": {"name": pod_name, "labels": {"app": name}},
                    "spec": {
                        "serviceAccountName": self.account,
                        "containers": [{"name": "runtime", "image": "localhost/edgemodel:test"}],
                    },
                },
            )
        processes.wait_until(
            lambda: all(
                core.read_namespaced_pod(p, namespace).spec.node_name for p in ("replica-a", "replica-b")
            ),
            timeout=60,
            what="kwok to schedule the runtime Pods",
        )
        self.pods = {p: core.read_namespaced_pod(p, namespace) for p in ("replica-a", "replica-b")}
        bound = _token(core, namespace, self.account, self.pods["replica-a"])
        unbound = _token(core, namespace, self.account)
        self.runtime = cluster.api_client(_kubeconfig_with_token(cluster, bound, tmp_path / "bound"))
        self.unbound = cluster.api_client(_kubeconfig_with_token(cluster, unbound, tmp_path / "unbound"))
        if not seeded:
            return
        # The status the operator keeps, and both replicas' reports, written by the admin.
        self.patch(
            self.admin,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Serving",
                            "message": "serving 3",
                            "lastTransitionTime": _stamp(NOW),
                            "observedGeneration": 1,
                        }
                    ],
                    "model": {
                        "version": "3",
                        "history": [
                            {"version": "2", "outcome": "Promoted", "time": _stamp(NOW), "holdoutRmse": 0.5},
                            {
                                "version": "3",
                                "outcome": "Promoted",
                                "time": _stamp(NOW),
                                "holdoutRmse": 0.4,
                                "previousVersion": "2",
                            },
                        ],
                    },
                    "retraining": {"count": 2, "consecutiveRejections": 2, "recentTriggers": [_stamp(NOW)]},
                    "replicaDrift": {"replica-a": _entry(0.4), "replica-b": _entry(0.6)},
                }
            },
        )

    def patch(self, client, body: dict[str, Any], *, status: bool = True) -> dict[str, Any]:
        custom = kubernetes.client.CustomObjectsApi(client)
        call = (
            custom.patch_namespaced_custom_object_status if status else custom.patch_namespaced_custom_object
        )
        result: dict[str, Any] = call(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            self.name,
            body,
            _content_type="application/merge-patch+json",
        )
        return result

    def refused(self, client, body: dict[str, Any], *, status: bool = True) -> str:
        """Send ``body``; assert the API server refused it (403) and changed nothing; return why."""
        before = self.status()
        with pytest.raises(kubernetes.client.ApiException) as refusal:
            self.patch(client, body, status=status)
        assert refusal.value.status == 403, refusal.value.body
        assert self.status() == before
        return str(json.loads(refusal.value.body)["message"])

    def status(self) -> dict[str, Any]:
        obj = self.custom.get_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, self.name
        )
        return dict(obj.get("status") or {})


def _enforced(stack: Stack) -> Stack:
    """Wait until the API server's admission has picked the policy up, then return ``stack``.

    The sign is the first refusal of an empty patch by the unbound token, which is harmless
    while it is not yet refused.
    """

    def refused() -> bool:
        try:
            stack.patch(stack.unbound, {"status": {}})
        except kubernetes.client.ApiException as exc:
            return exc.status == 403 and "ValidatingAdmissionPolicy" in str(exc.body)
        return False

    processes.wait_until(refused, timeout=30, what="the runtime-status policy to be enforced")
    return stack


@pytest.fixture
def stack(cluster, namespace, policy, tmp_path, unique_name) -> Stack:
    return _enforced(Stack(cluster, namespace, tmp_path, unique_name[:40]))


@pytest.fixture
def fresh_stack(cluster, namespace, policy, tmp_path, unique_name) -> Stack:
    """No status at all yet: the runtime's first report creates it."""
    return _enforced(Stack(cluster, namespace, tmp_path, unique_name[:40], seeded=False))


# ---------------------------------------------------------------------------- the policy as shipped


def test_policy_matches_runtimes_and_spares_the_operator(policy):
    vap, binding = policy
    assert vap["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]  # every namespace
    conditions = " ".join(c["expression"] for c in vap["spec"]["matchConditions"])
    assert "'-runtime'" in conditions and "'system:serviceaccount:'" in conditions
    assert f"'system:serviceaccount:{RELEASE_NAMESPACE}:{OPERATOR_ACCOUNT}'" in conditions
    assert any(POD_NAME_KEY in v["expression"] for v in vap["spec"]["variables"])


def test_bound_token_carries_the_pod_name(stack):
    """The extra the policy reads is what the API server (v1.37) sets for a Pod-bound token."""
    review = kubernetes.client.AuthenticationV1Api(stack.runtime).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    user = review.status.user_info
    assert user.username == f"system:serviceaccount:{stack.namespace}:{stack.account}"
    assert user.extra[POD_NAME_KEY] == ["replica-a"]
    unbound = kubernetes.client.AuthenticationV1Api(stack.unbound).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert POD_NAME_KEY not in (unbound.status.user_info.extra or {})


# ---------------------------------------------------------------------------- as the runtime Pod


def test_runtime_writes_its_own_entry(stack):
    sink = reporting.KubernetesSink(
        stack.runtime, namespace=stack.namespace, name=stack.name, pod="replica-a"
    )
    sink.send(api.ReplicaDriftEntry(report_time=NOW, rmse=2.5, samples=100, detected=True, model_version="3"))
    drift = stack.status()["replicaDrift"]
    assert drift["replica-a"]["rmse"] == 2.5 and drift["replica-a"]["detected"] is True
    assert drift["replica-b"]["rmse"] == 0.6 and drift["replica-b"]["detected"] is False
    assert set(sink.replica_drift()) == {"replica-a", "replica-b"}  # it may read the others
    sink.remove()  # on shutdown it removes its own entry
    assert set(stack.status()["replicaDrift"]) == {"replica-b"}


def test_runtime_sees_its_peers_in_the_services_endpointslices_and_may_not_write_them(stack):
    """Dynamic partitioning without heartbeats: the Pods behind the inference Service are the members."""
    core = kubernetes.client.CoreV1Api(stack.admin)
    service = names.inference(stack.name)
    core.create_namespaced_service(
        stack.namespace,
        {
            "metadata": {"name": service},
            "spec": {"selector": {"app": stack.name}, "ports": [{"name": "http", "port": 8080}]},
        },
    )
    members = reporting.EndpointSliceMembers(stack.runtime, namespace=stack.namespace, service=service)
    processes.wait_until(
        lambda: members.live("replica-a") == {"replica-a", "replica-b"},
        timeout=60,
        what="both runtime Pods in the Service's EndpointSlices, read with the runtime's token",
    )
    core.delete_namespaced_pod("replica-b", stack.namespace, grace_period_seconds=0)
    processes.wait_until(
        lambda: members.live("replica-a") == {"replica-a"},
        timeout=60,
        what="the deleted Pod gone from the members",
    )
    discovery = kubernetes.client.DiscoveryV1Api(stack.runtime)
    slice_name = (
        discovery.list_namespaced_endpoint_slice(
            stack.namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        .items[0]
        .metadata.name
    )
    for write in (
        lambda: discovery.delete_namespaced_endpoint_slice(slice_name, stack.namespace),
        lambda: discovery.patch_namespaced_endpoint_slice(
            slice_name, stack.namespace, {"metadata": {"labels": {"x": "y"}}}
        ),
        lambda: discovery.read_namespaced_endpoint_slice(slice_name, stack.namespace),
    ):
        with pytest.raises(kubernetes.client.ApiException) as refused:
            write()
        assert refused.value.status == 403


def test_first_report_creates_the_status(fresh_stack):
    """With no status yet, the API server fills the CRD's defaults in: not a change of the runtime's."""
    stack = fresh_stack
    assert stack.status() == {}
    forged = {
        "retraining": {"count": 5},
        "conditions": [{"type": "Degraded", "status": "True", "reason": "Forged", "message": "",
                        "lastTransitionTime": _stamp(NOW)}],
        "model": {"version": "9"},
    }  # fmt: skip
    for field, value in forged.items():
        why = stack.refused(
            stack.runtime, {"status": {field: value, "replicaDrift": {"replica-a": _entry(1.0)}}}
        )
        assert f"refused its change to status.{field}" in why, why
    why = stack.refused(stack.runtime, {"status": {"replicaDrift": {"replica-b": _entry(1.0)}}})
    assert "status.replicaDrift.replica-b" in why
    sink = reporting.KubernetesSink(
        stack.runtime, namespace=stack.namespace, name=stack.name, pod="replica-a"
    )
    sink.send(api.ReplicaDriftEntry(report_time=NOW, rmse=0.3, samples=10, model_version="3"))
    status = stack.status()
    assert set(status["replicaDrift"]) == {"replica-a"}
    assert (
        status["retraining"]["count"] == 0 and status["conditions"] == [] and "version" not in status["model"]
    )


def test_runtime_cannot_touch_another_pods_entry(stack):
    why = stack.refused(
        stack.runtime, {"status": {"replicaDrift": {"replica-b": _entry(9.0, detected=True)}}}
    )
    assert "may change only status.replicaDrift.replica-a" in why
    assert "status.replicaDrift.replica-b" in why
    why = stack.refused(stack.runtime, {"status": {"replicaDrift": {"replica-b": None}}})
    assert "status.replicaDrift.replica-b" in why
    # its own entry in the same request does not carry the other through
    stack.refused(
        stack.runtime,
        {"status": {"replicaDrift": {"replica-a": _entry(1.0), "replica-b": _entry(9.0, detected=True)}}},
    )


def test_runtime_cannot_invent_a_pod(stack):
    why = stack.refused(
        stack.runtime, {"status": {"replicaDrift": {"ghost-0": _entry(9.0, detected=True, when=FAR_FUTURE)}}}
    )
    assert "status.replicaDrift.ghost-0" in why


@pytest.mark.parametrize(
    ("field", "patch"),
    [
        ("retraining", {"retraining": {"recentTriggers": [], "consecutiveRejections": 0}}),
        ("conditions", {"conditions": []}),
        ("model", {"model": {"history": []}}),
        ("model", {"model": {"version": "2"}}),
        ("drift", {"drift": {"detected": True, "rmse": 9.0}}),
        ("observedGeneration", {"observedGeneration": 99}),
    ],
)
def test_runtime_cannot_touch_the_operators_status(stack, field, patch):
    why = stack.refused(stack.runtime, {"status": patch})
    assert f"refused its change to status.{field}" in why, why
    assert "may change only status.replicaDrift.replica-a" in why
    # not even alongside a write of its own entry
    stack.refused(stack.runtime, {"status": {**patch, "replicaDrift": {"replica-a": _entry(1.0)}}})


def test_runtime_cannot_touch_spec(stack):
    why = stack.refused(stack.runtime, {"spec": {"drift": {"threshold": 99.0}}}, status=False)
    assert 'cannot patch resource "edgemodels"' in why  # RBAC, before admission
    spec = stack.custom.get_namespaced_custom_object(
        api.GROUP, api.VERSION, stack.namespace, api.PLURAL, stack.name
    )["spec"]
    assert spec["drift"]["threshold"] == 1.5


def test_token_not_bound_to_a_pod_writes_nothing(stack):
    for pod in ("replica-a", "replica-b", "ghost-0"):
        why = stack.refused(stack.unbound, {"status": {"replicaDrift": {pod: _entry(1.0)}}})
        assert "not bound to a Pod" in why, why
    why = stack.refused(stack.unbound, {"status": {"retraining": {"consecutiveRejections": 0}}})
    assert "not bound to a Pod" in why


# ---------------------------------------------------------------------------- everyone else


def _operator_client(cluster, stack: Stack, tmp_path: pathlib.Path):
    """The chart's operator ServiceAccount, allowed to patch EdgeModel status in the namespace."""
    core = kubernetes.client.CoreV1Api(stack.admin)
    rbac = kubernetes.client.RbacAuthorizationV1Api(stack.admin)
    try:
        core.create_namespace({"metadata": {"name": RELEASE_NAMESPACE}})
    except kubernetes.client.ApiException as exc:
        assert exc.status == 409
    try:
        core.create_namespaced_service_account(RELEASE_NAMESPACE, {"metadata": {"name": OPERATOR_ACCOUNT}})
    except kubernetes.client.ApiException as exc:
        assert exc.status == 409
    rbac.create_namespaced_role(
        stack.namespace,
        {
            "metadata": {"name": "operator-status"},
            "rules": [
                {"apiGroups": [api.GROUP], "resources": [f"{api.PLURAL}/status"], "verbs": ["get", "patch"]}
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        stack.namespace,
        {
            "metadata": {"name": "operator-status"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator-status"},
            "subjects": [
                {"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": RELEASE_NAMESPACE}
            ],
        },
    )
    token = _token(core, RELEASE_NAMESPACE, OPERATOR_ACCOUNT)
    return cluster.api_client(_kubeconfig_with_token(cluster, token, tmp_path / "operator"))


def test_operator_and_admin_write_everything(cluster, stack, tmp_path):
    operator = _operator_client(cluster, stack, tmp_path)
    for who, client in (("operator", operator), ("admin", stack.admin)):
        stack.patch(
            client,
            {
                "status": {
                    "retraining": {"consecutiveRejections": 0, "recentTriggers": []},
                    "conditions": [],
                    "model": {"history": []},
                    "observedGeneration": 7,
                    "replicaDrift": {"replica-a": None, "replica-b": _entry(0.7), f"gone-{who}": _entry(0.1)},
                }
            },
        )
        status = stack.status()
        assert status["retraining"]["consecutiveRejections"] == 0, who
        assert status["model"].get("history", []) == [] and status["observedGeneration"] == 7, who
        assert (
            set(status["replicaDrift"]) >= {"replica-b", f"gone-{who}"}
            and "replica-a" not in status["replicaDrift"]
        )
