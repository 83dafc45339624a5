"""Operator behaviour on the real control plane, under its own RBAC rules.

Job Pods here finish with what a trainer container writes (exit code and result in the
termination message), recorded on the Pod as the kubelet would; the real trainer's own
behaviour is tested in test_trainer_* and end to end in test_operator_lifecycle.
"""

from __future__ import annotations

import time

import kubernetes
import pytest

from edgemodel import api, contracts
from edgemodel_dev.harness import processes
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster


def _spec(**over: dict) -> dict:
    spec = edgemodels.spec(scaling={"minReplicas": 1, "maxReplicas": 3}, retraining={"cooldownSeconds": 300})
    for key, value in over.items():
        spec[key] = {**spec.get(key, {}), **value}
    return spec


_serving = edgemodels.serving
_result = edgemodels.training_result


def _job_names(client, namespace: str, name: str) -> list[str]:
    return [j.metadata.name for j in edgemodels.jobs(client, namespace, name)]


def _after_bootstrap(client, namespace: str, name: str) -> list[str]:
    return [n for n in _job_names(client, namespace, name) if "-bootstrap-" not in n]


def test_hand_edits_are_put_right_spec_changes_roll_out_and_delete_cleans_up(
    api_client, namespace, operators
):
    operators()
    edgemodels.create(api_client, namespace, "em", _spec())
    apps = kubernetes.client.AppsV1Api(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    processes.wait_until(
        lambda: apps.read_namespaced_stateful_set("em-inference", namespace),
        timeout=30,
        what="the inference StatefulSet",
    )
    # An external broker: no managed broker objects.
    assert not apps.list_namespaced_deployment(
        namespace, label_selector="app.kubernetes.io/component=broker"
    ).items

    # Someone edits the StatefulSet by hand: the next reconcile restores it.
    apps.patch_namespaced_stateful_set(
        "em-inference",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "runtime", "image": "evil.example/runtime:hacked"}]}
                }
            }
        },
    )

    def image() -> str:
        return (
            apps.read_namespaced_stateful_set("em-inference", namespace)
            .spec.template.spec.containers[0]
            .image
        )

    processes.wait_until(lambda: image() == "localhost/edgemodel:test", timeout=30, what="the image restored")
    core.patch_namespaced_config_map("em-runtime-config", namespace, {"data": {"runtime.json": "{}"}})
    processes.wait_until(
        lambda: (
            "plant/+/telemetry"
            in core.read_namespaced_config_map("em-runtime-config", namespace).data["runtime.json"]
        ),
        timeout=30,
        what="the runtime ConfigMap restored",
    )

    # A spec change rolls out: new topics reach the ConfigMap and roll the Pods (new template hash).
    before = apps.read_namespaced_stateful_set("em-inference", namespace).spec.template.metadata.annotations
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "em",
        {"spec": {"sensors": {"topics": ["plant/+/telemetry", "annex/+/telemetry"]}}},
    )
    processes.wait_until(
        lambda: (
            "annex/+/telemetry"
            in core.read_namespaced_config_map("em-runtime-config", namespace).data["runtime.json"]
        ),
        timeout=30,
        what="the new topics in the runtime config",
    )

    # The same pass applies the StatefulSet after the ConfigMap: wait for it, do not race it.
    def config_hash() -> str:
        annotations = apps.read_namespaced_stateful_set(
            "em-inference", namespace
        ).spec.template.metadata.annotations
        return str(annotations["edgeml.dev/config-hash"])

    processes.wait_until(
        lambda: config_hash() != before["edgeml.dev/config-hash"],
        timeout=30,
        what="a new config hash in the Pod template (the Pods roll)",
    )
    st = edgemodels.status(api_client, namespace, "em")
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, "em").observed_generation == 2,
        timeout=30,
        what="observedGeneration 2",
    )

    # Switching to a managed broker creates it; switching back deletes it.
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "em",
        {"spec": {"broker": {"host": None, "port": None}}},
    )
    processes.wait_until(
        lambda: apps.read_namespaced_deployment("em-broker", namespace), timeout=30, what="the managed broker"
    )
    assert core.read_namespaced_secret("em-broker-credentials", namespace).data["password"]
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em", {"spec": {"broker": {"host": "mqtt.example"}}}
    )

    def broker_gone() -> bool:
        return not apps.list_namespaced_deployment(
            namespace, label_selector="app.kubernetes.io/component=broker"
        ).items

    processes.wait_until(broker_gone, timeout=30, what="the managed broker deleted")
    assert st is not None

    # Deleting the EdgeModel deletes everything it owns (garbage collection by ownerReference).
    kubernetes.client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "em"
    )

    def all_gone() -> bool:
        sel = "edgeml.dev/edgemodel=em"
        return not (
            apps.list_namespaced_deployment(namespace, label_selector=sel).items
            or core.list_namespaced_config_map(namespace, label_selector=sel).items
            or core.list_namespaced_service(namespace, label_selector=sel).items
            or kubernetes.client.AutoscalingV2Api(api_client)
            .list_namespaced_horizontal_pod_autoscaler(namespace, label_selector=sel)
            .items
        )

    processes.wait_until(all_gone, timeout=60, what="every child deleted")


