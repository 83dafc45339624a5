"""Least privilege for the operator: what the chart's RBAC lets its ServiceAccount do.

``helm template`` shows where each rule of ``files/operator-rules.yaml`` lands.
``helm install`` (the real pinned helm) puts the chart on the harness API server in both
modes, and ``kubectl auth can-i`` (the pinned kubectl), impersonating the operator's
ServiceAccount with the admin kubeconfig, shows what that grants: never a list or watch of
Secrets; the leader Lease only in the release namespace and only by its name (create, which
RBAC cannot limit by name, only there); and with ``watchNamespaces`` set, no power to
create a workload anywhere but the watched namespaces. The operator, run as the chart's Pod
under those namespaced Roles, still reconciles an EdgeModel.
"""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
import yaml

from edgemodel_dev.harness import binaries, pods, processes

pytestmark = pytest.mark.cluster

CHART = binaries.repo_root() / "helm" / "edgemodel"
RULES = yaml.safe_load((CHART / "files" / "operator-rules.yaml").read_text())
KUBE_VERSION = binaries.versions()["K8S_VERSION"]
WORKLOADS = ("deployments.apps", "statefulsets.apps", "jobs.batch", "cronjobs.batch")
CLUSTER_READS = {
    "customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"},
    "namespaces": {"list", "watch"},
}
ROW = re.compile(r"^(\S*)\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$")


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("helm-home")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "c"),
        "HELM_CONFIG_HOME": str(home / "f"),
        "HELM_DATA_HOME": str(home / "d"),
    }


