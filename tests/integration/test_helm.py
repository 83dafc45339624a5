"""The Helm chart with the real pinned helm: lint, template, and install on the control plane.

``helm template`` checks what the chart renders for the default values and for
``ci/full-values.yaml`` (every optional feature on); the PrometheusRule, ServiceMonitor and
PodMonitor kinds exist only there, since their CRDs are not in the harness. ``helm install``
puts the chart on the real API server: the operator Deployment becomes Available on the
kwok node, and the operator, run locally as that Deployment's Pod under the chart's own
ServiceAccount and RBAC (namespaced, as watchNamespace is set), reconciles ``examples/edgemodel.yaml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from typing import Any

import kubernetes
import pytest
import yaml

from edgemodel_dev.harness import binaries, pods, processes

pytestmark = pytest.mark.cluster

REPO = binaries.repo_root()
CHART = REPO / "helm" / "edgemodel"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RULES = CHART / "files" / "operator-rules.yaml"
KUBE_VERSION = binaries.versions()["K8S_VERSION"]
ALERTS = {
    "EdgeModelDriftedTooLong",
    "EdgeModelRetrainingStuck",
    "EdgeModelDegraded",
    "EdgeModelNotReady",
    "EdgeModelModelTooOld",
}
CONDITION_ALERTS = {
    "EdgeModelDriftedTooLong": ("Drifted", 'status="True"'),
    "EdgeModelRetrainingStuck": ("Retraining", 'status="True"'),
    "EdgeModelDegraded": ("Degraded", 'status="True"'),
    "EdgeModelNotReady": ("Ready", 'status!="True"'),
}
EXAMPLE = REPO / "examples" / "edgemodel.yaml"


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Keep helm's cache, config and data out of the user's home."""
    home = tmp_path_factory.mktemp("helm-home")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def helm(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(binaries.find("helm")), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def template(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    out = helm(env, "template", "em", str(CHART), "--namespace", "edgemodel-system",
               "--kube-version", KUBE_VERSION, *args)  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = by_kind(docs)[kind]
    return found


def container_env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# ---------------------------------------------------------------------------- lint, template


def test_lint(helm_env):
    out = helm(helm_env, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in out
    out = helm(
        helm_env, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(FULL_VALUES)
    )
    assert "0 chart(s) failed" in out


def test_template_defaults(helm_env):
    docs = template(helm_env)
    kinds = by_kind(docs)
    assert set(kinds) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                          "Deployment", "Service", "ValidatingAdmissionPolicy",
                          "ValidatingAdmissionPolicyBinding"}  # fmt: skip

    # The roles are made from the rules file (test_trust_rbac.py: where each rule lands), and
    # each binding binds its role to the operator's ServiceAccount.
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    role_names = {(d["kind"], d["metadata"]["name"]) for d in kinds["ClusterRole"] + kinds["Role"]}
    assert role_names == {("ClusterRole", "em-edgemodel"), ("ClusterRole", "em-edgemodel-cluster"),
                          ("Role", "em-edgemodel-leader")}  # fmt: skip
    for binding in kinds["ClusterRoleBinding"] + kinds["RoleBinding"]:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in role_names
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": "edgemodel-system"}
        ]

    dep = one(docs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert dep["spec"]["replicas"] == 1
    assert spec["serviceAccountName"] == account
    assert container["image"] == "ghcr.io/edgemodel/edgemodel:0.1.0"
    assert container["command"] == ["edgemodel-operator"]
    for probe in (container["livenessProbe"], container["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8000, "health": 8081}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = container_env(dep)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["EDGEMODEL_MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    assert env["EDGEMODEL_IMAGE"] == "ghcr.io/edgemodel/edgemodel:0.1.0"
    assert env["EDGEMODEL_METRICS_PORT"] == "8000"
    assert env["EDGEMODEL_HEALTH_PORT"] == "8081"
    assert env["EDGEMODEL_LEADER_ELECTION"] == "true"
    assert env["EDGEMODEL_LOG_LEVEL"] == "INFO"
    assert "EDGEMODEL_NAMESPACE" not in env  # cluster-wide by default

    svc = one(docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "em"
        assert labels["helm.sh/chart"] == "edgemodel-0.1.0"


def test_template_full_values(helm_env):
    docs = template(helm_env, "-f", str(FULL_VALUES))
    kinds = by_kind(docs)
    assert {"PrometheusRule", "ServiceMonitor", "PodMonitor", "ConfigMap", "PodDisruptionBudget"} <= set(
        kinds
    )
    # watchNamespace is set: the only ClusterRole is for cluster-scoped reads.
    assert [r["metadata"]["name"] for r in kinds["ClusterRole"]] == ["em-edgemodel-cluster"]
    assert {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in kinds["Role"]} == {
        ("plant-floor", "em-edgemodel"), ("edgemodel-system", "em-edgemodel-leader")}  # fmt: skip

    dep = one(docs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert spec["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
    assert "podAntiAffinity" in spec["affinity"]
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    (container,) = spec["containers"]
    assert container["image"] == "registry.example.com/edgemodel/edgemodel:0.1.0-test"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["requests"]["memory"] == "300Mi"
    env = container_env(dep)
    assert env["EDGEMODEL_IMAGE"] == "registry.example.com/edgemodel/edgemodel-runtime:0.1.0-test"
    assert env["EDGEMODEL_NAMESPACE"] == "plant-floor"
    assert env["EDGEMODEL_MLFLOW_TRACKING_URI"] == "http://mlflow.example.svc:5000"
    assert env["EDGEMODEL_LOG_LEVEL"] == "DEBUG"
    assert env["EDGEMODEL_JOB_TTL_SECONDS"] == "600"

    # Monitoring: the operator's Service, the inference Pods, the five alerts, the dashboard.
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_monitor = one(docs, "PodMonitor")
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"
    assert pod_monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "inference"

    rule = one(docs, "PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    assert len(rules) == len(ALERTS)
    alerts = {r["alert"]: r for r in rules}
    for name, (condition, status) in CONDITION_ALERTS.items():
        expr = alerts[name]["expr"]
        assert "edgemodel_condition" in expr and f'type="{condition}"' in expr and status in expr
    assert "edgemodel_model_last_trained_timestamp_seconds" in alerts["EdgeModelModelTooOld"]["expr"]
    assert alerts["EdgeModelModelTooOld"]["expr"].endswith("> 86400")
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}
        assert "{{ $labels.edgemodel }}" in r["annotations"]["summary"]

    (dashboard_cm,) = [d for d in kinds["ConfigMap"] if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard_cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_cm["data"]["edgemodel.json"])
    assert dashboard["uid"] == "edgemodel-overview"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("edgemodel_drift_rmse", "edgemodel_drift_threshold", "edgemodel_retrains",
                   "edgemodel_readings_total", "edgemodel_predictions_total",
                   "edgemodel_prediction_latency_seconds_bucket", "edgemodel_model_info"):  # fmt: skip
        assert metric in exprs, metric


def _lease_names(docs: list[dict[str, Any]]) -> list[str]:
    (role,) = [d for d in by_kind(docs)["Role"] if d["metadata"]["name"] == "em-edgemodel-leader"]
    return [n for rule in role["rules"] for n in rule.get("resourceNames", [])]


def test_template_shards(helm_env):
    """One shard is the one leader Lease of before; N shards: N Leases by name, at least N replicas."""
    docs = template(helm_env)
    assert container_env(one(docs, "Deployment"))["EDGEMODEL_SHARDS"] == "1"
    assert _lease_names(docs) == ["em-edgemodel"]

    docs = template(helm_env, "--set", "shards=3", "--set", "leaderElection.leaseName=em-leader")
    dep = one(docs, "Deployment")
    env = container_env(dep)
    assert (env["EDGEMODEL_SHARDS"], env["EDGEMODEL_SHARD_TAKEOVER_SECONDS"]) == ("3", "30")
    assert env["EDGEMODEL_LEASE_NAME"] == "em-leader"
    assert dep["spec"]["replicas"] == 3  # replicaCount 1, raised to one per shard
    assert _lease_names(docs) == ["em-leader-shard-0", "em-leader-shard-1", "em-leader-shard-2"]
    assert "PodDisruptionBudget" in by_kind(docs)

    docs = template(helm_env, "--set", "shards=2", "--set", "replicaCount=3")
    assert one(docs, "Deployment")["spec"]["replicas"] == 3  # a standby beside the two shards

    argv = [str(binaries.find("helm")), "template", "em", str(CHART), "--kube-version", KUBE_VERSION]
    proc = subprocess.run([*argv, "--set", "shards=2", "--set", "leaderElection.enabled=false"],
                          capture_output=True, text=True, env=helm_env, timeout=60, check=False)  # fmt: skip
    assert proc.returncode != 0 and "shards > 1 needs leaderElection.enabled" in proc.stderr, proc.stderr


def test_prometheusrule_example_matches_chart(helm_env):
    """deploy/alerts/prometheusrule.yaml is the chart's rule group with its default values."""
    docs = template(helm_env, "--set", "prometheusRule.enabled=true")
    chart_groups = one(docs, "PrometheusRule")["spec"]["groups"]
    standalone = yaml.safe_load((REPO / "deploy" / "alerts" / "prometheusrule.yaml").read_text())
    assert standalone["kind"] == "PrometheusRule"
    assert standalone["spec"]["groups"] == chart_groups


@pytest.mark.parametrize(
    ("setting", "field"),
    [("replicaCount=0", "/replicaCount"), ("logLevel=LOUD", "/logLevel"),
     ("image.pullPolicy=Sometimes", "/image/pullPolicy"), ("prometheusRule.driftedFor=soon", "driftedFor"),
     ("shards=0", "/shards")],
)  # fmt: skip
def test_values_schema_refuses_bad_values(helm_env, setting, field):
    argv = [str(binaries.find("helm")), "template", "em", str(CHART), "--kube-version", KUBE_VERSION]
    proc = subprocess.run([*argv, "--set", setting], capture_output=True, text=True, env=helm_env, timeout=60,
                          check=False)  # fmt: skip
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------- install


def _deployment_available(apps: kubernetes.client.AppsV1Api, namespace: str, name: str) -> bool:
    dep = apps.read_namespaced_deployment_status(name, namespace)
    return any(c.type == "Available" and c.status == "True" for c in dep.status.conditions or [])


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
        return bool(resp.status == 200)


def _example_in(namespace: str) -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["namespace"] = namespace
    return yaml.safe_dump(doc)


def test_install_runs_the_operator(cluster, namespace, helm_env, tmp_path):
    release = f"em-{namespace}"
    kubeconfig = str(cluster.kubeconfig)
    client = cluster.api_client()
    proc: processes.ManagedProcess | None = None
    try:
        # The session fixture already installed the CRD; helm leaves an existing CRD as it is.
        helm(helm_env, "install", release, str(CHART), "--kubeconfig", kubeconfig, "--namespace", namespace,
             "--set", f"watchNamespace={namespace}", "--set", "image.repository=localhost/edgemodel",
             "--set", "image.tag=test", "--set", "mlflow.trackingUri=http://127.0.0.1:1",
             "--wait", "--timeout", "60s")  # fmt: skip
        fullname = f"{release}-edgemodel"
        apps = kubernetes.client.AppsV1Api(client)
        processes.wait_until(lambda: _deployment_available(apps, namespace, fullname), timeout=30,
                             what="the operator Deployment to be Available")  # fmt: skip
        core = kubernetes.client.CoreV1Api(client)
        (pod,) = core.list_namespaced_pod(
            namespace,
            label_selector=f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator",
        ).items
        assert pod.spec.node_name == "edge-0"
        assert pod.spec.service_account_name == fullname

        # Run the operator as that Pod, with the chart's ServiceAccount and Roles. The
        # Pod's own environment (watchNamespace, POD_NAMESPACE for the Lease, the image) is
        # used as the chart rendered it; only the credentials and local ports are the test's.
        health_port = processes.free_port()
        proc = pods.start_pod_process(
            client, namespace, pod.metadata.name, tmp_path / "operator",
            env={
                "KUBECONFIG": str(cluster.kubeconfig_for_service_account(namespace, fullname)),
                "EDGEMODEL_METRICS_PORT": str(processes.free_port()),
                "EDGEMODEL_HEALTH_PORT": str(health_port),
                "EDGEMODEL_BIND_ADDRESS": "127.0.0.1",
            },
        )  # fmt: skip
        proc.wait_ready(lambda: _healthy(health_port), timeout=60)

        cluster.kubectl("apply", "-f", "-", stdin=_example_in(namespace))
        processes.wait_until(
            lambda: apps.read_namespaced_stateful_set("line1-temperature-inference", namespace) is not None,
            timeout=60, what="the example's inference StatefulSet",
        )  # fmt: skip
        inference = apps.read_namespaced_stateful_set("line1-temperature-inference", namespace)
        (runtime,) = inference.spec.template.spec.containers
        assert runtime.image == "localhost/edgemodel:test"  # the chart's image, passed on by the operator
        assert runtime.command == ["edgemodel-runtime"]

        # The status was written under the chart's RBAC: no model yet, so not Ready.
        custom = kubernetes.client.CustomObjectsApi(client)

        def ready_reason() -> str | None:
            em = custom.get_namespaced_custom_object("edgeml.dev", "v1alpha1", namespace, "edgemodels",
                                                     "line1-temperature")  # fmt: skip
            conds = {c["type"]: c for c in (em.get("status") or {}).get("conditions") or []}
            return conds.get("Ready", {}).get("reason")

        processes.wait_until(lambda: ready_reason() == "NoModel", timeout=30, what="the Ready condition")
        lease = kubernetes.client.CoordinationV1Api(client).read_namespaced_lease(fullname, namespace)
        assert lease.spec.holder_identity == pod.metadata.name
        assert proc.running, proc.log_tail()
    finally:
        if proc is not None:
            proc.stop(timeout=15)
        helm(helm_env, "uninstall", release, "--kubeconfig", kubeconfig, "--namespace", namespace,
             "--ignore-not-found", "--wait", "--timeout", "60s")  # fmt: skip