def test_two_replicas_the_worst_with_a_full_window_decides(api_client, namespace, operators):
    operators()
    edgemodels.create(api_client, namespace, "em", _spec(scaling={"minReplicas": 2, "maxReplicas": 2}))
    processes.wait_until(
        lambda: len(edgemodels.inference_pods(api_client, namespace, "em")) == 2,
        timeout=60,
        what="two inference Pods",
    )
    a, b = edgemodels.inference_pods(api_client, namespace, "em")
    edgemodels.finish_job(
        api_client, namespace, "em-bootstrap-1", _result("Promoted", "1", champion_version="1"), 0
    )
    edgemodels.wait_condition(api_client, namespace, "em", "Retraining", "False")
    # Replica a drifts but has too few outcomes; replica b is healthy with a full window.
    edgemodels.report(api_client, namespace, "em", a, rmse=3.0, samples=20, detected=True, version="1")
    edgemodels.report(api_client, namespace, "em", b, rmse=0.4, samples=100, detected=False, version="1")
    st = edgemodels.wait_condition(api_client, namespace, "em", "Drifted", "False")
    assert (st.drift.replica, st.drift.rmse) == (b, pytest.approx(0.4))
    assert _after_bootstrap(api_client, namespace, "em") == []
    # Now replica a has a full window above the threshold: it is the worst, and drift is detected.
    edgemodels.report(api_client, namespace, "em", a, rmse=2.5, samples=100, detected=True, version="1")
    st = edgemodels.wait_condition(api_client, namespace, "em", "Drifted", "True")
    assert (st.drift.replica, st.drift.rmse, st.drift.detected) == (a, pytest.approx(2.5), True)
    processes.wait_until(
        lambda: _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"],
        timeout=15,
        what="one retraining Job",
    )
    # A Pod that is gone loses its entry.
    edgemodels.report(
        api_client, namespace, "em", "em-inference-gone-0", rmse=9.0, samples=100, detected=True, version="1"
    )
    processes.wait_until(
        lambda: "em-inference-gone-0" not in edgemodels.status(api_client, namespace, "em").replica_drift,
        timeout=30,
        what="the gone replica's entry removed",
    )


def test_restart_mid_flight_starts_no_duplicate_job_and_loses_no_state(api_client, namespace, operators):
    first = operators("operator-a")
    edgemodels.create(api_client, namespace, "em", _spec())
    pod = _serving(api_client, namespace, "em")
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.0, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"],
        timeout=60,
        what="the retraining Job",
    )
    first.kill()  # a crash: no cleanup, the Lease is not released

    second = operators("operator-b")
    # Drift keeps being reported while the Job runs; the new replica adopts the running Job.
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.2, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: second.metrics_text().count("edgemodel_operator_leader 1.0") == 1,
        timeout=90,  # a new standby waits a whole lease duration on its own clock first
        what="the new replica to lead",
    )
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, "em").drift.rmse == pytest.approx(2.2),
        timeout=60,
        what="the new replica to reconcile",
    )
    assert _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"]
    st = edgemodels.status(api_client, namespace, "em")
    assert (st.retraining.count, st.retraining.last_job) == (2, "em-retrain-2")

    edgemodels.finish_job(
        api_client, namespace, "em-retrain-2", _result("Promoted", "2", champion_rmse=2.0), 0
    )
    st = edgemodels.wait_condition(api_client, namespace, "em", "Retraining", "False")
    assert [h.version for h in st.model.history] == ["1", "2"]
    time.sleep(3)
    assert [h.version for h in edgemodels.status(api_client, namespace, "em").model.history] == ["1", "2"]
    assert _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"]


def test_two_operator_replicas_never_act_twice(api_client, namespace, operators):
    a = operators("operator-a")
    b = operators("operator-b")
    leaders = [op for op in (a, b) if "edgemodel_operator_leader 1.0" in op.metrics_text()]
    processes.wait_until(
        lambda: sum("edgemodel_operator_leader 1.0" in op.metrics_text() for op in (a, b)) == 1,
        timeout=30,
        what="exactly one leader",
    )
    edgemodels.create(api_client, namespace, "em", _spec())
    pod = _serving(api_client, namespace, "em")
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.0, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"],
        timeout=15,
        what="the retraining Job",
    )
    time.sleep(3)
    assert _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"]
    started = [
        float(line.split()[-1])
        for op in (a, b)
        for line in op.metrics_text().splitlines()
        if line.startswith('edgemodel_operator_jobs_started_total{kind="retrain"}')
    ]
    assert sorted(started) in ([1.0], [0.0, 1.0]), started
    reconciled = [
        any(
            line.startswith('edgemodel_operator_reconciles_total{result="ok"}')
            for line in op.metrics_text().splitlines()
        )
        for op in (a, b)
    ]
    assert reconciled.count(True) == 1, "only the leader reconciles"
    assert leaders is not None


