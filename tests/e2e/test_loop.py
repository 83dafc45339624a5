"""The whole loop in real containers on a real node, the way a user installs it.

The module runs ``hack/e2e-steps.sh`` (the steps ``hack/kind-e2e.sh`` runs on kind):
MLflow from ``examples/mlflow.yaml``, ``helm install`` of the chart with the project's
image, ``examples/edgemodel.yaml`` and the simulator Pod, then waits for the heal. The
tests after it use the same cluster: the containers' security, DNS and Services, a
runtime Pod killed mid-stream, the operator Pod deleted, the HPA on real CPU, and
``helm uninstall``. They run in file order; each needs the loop before it.

Figures (times, image sizes, the runtime's memory) go to ``$EDGEMODEL_E2E_REPORT`` as JSON
when it is set (``make e2e`` writes ``bench/results/e2e.json``).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pathlib
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from edgemodel_dev.harness import node, nodetools, processes
from tests.e2e import probe
from tests.e2e.conftest import REPO, Steps

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

EM = "line1-temperature"
NS = "default"
OPERATOR_NS = "edgemodel-system"
OPERATOR_PODS = "app.kubernetes.io/component=operator"
REPORT: dict[str, Any] = {}


def _core(cluster: node.RealCluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(cluster.plane.api_client())


def _edgemodel(cluster: node.RealCluster) -> dict[str, Any]:
    api = kubernetes.client.CustomObjectsApi(cluster.plane.api_client())
    obj: dict[str, Any] = api.get_namespaced_custom_object("edgeml.dev", "v1alpha1", NS, "edgemodels", EM)
    return obj


def _condition(em: dict[str, Any], kind: str) -> str | None:
    for c in (em.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return None


def _version(em: dict[str, Any]) -> int | None:
    version = ((em.get("status") or {}).get("model") or {}).get("version")
    return int(version) if version not in (None, "") else None


def _pods(cluster: node.RealCluster, namespace: str, selector: str) -> list[Any]:
    return list(_core(cluster).list_namespaced_pod(namespace, label_selector=selector).items)


def _ready(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
    )


def _runtime_pods(cluster: node.RealCluster) -> list[Any]:
    return _pods(cluster, NS, f"edgeml.dev/edgemodel={EM},app.kubernetes.io/component=inference")


def _kubectl(cluster: node.RealCluster, *args: str, check: bool = True) -> str:
    return cluster.plane.kubectl(*args, check=check).stdout


def _log_time(line: str) -> float:
    """The kubelet's RFC 3339 timestamp at the start of a ``kubectl logs --timestamps`` line."""
    stamp = line.split(" ", 1)[0]
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def steps(real_cluster: node.RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Steps:
    return Steps(real_cluster, tmp_path_factory.mktemp("e2e-steps"))


@pytest.fixture(scope="module")
def loop(real_cluster: node.RealCluster, steps: Steps) -> Iterator[dict[str, Any]]:
    """Install, apply, stream, drift and heal, timing each part."""
    t0 = time.time()
    steps.run("mlflow")
    t_install = time.time()
    steps.run("install")
    steps.run("edgemodel")
    steps.run("simulator")
    processes.wait_until(
        lambda: (
            _condition(_edgemodel(real_cluster), "Ready") == "True" and _version(_edgemodel(real_cluster))
        ),
        timeout=600,
        interval=1,
        what="the EdgeModel Ready with a first model",
    )
    t_ready = time.time()
    first = _version(_edgemodel(real_cluster))
    steps.run("heal", env={"TIMEOUT": "900"})
    t_healed = time.time()
    healed = _version(_edgemodel(real_cluster))
    logs = _kubectl(real_cluster, "-n", NS, "logs", "edgemodel-simulator", "--timestamps")
    onset = next((_log_time(line) for line in logs.splitlines() if "Drift began" in line), None)
    REPORT.update(
        {
            "mlflow_install_seconds": round(t_install - t0, 1),
            "helm_install_to_ready_seconds": round(t_ready - t_install, 1),
            "first_version": first,
            "healed_version": healed,
            "drift_onset_to_healed_seconds": round(t_healed - onset, 1) if onset else None,
        }
    )
    yield REPORT
    path = os.environ.get("EDGEMODEL_E2E_REPORT")
    if path:
        pathlib.Path(path).write_text(json.dumps(REPORT, indent=2, sort_keys=True) + "\n")
    print("e2e figures:", json.dumps(REPORT, sort_keys=True))


def test_helm_install_then_the_loop_heals_with_a_promoted_version(loop: dict[str, Any]) -> None:
    assert loop["first_version"] is not None
    assert loop["healed_version"] > loop["first_version"]


def test_containers_run_non_root_on_a_read_only_root_file_system(
    real_cluster: node.RealCluster, loop: dict[str, Any]
) -> None:
    operator = _pods(real_cluster, OPERATOR_NS, OPERATOR_PODS)
    runtime = _runtime_pods(real_cluster)
    broker = _pods(real_cluster, NS, f"edgeml.dev/edgemodel={EM},app.kubernetes.io/component=broker")
    for pod, namespace in ((operator[0], OPERATOR_NS), (runtime[0], NS), (broker[0], NS)):
        name = pod.metadata.name
        uid = _kubectl(real_cluster, "-n", namespace, "exec", name, "--", "id", "-u").strip()
        assert uid != "0", f"{name} runs as root"
        touch = real_cluster.plane.kubectl(
            "-n", namespace, "exec", name, "--", "touch", "/probe", check=False
        )
        assert touch.returncode != 0 and "Read-only file system" in touch.stderr, f"{name}: {touch.stderr}"


def test_pods_resolve_service_names_and_nothing_outside_the_cluster(
    real_cluster: node.RealCluster, loop: dict[str, Any]
) -> None:
    pod = _runtime_pods(real_cluster)[0].metadata.name
    service_ip = _core(real_cluster).read_namespaced_service(f"{EM}-broker", NS).spec.cluster_ip
    code = "import socket,sys; print(socket.gethostbyname(sys.argv[1]))"
    resolved = _kubectl(real_cluster, "-n", NS, "exec", pod, "--", "python3", "-c", code, f"{EM}-broker")
    assert resolved.strip() == service_ip
    outside = real_cluster.plane.kubectl(
        "-n", NS, "exec", pod, "--", "python3", "-c", code, "pypi.org", check=False
    )
    assert outside.returncode != 0, "a name outside the cluster resolved: CoreDNS must not forward"


def _broker_access(cluster: node.RealCluster, user: str = "") -> tuple[str, int, str, str]:
    """Address and credentials of the managed broker: the runtime's user, or with ``user="device-"``
    the devices' (the broker's ACL lets only the devices' user publish readings)."""
    core = _core(cluster)
    service = core.read_namespaced_service(f"{EM}-broker", NS)
    secret = core.read_namespaced_secret(f"{EM}-broker-credentials", NS).data
    return (
        service.spec.cluster_ip,
        1883,
        base64.b64decode(secret[f"{user}username"]).decode(),
        base64.b64decode(secret[f"{user}password"]).decode(),
    )


def test_a_runtime_pod_killed_mid_stream_is_replaced_and_no_acknowledged_reading_is_lost(
    real_cluster: node.RealCluster, loop: dict[str, Any]
) -> None:
    host, port, username, password = _broker_access(real_cluster, "device-")
    reader = _broker_access(real_cluster)[2:]
    lags = int(_edgemodel(real_cluster)["spec"]["sensors"].get("lags", 0))
    device = "e2e-probe"
    topic = f"plant/line1/{device}/telemetry"
    predictions = f"edgemodel/{NS}/{EM}/predictions/{device}"
    victims = {p.metadata.uid: p.metadata.name for p in _runtime_pods(real_cluster) if _ready(p)}
    assert victims
    with probe.connected(
        host,
        port,
        username=username,
        password=password,
        device=device,
        topic=topic,
        predictions=predictions,
        reader=reader,
    ) as p:
        total, kill_at = 600, 150
        for i in range(total):
            p.publish(time.time(), 22.0 + 0.01 * (i % 50), 50.0)
            if i == kill_at:
                # Killed, not stopped: no grace period, so the runtime gets no chance to finish.
                # It acknowledges a reading only once the broker has its prediction, so the
                # readings it had not finished stay in its MQTT session for the replacement.
                for victim in victims.values():
                    _kubectl(
                        real_cluster, "-n", NS, "delete", "pod", victim, "--grace-period=0", "--force",
                        "--wait=false",
                    )  # fmt: skip
            time.sleep(0.025)  # 40 readings/s, for 15 s
        processes.wait_until(lambda: p.unacknowledged() == 0, timeout=60, what="PUBACKs for every reading")
        acked = p.acknowledged()
        assert len(acked) == total

        def replacements() -> list[str]:
            return [
                x.metadata.name
                for x in _runtime_pods(real_cluster)
                if _ready(x) and x.metadata.uid not in victims
            ]

        processes.wait_until(
            lambda: bool(replacements()), timeout=300, what="a replacement runtime Pod Ready"
        )
        # The replacement keeps the victim's name, and so its MQTT session (a StatefulSet).
        assert set(replacements()) <= set(victims.values())
        # Every acknowledged reading is predicted, but for two warm-ups, in which a reading is
        # history and not yet a prediction: the probe is a new device, so its first `lags`
        # readings have no lag features; and the replacement starts with no history, so it
        # rebuilds them from the first `lags` readings it gets (one more if the victim died
        # between publishing a prediction and acknowledging its reading).
        processes.wait_until(
            lambda: acked[-1] in p.predictions(), timeout=120, what="the last reading predicted"
        )
        missing = [i for i, ts in enumerate(acked) if ts not in p.predictions()]
    REPORT["runtime_kill_missing_predictions"] = len(missing)
    after_kill = [i for i in missing if i >= lags]  # the first `lags` are the new device's warm-up
    assert len(after_kill) <= lags + 1, f"{len(missing)} of {total} acknowledged readings not predicted"
    if after_kill:
        assert after_kill == list(range(after_kill[0], after_kill[0] + len(after_kill))), (
            f"the unpredicted readings {after_kill} are not the replacement's warm-up"
        )
        assert after_kill[0] > kill_at - 50, f"readings from {after_kill[0]} on lost, long before the kill"


def test_the_operator_pod_deleted_a_new_one_takes_over_and_starts_no_duplicate_job(
    real_cluster: node.RealCluster, loop: dict[str, Any]
) -> None:
    batch = kubernetes.client.BatchV1Api(real_cluster.plane.api_client())
    coordination = kubernetes.client.CoordinationV1Api(real_cluster.plane.api_client())
    jobs_before = sorted(j.metadata.name for j in batch.list_namespaced_job(NS).items)
    (lease,) = coordination.list_namespaced_lease(OPERATOR_NS).items
    (old,) = [
        p.metadata.name for p in _pods(real_cluster, OPERATOR_NS, "app.kubernetes.io/component=operator")
    ]
    assert lease.spec.holder_identity == old
    _kubectl(real_cluster, "-n", OPERATOR_NS, "delete", "pod", old, "--grace-period=0", "--force")

    def new_leader() -> bool:
        holder = coordination.read_namespaced_lease(lease.metadata.name, OPERATOR_NS).spec.holder_identity
        return bool(holder) and holder != old

    t0 = time.time()
    processes.wait_until(new_leader, timeout=180, interval=1, what="a new operator holding the Lease")
    REPORT["operator_takeover_seconds"] = round(time.time() - t0, 1)
    # The new leader acts: it observes a spec change that touches no child.
    cooldown = int(_edgemodel(real_cluster)["spec"]["retraining"]["cooldownSeconds"]) + 1
    _kubectl(
        real_cluster, "-n", NS, "patch", "edgemodel", EM, "--type=merge",
        "-p", json.dumps({"spec": {"retraining": {"cooldownSeconds": cooldown}}}),
    )  # fmt: skip

    def observed() -> bool:
        em = _edgemodel(real_cluster)
        return bool(em["status"].get("observedGeneration") == em["metadata"]["generation"])

    processes.wait_until(observed, timeout=120, interval=1, what="the new leader observing the spec change")
    assert _condition(_edgemodel(real_cluster), "Ready") == "True"
    jobs_after = sorted(j.metadata.name for j in batch.list_namespaced_job(NS).items)
    assert jobs_after == jobs_before


def test_the_hpa_scales_inference_up_on_real_cpu_and_back_down(
    real_cluster: node.RealCluster, loop: dict[str, Any]
) -> None:
    autoscaling = kubernetes.client.AutoscalingV2Api(real_cluster.plane.api_client())
    hpa_name = f"{EM}-inference"

    def desired() -> int:
        status = autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa_name, NS).status
        return int(status.desired_replicas or 0)

    processes.wait_until(lambda: desired() == 1, timeout=120, what="the HPA at one replica before the load")
    host, port, username, password = _broker_access(real_cluster, "device-")
    stop = threading.Event()

    def load() -> None:  # about 2,000 readings/s over 40 devices, at QoS 0, for at most 4 minutes
        from edgemodel_runtime import mqtt  # noqa: PLC0415

        client = mqtt.client(f"e2e-load-{time.monotonic_ns()}", username=username, password=password)
        client.connect(host, port)
        client.loop_start()
        deadline = time.monotonic() + 240
        while not stop.is_set() and time.monotonic() < deadline:
            for d in range(40):
                body = json.dumps(
                    {"device_id": f"load-{d}", "ts": time.time(), "temperature": 22.0, "humidity": 50.0}
                )
                client.publish(f"plant/line1/load-{d}/telemetry", body, qos=0)
            time.sleep(0.02)
        client.disconnect()
        client.loop_stop()

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        t0 = time.time()
        processes.wait_until(
            lambda: desired() >= 2, timeout=240, interval=2, what="the HPA scaling up on CPU"
        )
        REPORT["hpa_scale_up_seconds"] = round(time.time() - t0, 1)
        processes.wait_until(
            lambda: sum(_ready(p) for p in _runtime_pods(real_cluster)) >= 2,
            timeout=180,
            interval=2,
            what="a second runtime Pod Ready",
        )
    finally:
        stop.set()
        loader.join(30)
    t1 = time.time()
    processes.wait_until(lambda: desired() == 1, timeout=300, interval=2, what="the HPA scaling back down")
    processes.wait_until(
        lambda: len(_runtime_pods(real_cluster)) == 1, timeout=180, interval=2, what="one runtime Pod left"
    )
    REPORT["hpa_scale_down_seconds"] = round(time.time() - t1, 1)