def helm(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(binaries.find("helm")), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def template(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    out = helm(
        env,
        "template",
        "em",
        str(CHART),
        "--namespace",
        "edgemodel-system",
        "--kube-version",
        KUBE_VERSION,
        *args,
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def roles(docs: list[dict[str, Any]]) -> dict[tuple[str, str | None, str], list[dict[str, Any]]]:
    """(kind, namespace, name) -> rules, for every ClusterRole and Role rendered."""
    return {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d["rules"]
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
    }


def _verbs_by_resource(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


# ---------------------------------------------------------------------------- helm template


def test_every_rule_lands_in_exactly_one_place(helm_env):
    for args in ((), ("--set", "watchNamespaces={plant-a,plant-b}")):
        rendered = roles(template(helm_env, *args))
        granted: set[tuple[str, str, str]] = set()
        for key, rules in rendered.items():
            if key[0] == "Role" and key[1] == "plant-b":
                continue  # the same Role as plant-a's
            triples = _verbs_by_resource(rules)
            assert not triples & granted, key
            granted |= triples
        assert granted == _verbs_by_resource(RULES)


def test_secrets_are_never_listed_or_watched(helm_env):
    assert ("", "secrets", "get") in _verbs_by_resource(RULES)
    for args in ((), ("--set", "watchNamespace=plant-a")):
        for key, rules in roles(template(helm_env, *args)).items():
            for group, resource, verb in _verbs_by_resource(rules):
                assert not (resource in ("secrets", "*") and verb in ("list", "watch", "*")), key
                assert "*" not in (group, resource, verb), key


def test_lease_role_is_named_and_namespaced(helm_env):
    rendered = roles(template(helm_env, "--set", "leaderElection.leaseName=em-leader"))
    lease_rules = rendered[("Role", "edgemodel-system", "em-edgemodel-leader")]
    assert lease_rules == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["em-leader"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    for key, rules in rendered.items():
        if key[2] != "em-edgemodel-leader":
            assert "leases" not in {r for rule in rules for r in rule["resources"]}, key
    assert ("Role", "edgemodel-system", "em-edgemodel-leader") not in roles(
        template(helm_env, "--set", "leaderElection.enabled=false")
    )


def test_namespaced_mode_renders_no_clusterrole_for_workloads(helm_env):
    docs = template(helm_env, "--set", "watchNamespace=plant-a", "--set", "watchNamespaces={plant-b,plant-a}")
    rendered = roles(docs)
    cluster_roles = {key[2]: rules for key, rules in rendered.items() if key[0] == "ClusterRole"}
    assert cluster_roles == {"em-edgemodel-cluster": cluster_roles["em-edgemodel-cluster"]}
    assert {(r["resources"][0], frozenset(r["verbs"])) for r in cluster_roles["em-edgemodel-cluster"]} == {
        (resource.split(".")[0], frozenset(verbs)) for resource, verbs in CLUSTER_READS.items()
    }
    namespaced = {key[1] for key in rendered if key[0] == "Role" and key[2] == "em-edgemodel"}
    assert namespaced == {"plant-a", "plant-b"}
    bindings = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
    }
    assert set(bindings) == {
        ("ClusterRoleBinding", None, "em-edgemodel-cluster"),
        ("RoleBinding", "edgemodel-system", "em-edgemodel-leader"),
        ("RoleBinding", "plant-a", "em-edgemodel"),
        ("RoleBinding", "plant-b", "em-edgemodel"),
    }
    for binding in bindings.values():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "em-edgemodel", "namespace": "edgemodel-system"}
        ]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EDGEMODEL_NAMESPACE"] == "plant-a,plant-b"


# ---------------------------------------------------------------------------- installed: kubectl auth can-i


class Operator:
    """The chart's operator ServiceAccount, asked about with ``kubectl auth can-i --as``."""

    def __init__(self, cluster, namespace: str, account: str) -> None:
        self.cluster = cluster
        self.user = f"system:serviceaccount:{namespace}:{account}"

    def can(self, verb: str, resource: str, namespace: str | None) -> bool:
        where = ["--all-namespaces"] if namespace is None else ["-n", namespace]
        out = self.cluster.kubectl("auth", "can-i", verb, resource, *where, f"--as={self.user}", check=False)
        answer = out.stdout.strip()
        assert answer in ("yes", "no"), out.stderr
        return answer == "yes"

    def rules(self, namespace: str) -> dict[tuple[str, tuple[str, ...]], set[str]]:
        """``kubectl auth can-i --list`` in ``namespace``: (resource, resourceNames) -> verbs."""
        out = self.cluster.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={self.user}").stdout
        lines = out.splitlines()
        assert lines[0].split()[0] == "Resources", out
        found: dict[tuple[str, tuple[str, ...]], set[str]] = {}
        for line in lines[1:]:
            match = ROW.match(line)
            assert match, line
            resource, urls, names, verbs = match.groups()
            if urls:
                continue  # non-resource URLs (discovery), granted to every user
            key = (resource, tuple(names.split()))
            found.setdefault(key, set()).update(verbs.split())
        return found

    def granted(self, namespace: str) -> dict[tuple[str, tuple[str, ...]], set[str]]:
        """:meth:`rules` less what a ServiceAccount with no bindings of its own may do there."""
        nobody = Operator(self.cluster, self.user.split(":")[2], "nobody-in-particular")
        baseline = nobody.rules(namespace)
        extra = {key: verbs - baseline.get(key, set()) for key, verbs in self.rules(namespace).items()}
        return {key: verbs for key, verbs in extra.items() if verbs}


@pytest.fixture
def install(cluster, namespace, helm_env) -> Iterator[Any]:
    """Install the chart with extra ``--set`` values; uninstalled afterwards."""
    releases: list[str] = []

    def run(release: str, *settings: str, wait: bool = False) -> Operator:
        releases.append(release)
        argv = [
            "install",
            release,
            str(CHART),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            namespace,
            "--set",
            "image.repository=localhost/edgemodel",
            "--set",
            "image.tag=test",
            "--set",
            "mlflow.trackingUri=http://127.0.0.1:1",
        ]
        for setting in settings:
            argv += ["--set", setting]
        if wait:
            argv += ["--wait", "--timeout", "60s"]
        helm(helm_env, *argv)
        return Operator(cluster, namespace, f"{release}-edgemodel")

    yield run
    for release in releases:
        helm(
            helm_env,
            "uninstall",
            release,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            namespace,
            "--ignore-not-found",
            "--wait",
            "--timeout",
            "60s",
        )


def _assert_lease_rules(operator: Operator, namespace: str, lease: str) -> None:
    assert operator.can("get", f"leases/{lease}", namespace)
    assert operator.can("update", f"leases/{lease}", namespace)
    assert operator.can("create", "leases", namespace)  # create cannot be limited by name
    assert not operator.can("update", "leases/someone-elses", namespace)
    assert not operator.can("delete", f"leases/{lease}", namespace)
    assert not operator.can("list", "leases", namespace)
    rules = operator.rules(namespace)
    assert rules[("leases.coordination.k8s.io", (lease,))] == {"get", "update"}
    assert rules[("leases.coordination.k8s.io", ())] == {"create"}
    for elsewhere in ("kube-system", "default", None):
        for verb in ("create", "update", "get", "patch", "delete"):
            assert not operator.can(verb, f"leases/{lease}" if verb != "create" else "leases", elsewhere), (
                verb,
                elsewhere,
            )


def _assert_no_secret_listing(operator: Operator, namespaces: list[str]) -> None:
    for verb in ("list", "watch"):
        assert not operator.can(verb, "secrets", None)
        for ns in namespaces:
            assert not operator.can(verb, "secrets", ns)
    for ns in namespaces:
        for (resource, _), verbs in operator.rules(ns).items():
            if resource in ("secrets", "*"):
                assert not verbs & {"list", "watch", "*"}, (ns, verbs)


def test_cluster_wide_install(cluster, namespace, install):
    operator = install(f"cw-{namespace}")
    fullname = f"cw-{namespace}-edgemodel"
    _assert_no_secret_listing(operator, ["kube-system", namespace, "default"])
    _assert_lease_rules(operator, namespace, fullname)
    # Cluster-wide mode reads Secrets by name and creates workloads everywhere, kube-system
    # included: the price of watching every namespace (docs/security.md).
    assert operator.rules("kube-system")[("secrets", ())] == {"get", "create", "patch", "delete"}
    for workload in WORKLOADS:
        assert operator.can("create", workload, "kube-system")
    assert operator.can("list", "edgemodels.edgeml.dev", None)
    assert not operator.can("create", "clusterroles", None)
    assert not operator.can("create", "pods", "kube-system")
    assert not operator.can("update", "edgemodels.edgeml.dev", namespace)


def test_namespaced_install(cluster, namespace, install, tmp_path):
    release = f"ns-{namespace}"
    fullname = f"{release}-edgemodel"
    with cluster.namespace(f"{namespace}-a") as plant_a, cluster.namespace(f"{namespace}-b") as plant_b:
        operator = install(release, f"watchNamespaces={{{plant_a},{plant_b}}}", wait=True)
        _assert_no_secret_listing(operator, ["kube-system", namespace, plant_a, plant_b])
        _assert_lease_rules(operator, namespace, fullname)
        for ns in ("kube-system", "default", namespace):  # kube-system, elsewhere, its own namespace
            for workload in WORKLOADS:
                assert not operator.can("create", workload, ns), (workload, ns)
            assert not operator.can("get", "secrets", ns)
            # Nothing there beyond what any ServiceAccount may do, but the cluster-scoped reads
            # and (in its own namespace) the Lease.
            for (resource, names), verbs in operator.granted(ns).items():
                if resource == "leases.coordination.k8s.io" and ns == namespace:
                    continue
                assert resource in CLUSTER_READS and verbs == CLUSTER_READS[resource] and not names, (
                    ns,
                    resource,
                )
        assert {resource for resource, _ in operator.granted("kube-system")} == set(CLUSTER_READS)
        for ns in (plant_a, plant_b):
            for workload in WORKLOADS:
                assert operator.can("create", workload, ns)
            assert operator.can("get", "secrets", ns)
            assert operator.can("patch", "edgemodels.edgeml.dev/status", ns)
        for verb in ("list", "create"):
            for resource in ("edgemodels.edgeml.dev", *WORKLOADS):
                assert not operator.can(verb, resource, None), (verb, resource)
        _operator_reconciles(cluster, namespace, release, plant_b, tmp_path)


def _healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:  # nosec B310
        return bool(resp.status == 200)


def _operator_reconciles(cluster, namespace: str, release: str, watched: str, tmp_path) -> None:
    """Run the chart's operator Pod under its namespaced RBAC; it reconciles an EdgeModel."""
    client = cluster.api_client()
    fullname = f"{release}-edgemodel"
    core = kubernetes.client.CoreV1Api(client)
    (pod,) = core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    ).items
    health_port = processes.free_port()
    proc = pods.start_pod_process(
        client,
        namespace,
        pod.metadata.name,
        tmp_path / "operator",
        env={
            "KUBECONFIG": str(cluster.kubeconfig_for_service_account(namespace, fullname)),
            "EDGEMODEL_METRICS_PORT": str(processes.free_port()),
            "EDGEMODEL_HEALTH_PORT": str(health_port),
            "EDGEMODEL_BIND_ADDRESS": "127.0.0.1",
        },
    )
    try:
        proc.wait_ready(lambda: _healthy(health_port), timeout=60)
        example = yaml.safe_load((binaries.repo_root() / "examples" / "edgemodel.yaml").read_text())
        example["metadata"]["namespace"] = watched
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(example))
        custom = kubernetes.client.CustomObjectsApi(client)

        def ready_reason() -> str | None:
            em = custom.get_namespaced_custom_object(
                "edgeml.dev", "v1alpha1", watched, "edgemodels", example["metadata"]["name"]
            )
            conds = {c["type"]: c for c in (em.get("status") or {}).get("conditions") or []}
            return conds.get("Ready", {}).get("reason")

        processes.wait_until(
            lambda: ready_reason() == "NoModel", timeout=60, what="the operator's status write"
        )
        rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        assert rbac.read_namespaced_role(f"{example['metadata']['name']}-runtime", watched).rules
        secret = core.read_namespaced_secret(f"{example['metadata']['name']}-broker-credentials", watched)
        assert secret.data["password"]
        lease = kubernetes.client.CoordinationV1Api(client).read_namespaced_lease(fullname, namespace)
        assert lease.spec.holder_identity == pod.metadata.name
        assert proc.running, proc.log_tail()
        log = proc.log_path.read_text(errors="replace")
        assert "Forbidden" not in log and "forbidden" not in log, log[-4000:]
    finally:
        proc.stop(timeout=15)