def test_rejections_degrade_until_the_retry_annotation(api_client, namespace, operators):
    operators()
    edgemodels.create(
        api_client, namespace, "em", _spec(retraining={"cooldownSeconds": 0, "maxConsecutiveRejections": 2})
    )
    pod = _serving(api_client, namespace, "em")
    for n in (1, 2):
        edgemodels.report(
            api_client, namespace, "em", pod, rmse=2.0 + n / 10, samples=100, detected=True, version="1"
        )
        processes.wait_until(
            lambda n=n: f"em-retrain-{n + 1}" in _after_bootstrap(api_client, namespace, "em"),
            timeout=60,
            what=f"retraining Job {n}",
        )
        edgemodels.finish_job(
            api_client,
            namespace,
            f"em-retrain-{n + 1}",
            _result("Rejected", str(n + 1), reason="BelowPromotionMargin: no better", champion_version="1"),
            int(contracts.ExitCode.REJECTED),
        )
        processes.wait_until(
            lambda n=n: edgemodels.status(api_client, namespace, "em").retraining.consecutive_rejections == n,
            timeout=60,
            what=f"{n} rejections recorded",
        )
    st = edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "True")
    assert edgemodels.condition(st, "Degraded").reason == "TooManyRejections"
    assert [h.outcome for h in st.model.history] == ["Promoted", "Rejected", "Rejected"]
    # Drift persists, but no Job starts while Degraded.
    edgemodels.report(api_client, namespace, "em", pod, rmse=2.9, samples=100, detected=True, version="1")
    time.sleep(3)
    assert _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2", "em-retrain-3"]
    # A person asks for another try.
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        "em",
        {"metadata": {"annotations": {"edgeml.dev/retry": "2026-11-23T10:00"}}},
    )
    processes.wait_until(
        lambda: "em-retrain-4" in _after_bootstrap(api_client, namespace, "em"),
        timeout=30,
        what="a retry Job",
    )
    st = edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "False")


def test_a_promoted_version_worse_live_is_rolled_back(api_client, namespace, operators):
    operators()
    edgemodels.create(api_client, namespace, "em", _spec())
    pod = _serving(api_client, namespace, "em")
    edgemodels.report(api_client, namespace, "em", pod, rmse=1.6, samples=100, detected=True, version="1")
    processes.wait_until(
        lambda: _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2"],
        timeout=15,
        what="the retraining Job",
    )
    edgemodels.finish_job(
        api_client,
        namespace,
        "em-retrain-2",
        _result("Promoted", "2", champion_rmse=1.5, holdout_rmse=0.5, champion_version="2"),
        0,
    )
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, "em").model.history,
        timeout=30,
        what="the promotion recorded",
    )
    # Version 2 serves, and does clearly worse live than version 1 did on the holdout.
    edgemodels.report(api_client, namespace, "em", pod, rmse=3.0, samples=100, detected=True, version="2")
    processes.wait_until(
        lambda: "em-rollback-2" in _after_bootstrap(api_client, namespace, "em"),
        timeout=30,
        what="a rollback Job",
    )
    job = kubernetes.client.BatchV1Api(api_client).read_namespaced_job("em-rollback-2", namespace)
    args = job.spec.template.spec.containers[0].args
    assert args[0] == "rollback" and args[args.index("--to-version") + 1] == "1"
    edgemodels.finish_job(
        api_client,
        namespace,
        "em-rollback-2",
        _result("RolledBack", "2", reason="RolledBack", champion_version="1"),
        0,
    )
    processes.wait_until(
        lambda: (
            [h.outcome for h in edgemodels.status(api_client, namespace, "em").model.history]
            == ["Promoted", "Promoted", "RolledBack"]
        ),
        timeout=30,
        what="the rollback recorded",
    )
    edgemodels.report(api_client, namespace, "em", pod, rmse=0.5, samples=100, detected=False, version="1")
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, "em").model.version == "1",
        timeout=30,
        what="version 1 serving again",
    )
    time.sleep(2)
    assert _after_bootstrap(api_client, namespace, "em") == ["em-retrain-2", "em-rollback-2"]


def test_fifty_edgemodels_all_become_ready(api_client, namespace, operators, record_property):
    operators()
    names = [f"em-{i:02d}" for i in range(50)]
    started = time.monotonic()
    for name in names:
        edgemodels.create(api_client, namespace, name, _spec())
    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    reported: set[str] = set()

    def all_ready() -> bool:
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=inference"
        ).items
        for p in pods:
            owner = p.metadata.labels["edgeml.dev/edgemodel"]
            if owner not in reported and p.status.phase == "Running":
                edgemodels.report(
                    api_client,
                    namespace,
                    owner,
                    p.metadata.name,
                    rmse=0.2,
                    samples=100,
                    detected=False,
                    version="1",
                )
                reported.add(owner)
        items = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)["items"]
        ready = [
            i
            for i in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in (i.get("status") or {}).get("conditions") or []
            )
        ]
        return len(ready) == len(names)

    processes.wait_until(all_ready, timeout=240, interval=1.0, what="50 EdgeModels Ready")
    elapsed = time.monotonic() - started
    record_property("fifty_ready_seconds", round(elapsed, 1))
    print(f"50 EdgeModels Ready in {elapsed:.1f}s")