def test_figures_image_sizes_and_the_runtime_memory(
    real_cluster: node.RealCluster, loop: dict[str, Any]
) -> None:
    REPORT["image_archive_bytes"] = {name: path.stat().st_size for name, path in nodetools.archives().items()}
    pod = next(p for p in _runtime_pods(real_cluster) if _ready(p)).metadata.name
    summary = json.loads(
        _kubectl(real_cluster, "get", "--raw", f"/api/v1/nodes/{real_cluster.node.name}/proxy/stats/summary")
    )
    (stats,) = [s for s in summary["pods"] if s["podRef"]["name"] == pod]
    (container,) = [c for c in stats["containers"] if c["name"] == "runtime"]
    usage = json.loads(
        _kubectl(real_cluster, "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods/{pod}")
    )
    REPORT["runtime_memory"] = {
        "kubelet_rss_bytes": container["memory"].get("rssBytes"),
        "kubelet_working_set_bytes": container["memory"].get("workingSetBytes"),
        "metrics_server_usage": usage["containers"][0]["usage"]["memory"],
    }
    assert container["memory"]["workingSetBytes"] > 0


def test_uninstall_in_the_documented_order_leaves_nothing_behind(
    real_cluster: node.RealCluster, steps: Steps, loop: dict[str, Any]
) -> None:
    # The documented order (docs/install.md): EdgeModels first, while the operator still runs
    # to finish them, then the release, then its namespace. (The other way round leaves the
    # EdgeModels' finalizers with no one to remove them.)
    _kubectl(real_cluster, "-n", NS, "delete", "pod", "edgemodel-simulator", "--ignore-not-found")
    _kubectl(real_cluster, "-n", NS, "delete", "edgemodel", EM, "--wait=true", "--timeout=180s")
    helm = steps.env["HELM"]
    subprocess.run(
        [helm, "uninstall", "edgemodel", "-n", OPERATOR_NS, "--wait", "--timeout", "180s"],
        env=steps.env,
        check=True,
        capture_output=True,
        timeout=240,
    )
    # The release namespace holds what the operator made for itself (its leader Lease).
    _kubectl(real_cluster, "delete", "namespace", OPERATOR_NS, "--wait=true", "--timeout=180s")
    selector = "app.kubernetes.io/part-of=edgemodel"
    namespaced = "all,configmaps,secrets,serviceaccounts,roles,rolebindings,jobs,cronjobs,hpa,networkpolicies"
    cluster_wide = (
        "clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings"
    )

    def leftovers() -> list[str]:
        found = _kubectl(real_cluster, "get", namespaced, "-A", "-l", selector, "-o", "name").splitlines()
        found += [
            line
            for line in _kubectl(real_cluster, "get", cluster_wide, "-o", "name").splitlines()
            # The harness's own add-ons (CoreDNS, metrics-server) are named edgemodel-harness:*.
            if "edgemodel" in line and "edgemodel-harness:" not in line
        ]
        namespaces = _kubectl(real_cluster, "get", "namespaces", "-o", "name").splitlines()
        found += [line for line in namespaces if line == f"namespace/{OPERATOR_NS}"]
        # examples/mlflow.yaml is the user's own, not the chart's or the operator's.
        return [line for line in found if line.strip() and "mlflow" not in line]

    deadline = time.monotonic() + 180
    while leftovers() and time.monotonic() < deadline:
        time.sleep(2)
    assert leftovers() == [], "left behind after the EdgeModel and the release were deleted"
    pods = [p.metadata.name for p in _pods(real_cluster, NS, "") if not p.metadata.name.startswith("mlflow")]
    assert pods == []
    # The CRD stays (Helm never deletes what crds/ installed); docs/install.md says how to remove it.
    assert REPO.joinpath("docs", "install.md").read_text().count("kubectl delete crd edgemodels.edgeml.dev")