# ---------------------------------------------------------------------------- Secrets by name


def test_operator_prunes_the_broker_secret_it_cannot_list(cluster, api_client, namespace, operators):
    """Under the rules file, the operator reads and prunes its broker Secret by name, never by list."""
    harness_operator = Operator(cluster, "edgemodel-system", "edgemodel-operator")
    operators()
    assert not harness_operator.can("list", "secrets", namespace)
    assert harness_operator.can("get", "secrets", namespace)
    example = yaml.safe_load((binaries.repo_root() / "examples" / "edgemodel.yaml").read_text())
    example["metadata"] = {"name": "em", "namespace": namespace}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(example))
    core = kubernetes.client.CoreV1Api(api_client)

    def secret_exists() -> bool:
        return bool(core.read_namespaced_secret("em-broker-credentials", namespace).data["password"])

    processes.wait_until(secret_exists, timeout=60, what="the managed broker's Secret")
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        "edgeml.dev",
        "v1alpha1",
        namespace,
        "edgemodels",
        "em",
        {"spec": {"broker": {"host": "mqtt.example"}}},
    )

    def secret_gone() -> bool:
        try:
            core.read_namespaced_secret("em-broker-credentials", namespace)
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    processes.wait_until(secret_gone, timeout=60, what="the operator to prune the broker Secret")
