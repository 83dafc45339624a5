# ruff: noqa: PLC0415 - heavy or optional dependencies are imported where they are used
"""Benchmark 4: the operator at scale on the harness control plane (kwok nodes).

For each size ``n``: a fresh control plane (etcd, kube-apiserver, controller-manager,
scheduler, kwok), the CRD, and the real ``edgemodel-operator`` process confined to one
namespace (``EDGEMODEL_NAMESPACE``; ``EDGEMODEL_RESYNC_SECONDS=60``, the default). ``n``
EdgeModels are created; each becomes Ready once a version serves: as soon as its inference
Pod exists, the benchmark writes a replica report with ``modelVersion: "1"`` for it, exactly
as a runtime Pod does (merge patch on the status subresource). The EdgeModels use an
external broker (one plant broker), so each has one StatefulSet, one Pod, and the bootstrap
Job the operator starts before the first report arrives.

Measured: time until all are Ready; the operator's reconcile latency (its
``edgemodel_operator_reconcile_duration_seconds`` histogram); its RSS and CPU from
``/proc``; its API requests per EdgeModel, both as the reconciler counts them
(``edgemodel_operator_api_requests_total``) and as the API server counts them (API
Priority and Fairness dispatches for the ``service-accounts`` flow schema: the operator is
the only ServiceAccount client; every other component is ``system:masters``), and by verb
and resource from the API server's audit log of the operator's ServiceAccount; the
requests over a quiet minute once everything is Ready; and two minutes of live runtimes
(:class:`LiveReports`): every replica reporting at the runtime's cadence with the runtime's
own report policy, first with no drift-state change, then with a tenth of them turning
drifted. Baselines: the same control plane
making ``n`` plain Deployments available with no operator (the cluster's own floor), and
the per-EdgeModel cost at the smallest size (the scaling ratio).

I/O: processes and the Kubernetes API.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import math
import os
import pathlib
import shutil
import tempfile
import threading
import time
import urllib.request
from typing import Any, cast

from bench import common

__all__ = ["install_crd", "quiet_report", "run"]

NAMESPACE = "bench-scale"
BASELINE_NAMESPACE = "bench-baseline"
LEASE_SECONDS = int(os.environ.get("BENCH_OPERATOR_LEASE_SECONDS", "60"))
"""The operator's leader Lease duration. At the default 15 s, a burst of 100 creates made the
operator miss its renewals (they share the thread pool with the reconciles), lose the Lease,
and drop the requests that came meanwhile; see BENCHMARKS.md. 60 s keeps it leading."""
STALE_REPORT_SECONDS = 1800
"""Longer than any rollout here, so the Reporter's single report never goes stale before Ready."""
SERVICE_CIDR = "10.0.0.0/16"
"""Service range of the benchmark's control planes (the harness' default, a /24, fits 254 Services)."""
MLFLOW_URI = "http://127.0.0.1:9"  # never called: the operator renders it into the Pods' config only


def quiet_report() -> Any:
    """A replica report as a runtime serving version 1 without drift sends it, stamped now."""
    from edgemodel import api

    return api.ReplicaDriftEntry(
        rmse=0.3,
        samples=100,
        detected=False,
        report_time=datetime.datetime.now(datetime.UTC),
        model_version="1",
    )


def install_crd(plane: Any) -> None:
    """Apply the repo's CRD to ``plane`` server-side and wait until the API server has established it."""
    import kubernetes

    from edgemodel_dev.harness import processes

    plane.kubectl("apply", "--server-side", "-f", str(common.RESULTS.parents[1] / "crds" / "edgemodel.yaml"))
    ext = kubernetes.client.ApiextensionsV1Api(plane.api_client())
    processes.wait_until(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition("edgemodels.edgeml.dev").status.conditions or []
        ),
        timeout=30,
        what="the CRD",
    )


def spec(i: int) -> dict[str, Any]:
    return {
        "sensors": {
            "topics": [f"plant/line{i}/+/telemetry"],
            "features": ["temperature", "humidity"],
            "target": "temperature",
        },
        "drift": {"threshold": 1.5, "window": 100},
        "scaling": {"minReplicas": 1, "maxReplicas": 2},
        "retraining": {"cooldownSeconds": 300},
        "model": {"algorithm": "ridge"},
        "broker": {"host": "broker.plant.example", "port": 1883},
    }


OPERATOR_USER = "system:serviceaccount:edgemodel-system:edgemodel-operator"
"""The operator's identity on the harness (``OperatorProcess``' ServiceAccount)."""
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: None
"""
"""The API server writes one audit line per request the operator sends, when it arrives."""


def _audited_plane(workdir: pathlib.Path, nodes: int) -> Any:
    """A harness control plane whose API server writes an audit log of the operator's requests.

    The log is the API server's own account of every request the operator's ServiceAccount
    made (kopf's watches and annotation patches included), by verb and resource.
    """
    from edgemodel_dev.harness import controlplane

    class AuditedPlane(controlplane.ControlPlane):
        audit_log = workdir / "audit.log"

        def _argv(self, argv: list[str]) -> list[str]:
            if argv and argv[0].endswith("kube-apiserver"):
                policy = workdir / "audit-policy.yaml"
                policy.parent.mkdir(parents=True, exist_ok=True)
                policy.write_text(AUDIT_POLICY)
                argv = [
                    *argv,
                    f"--audit-policy-file={policy}",
                    f"--audit-log-path={self.audit_log}",
                    "--audit-log-format=json",
                    "--audit-log-maxsize=0",
                ]
            return cast(list[str], super()._argv(argv))

    return AuditedPlane(workdir, nodes=nodes)


def _audit_offset(plane: Any) -> int:
    path = getattr(plane, "audit_log", None)
    return path.stat().st_size if path is not None and path.exists() else 0


def _audit_breakdown(plane: Any, start: int, end: int) -> dict[str, int]:
    """Requests the operator sent between two audit-log offsets, by ``verb resource[/subresource]``."""
    import json

    path = getattr(plane, "audit_log", None)
    counts: dict[str, int] = {}
    if path is None or not path.exists():
        return counts
    with path.open("rb") as f:
        f.seek(start)
        blob = f.read(max(0, end - start))
    for line in blob.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        ref = ev.get("objectRef") or {}
        resource = str(ref.get("resource") or ev.get("requestURI", "?").split("?")[0])
        if ref.get("subresource"):
            resource += "/" + str(ref["subresource"])
        key = f"{ev.get('verb')} {resource}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _apiserver_metrics(plane: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    ctx = plane._ssl_context()
    with urllib.request.urlopen(f"{plane.server}/metrics", timeout=30, context=ctx) as resp:
        return common.parse_prometheus(resp.read().decode())


def _sa_requests(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == "apiserver_flowcontrol_dispatched_requests_total"
        and dict(labels).get("flow_schema") == "service-accounts"
    )


def _pid(plane: Any, name: str) -> int | None:
    for proc in plane._procs:
        if proc.name == name:
            return cast(int, proc.pid)
    return None


def _op_pid(op: Any) -> int:
    return cast(int, op._process.pid)


def _settle(op: Any, *, idle: float, cap: float) -> float | None:
    """Seconds until the operator ran no reconcile for ``idle`` seconds; None if not within ``cap``."""
    start = time.monotonic()
    last = common.sample_sum(
        common.parse_prometheus(op.metrics_text()), "edgemodel_operator_reconciles_total"
    )
    quiet_since = start
    while time.monotonic() - start < cap:
        time.sleep(0.5)
        now = common.sample_sum(
            common.parse_prometheus(op.metrics_text()), "edgemodel_operator_reconciles_total"
        )
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= idle:
            return quiet_since - start
    return None


class Snapshot:
    """Counters of the operator, the API server and the processes at one moment."""

    def __init__(self, plane: Any, op: Any | None) -> None:
        self.t = time.monotonic()
        self.api = _apiserver_metrics(plane)
        self.plane = plane
        self.audit = _audit_offset(plane)
        self.op = common.parse_prometheus(op.metrics_text()) if op is not None else {}
        self.cpu = {
            name: common.proc_cpu_seconds(pid)
            for name in ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
            if (pid := _pid(plane, name)) is not None
        }
        if op is not None:
            self.cpu["edgemodel-operator"] = common.proc_cpu_seconds(_op_pid(op))

    def delta(self, before: Snapshot) -> dict[str, Any]:
        s = self.op
        b = before.op
        out: dict[str, Any] = {
            "seconds": self.t - before.t,
            "sa_requests": _sa_requests(self.api) - _sa_requests(before.api),
            "all_apiserver_requests": common.sample_sum(self.api, "apiserver_request_total")
            - common.sample_sum(before.api, "apiserver_request_total"),
            "cpu_seconds": {k: v - before.cpu.get(k, 0.0) for k, v in self.cpu.items()},
        }
        if s:
            out["operator_requests_by_kind"] = _audit_breakdown(self.plane, before.audit, self.audit)
            out["audited_requests"] = sum(out["operator_requests_by_kind"].values())
        if s:
            out["reconciler_api_requests"] = common.sample_sum(
                s, "edgemodel_operator_api_requests_total"
            ) - common.sample_sum(b, "edgemodel_operator_api_requests_total")
            out["reconciles"] = common.sample_sum(
                s, "edgemodel_operator_reconciles_total"
            ) - common.sample_sum(b, "edgemodel_operator_reconciles_total")
            out["reconcile_errors"] = common.sample_sum(
                s, "edgemodel_operator_reconcile_errors_total"
            ) - common.sample_sum(b, "edgemodel_operator_reconcile_errors_total")
            name = "edgemodel_operator_reconcile_duration_seconds"
            cur, prev = common.buckets(s, name), common.buckets(b, name)
            out["reconcile_p50_s"] = common.histogram_quantile(0.5, cur, prev)
            out["reconcile_p99_s"] = common.histogram_quantile(0.99, cur, prev)
            count = common.sample_sum(s, f"{name}_count") - common.sample_sum(b, f"{name}_count")
            total = common.sample_sum(s, f"{name}_sum") - common.sample_sum(b, f"{name}_sum")
            out["reconcile_mean_s"] = total / count if count else math.nan
        return out


def _ready(item: dict[str, Any]) -> bool:
    conds = (item.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _create_all(client: Any, namespace: str, n: int, workers: int = 4) -> float:
    import kubernetes

    from edgemodel import api

    objects = kubernetes.client.CustomObjectsApi(client)

    def create(i: int) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": f"em-{i:04d}"},
            "spec": spec(i),
        }
        objects.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body)

    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, range(n)))
    return time.monotonic() - t


class Reporter:
    """Plays the runtime Pods: once an inference Pod exists, report ``modelVersion: "1"`` for it."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.reported: set[str] = set()
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="reporter")

    def _report(self, edgemodel: str, pod: str) -> None:
        import kubernetes

        from edgemodel import api, contracts

        entry = quiet_report()
        kubernetes.client.CustomObjectsApi(self.client).patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            edgemodel,
            contracts.replica_drift_patch(pod, entry),
        )

    def _run(self) -> None:
        import kubernetes

        core = kubernetes.client.CoreV1Api(self.client)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            while not self._stop.is_set():
                try:
                    pods = core.list_namespaced_pod(
                        self.namespace, label_selector="app.kubernetes.io/component=inference"
                    ).items
                except Exception:
                    self.errors += 1
                    self._stop.wait(1)
                    continue
                todo = []
                for p in pods:
                    owner = (p.metadata.labels or {}).get("edgeml.dev/edgemodel")
                    if (
                        owner
                        and p.metadata.name not in self.reported
                        and p.metadata.deletion_timestamp is None
                    ):
                        todo.append((owner, p.metadata.name))
                for (_, pod), fut in [(t, pool.submit(self._report, *t)) for t in todo]:
                    try:
                        fut.result()
                        self.reported.add(pod)
                    except Exception:
                        self.errors += 1
                self._stop.wait(0.5)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


class LiveReports:
    """Plays every inference Pod's runtime after the rollout, at the runtime's real cadence.

    Each Pod gets the runtime's own :class:`edgemodel_runtime.reporting.ReportPolicy` and
    :class:`~edgemodel_runtime.reporting.DriftReport`, and sends what the runtime's
    ``KubernetesSink`` sends (``contracts.replica_drift_patch``, a merge patch of the status
    subresource) whenever that policy says a report is due. The rolling RMSE moves a little
    between reports, as a live runtime's does; ``flip`` EdgeModels' replicas turn
    ``detected`` on once, which is a drift-state change the operator must act on.
    """

    def __init__(self, client: Any, namespace: str, *, interval: float, flip: set[str]) -> None:
        import kubernetes

        from edgemodel_runtime import reporting

        self.client = client
        self.namespace = namespace
        self.interval = interval
        self.flip = flip
        self.sent = 0
        self.errors = 0
        self.changes = 0
        core = kubernetes.client.CoreV1Api(client)
        pods = core.list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/component=inference"
        ).items
        self.pods = {
            p.metadata.name: str((p.metadata.labels or {}).get("edgeml.dev/edgemodel"))
            for p in pods
            if p.metadata.deletion_timestamp is None
        }
        self.policies = {pod: reporting.ReportPolicy(interval=interval) for pod in self.pods}
        self._reporting = reporting
        self._rollout_key = reporting.DriftReport(samples=100, model_version="1").key()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-reports")
        self._tick = 0

    def _state(self, pod: str, n: int) -> Any:
        jitter = ((hash((pod, n)) % 1000) / 1000 - 0.5) * 0.1
        detected = self.pods[pod] in self.flip
        return self._reporting.DriftReport(
            rmse=round((2.0 if detected else 0.3) + jitter, 6),
            samples=100,
            detected=detected,
            reason="ThresholdExceeded" if detected else None,
            model_version="1",
        )

    def _send(self, pod: str, state: Any) -> None:
        import kubernetes

        from edgemodel import api, contracts

        entry = state.to_entry(datetime.datetime.now(datetime.UTC))
        kubernetes.client.CustomObjectsApi(self.client).patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            self.pods[pod],
            contracts.replica_drift_patch(pod, entry),
        )

    def _run(self) -> None:
        last_key: dict[str, object] = {}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while not self._stop.is_set():
                self._tick += 1
                now = time.monotonic()
                batch = []
                for pod, policy in self.policies.items():
                    state = self._state(pod, self._tick)
                    if policy.due(state, now):
                        policy.sent(state, now)
                        # The rollout left every replica reporting version 1, no drift.
                        if last_key.get(pod, self._rollout_key) != state.key():
                            self.changes += 1
                        last_key[pod] = state.key()
                        batch.append(pool.submit(self._send, pod, state))
                for fut in batch:
                    try:
                        fut.result()
                        self.sent += 1
                    except Exception:
                        self.errors += 1
                self._stop.wait(0.2)

    def __enter__(self) -> LiveReports:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _live_phase(
    plane: Any, op: Any, client: Any, *, seconds: float, interval: float, flip: set[str]
) -> dict[str, Any]:
    """Every replica reports for ``seconds``; what the operator did meanwhile."""
    with LiveReports(client, NAMESPACE, interval=interval, flip=flip) as live:
        before = Snapshot(plane, op)
        time.sleep(seconds)
        after = Snapshot(plane, op)
        sent, errors, changes = live.sent, live.errors, live.changes
    out = after.delta(before)
    out.update(
        replicas=len(live.pods),
        reports=sent,
        report_errors=errors,
        drift_state_changes=changes,
        flipped_edgemodels=len(flip),
        report_interval_seconds=interval,
    )
    return out


def _wait_all_ready(
    client: Any, namespace: str, n: int, timeout: float, timeline: list[tuple[float, int]]
) -> tuple[float | None, list[float], int]:
    """Seconds until all ``n`` are Ready (None on timeout), each one's Ready time, and how many were Ready."""
    import kubernetes

    from edgemodel import api

    objects = kubernetes.client.CustomObjectsApi(client)
    start = time.monotonic()
    first_ready: dict[str, float] = {}
    timeline.clear()
    while time.monotonic() - start < timeout:
        try:
            items = objects.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)[
                "items"
            ]
        except Exception:
            time.sleep(1)
            continue
        now = time.monotonic() - start
        for item in items:
            if _ready(item):
                first_ready.setdefault(item["metadata"]["name"], now)
        timeline.append((round(now, 1), len(first_ready)))
        if len(first_ready) >= n:
            return now, sorted(first_ready.values()), len(first_ready)
        time.sleep(1)
    return None, sorted(first_ready.values()), len(first_ready)


def _baseline_deployments(plane: Any, n: int, timeout: float) -> dict[str, Any]:
    """The cluster alone: create ``n`` one-replica Deployments, time until all are available."""
    import kubernetes

    client = plane.api_client()
    core = kubernetes.client.CoreV1Api(client)
    apps = kubernetes.client.AppsV1Api(client)
    core.create_namespace(cast(Any, {"metadata": {"name": BASELINE_NAMESPACE}}))

    def create(i: int) -> None:
        labels = {"app": f"d-{i:04d}"}
        apps.create_namespaced_deployment(
            BASELINE_NAMESPACE,
            cast(
                Any,
                {
                    "metadata": {"name": f"d-{i:04d}"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": labels},
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "containers": [{"name": "c", "image": "localhost/x"}],
                                "tolerations": [{"operator": "Exists"}],
                            },
                        },
                    },
                },
            ),
        )

    before = Snapshot(plane, None)
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(create, range(n)))
    created = time.monotonic() - t
    done = None
    while time.monotonic() - t < timeout:
        items = apps.list_namespaced_deployment(BASELINE_NAMESPACE).items
        if sum(1 for d in items if (d.status.available_replicas or 0) >= 1) >= n:
            done = time.monotonic() - t
            break
        time.sleep(1)
    after = Snapshot(plane, None)
    return {"n": n, "create_seconds": created, "all_available_seconds": done, **after.delta(before)}


def _one_size(n: int, workdir: pathlib.Path, *, quiet_seconds: float, timeout: float) -> dict[str, Any]:
    import kubernetes

    from edgemodel import contracts
    from edgemodel_dev.harness import controlplane, operatorprocess, processes

    # Each EdgeModel asks for 350m CPU and 704Mi (inference Pod + bootstrap Job Pod); a kwok node has 32 CPUs.
    nodes = math.ceil(n / 80) + 1
    # Every EdgeModel has a ClusterIP Service; the harness' /24 range holds 254, so beyond that
    # Service applies fail (500) and EdgeModels never become Ready. Widen it for these planes.
    controlplane.SERVICE_CIDR = SERVICE_CIDR
    plane = _audited_plane(workdir / f"plane-{n}", nodes)
    op = None
    out: dict[str, Any] = {"n": n, "nodes": nodes}
    try:
        t = time.monotonic()
        plane.start()
        install_crd(plane)
        out["control_plane_start_seconds"] = time.monotonic() - t
        out["baseline"] = _baseline_deployments(plane, n, timeout)
        client = plane.api_client()
        kubernetes.client.CoreV1Api(client).create_namespace(cast(Any, {"metadata": {"name": NAMESPACE}}))
        op = operatorprocess.OperatorProcess(
            plane,
            workdir / f"operator-{n}",
            env={
                "EDGEMODEL_NAMESPACE": NAMESPACE,
                "EDGEMODEL_LEASE_NAMESPACE": NAMESPACE,
                "EDGEMODEL_RESYNC_SECONDS": "60",  # the default: the live phases span a resync tick
                "EDGEMODEL_MLFLOW_TRACKING_URI": MLFLOW_URI,
                "EDGEMODEL_LEASE_DURATION_SECONDS": str(LEASE_SECONDS),
                # The Reporter stands in for each runtime with one report; a real runtime sends a
                # heartbeat. On a loaded machine a rollout of 500 outlasted the 300 s default, and
                # a report went stale before the operator got to it.
                "EDGEMODEL_STALE_REPORT_SECONDS": str(STALE_REPORT_SECONDS),
            },
        ).start()
        pid = _op_pid(op)
        processes.wait_until(
            lambda: "edgemodel_operator_leader 1.0" in op.metrics_text(),
            timeout=60,
            what="the operator to lead",
        )
        time.sleep(1)
        out["operator_rss_idle_mb"] = common.proc_rss_bytes(pid) / 2**20
        before = Snapshot(plane, op)
        with common.ProcSampler(pid, interval=0.5) as sampler, Reporter(client, NAMESPACE) as reporter:
            out["create_seconds"] = _create_all(client, NAMESPACE, n)
            timeline: list[tuple[float, int]] = []
            all_ready, ready_times, ready_count = _wait_all_ready(client, NAMESPACE, n, timeout, timeline)
            out["ready_timeline"] = timeline
            after = Snapshot(plane, op)
            out["reporter_errors"] = reporter.errors
        out["all_ready_seconds"] = all_ready
        out["ready_count"] = ready_count
        out["ready_p50_seconds"] = common.percentile(ready_times, 50)
        out["ready_p99_seconds"] = common.percentile(ready_times, 99)
        out["rollout"] = after.delta(before)
        out["operator_rss_peak_mb"] = sampler.peak_rss / 2**20
        out["rss_curve"] = [
            (round(t, 1), round(r / 2**20, 1))
            for t, r in sampler.samples[:: max(1, len(sampler.samples) // 200)]
        ]
        # Let the operator finish the work the rollout left it (follow-up passes), then a
        # quiet period with nothing changing.
        out["settle_seconds"] = _settle(op, idle=min(5.0, quiet_seconds), cap=max(30.0, 5 * quiet_seconds))
        q0 = Snapshot(plane, op)
        time.sleep(quiet_seconds)
        q1 = Snapshot(plane, op)
        out["quiet"] = q1.delta(q0)
        out["operator_rss_end_mb"] = common.proc_rss_bytes(pid) / 2**20
        # Live runtimes: first reports that change no drift state, then a tenth of the
        # EdgeModels turn drifted once (each a state change the operator must act on).
        interval = contracts.RuntimeConfig.model_fields["report_interval_seconds"].default
        out["live"] = _live_phase(plane, op, client, seconds=quiet_seconds, interval=interval, flip=set())
        flip = {f"em-{i:04d}" for i in range(0, n, 10)}
        out["live_drift"] = _live_phase(
            plane, op, client, seconds=quiet_seconds, interval=interval, flip=flip
        )
        out["operator_rss_live_mb"] = common.proc_rss_bytes(pid) / 2**20
        out["leader_acquisitions"] = op.log_text().count("Acquired leader Lease")
        out["lease_seconds"] = LEASE_SECONDS
        out["operator_log_errors"] = sum(
            1 for ln in op.log_text().splitlines() if '"ERROR"' in ln or "Traceback" in ln
        )
    finally:
        if op is not None:
            op.stop()
        plane.stop()
    return out


def _plot(out: pathlib.Path, sizes: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for s in sizes:
        tl = s.get("ready_timeline") or []
        axes[2].plot([t for t, _ in tl], [c / s["n"] * 100 for _, c in tl], label=f"{s['n']} EdgeModels")
    axes[2].set_xlabel("seconds since the first create")
    axes[2].set_ylabel("% Ready")
    axes[2].legend(fontsize=7)
    axes[2].set_title("EdgeModels Ready over time")
    ns = [s["n"] for s in sizes]
    axes[0].plot(
        ns,
        [s["all_ready_seconds"] or math.nan for s in sizes],
        "o-",
        color="#2a7",
        label="all EdgeModels Ready (operator)",
    )
    axes[0].plot(
        ns,
        [s["baseline"]["all_available_seconds"] or math.nan for s in sizes],
        "o--",
        color="#999",
        label="same number of plain Deployments available (no operator)",
    )
    axes[0].axhline(60, color="#c63", ls=":", lw=0.8, label="aim: 1,000 in 60 s")
    axes[0].set_xlabel("EdgeModels")
    axes[0].set_ylabel("seconds")
    axes[0].legend(fontsize=7)
    axes[0].set_title("Time until all Ready")
    for s in sizes:
        curve = s.get("rss_curve") or []
        axes[1].plot([c[0] for c in curve], [c[1] for c in curve], label=f"{s['n']} EdgeModels")
    axes[1].axhline(200, color="#c63", ls=":", lw=0.8, label="aim: < 200 MB at 1,000")
    axes[1].set_xlabel("seconds since the first create")
    axes[1].set_ylabel("operator RSS (MB)")
    axes[1].legend(fontsize=7)
    axes[1].set_title("Operator memory during the rollout")
    fig.tight_layout()
    fig.savefig(out / "operator_scale.png", dpi=100)
    plt.close(fig)
    return ["operator_scale.png"]


def _markdown(sizes: list[dict[str, Any]], quiet_seconds: float) -> str:
    base = sizes[0]
    rows = []
    for s in sizes:
        r = s["rollout"]
        b = s["baseline"]
        rows.append(
            [
                s["n"],
                s["all_ready_seconds"],
                f"{s['ready_count']}/{s['n']}",
                s["ready_p50_seconds"],
                b["all_available_seconds"],
                common.ratio(s["all_ready_seconds"], b["all_available_seconds"]),
                r.get("reconcile_p50_s", math.nan) * 1000,
                r.get("reconcile_p99_s", math.nan) * 1000,
                r.get("reconciles", 0) / s["n"],
                s["operator_rss_idle_mb"],
                s["operator_rss_peak_mb"],
                s.get("leader_acquisitions"),
            ]
        )
    md = [
        "Each size runs on a fresh control plane. Time is from the first create to the moment the last "
        "EdgeModel shows `Ready=True`; the baseline is the same control plane making the same number "
        "of plain "
        "one-replica Deployments available with no operator involved.\n",
        common.markdown_table(
            [
                "EdgeModels",
                "all Ready (s)",
                "Ready",
                "median Ready (s)",
                "baseline: Deployments (s)",
                "× baseline",
                "reconcile p50 (ms)",
                "reconcile p99 (ms)",
                "reconciles / EdgeModel",
                "operator RSS idle (MB)",
                "operator RSS peak (MB)",
                "leader Lease acquired (times)",
            ],
            rows,
        ),
        "\n## Cost per EdgeModel during the rollout\n",
    ]
    rows = []
    for s in sizes:
        r = s["rollout"]
        cpu = r["cpu_seconds"]
        per = {k: v / s["n"] * 1000 for k, v in cpu.items()}
        rows.append(
            [
                s["n"],
                r.get("reconciler_api_requests", 0) / s["n"],
                r["sa_requests"] / s["n"],
                common.ratio(r["sa_requests"] / s["n"], base["rollout"]["sa_requests"] / base["n"]),
                per.get("edgemodel-operator", math.nan),
                common.ratio(
                    per.get("edgemodel-operator"),
                    base["rollout"]["cpu_seconds"]["edgemodel-operator"] / base["n"] * 1000,
                ),
                per.get("kube-apiserver", math.nan),
                per.get("etcd", math.nan),
                per.get("kube-controller-manager", math.nan),
                s["baseline"]["cpu_seconds"].get("kube-apiserver", math.nan) / s["n"] * 1000,
            ]
        )
    md.append(
        common.markdown_table(
            [
                "EdgeModels",
                "API requests / EM (reconciler)",
                "API requests / EM (API server, operator's SA)",
                f"× at {base['n']}",
                "operator CPU ms / EM",
                f"× at {base['n']}",
                "apiserver CPU ms / EM",
                "etcd CPU ms / EM",
                "controller-manager CPU ms / EM",
                "baseline: apiserver CPU ms / Deployment",
            ],
            rows,
        )
    )
    md.append(
        f"\n## A quiet period ({quiet_seconds:.0f} s, nothing changing)\n\n"
        "It starts once the operator has run no reconcile for 5 s after the last EdgeModel turned "
        "Ready: *settle* is how long the follow-up passes the rollout left took until then.\n"
    )
    rows = []
    for s in sizes:
        q = s["quiet"]
        per_min = 60.0 / q["seconds"]
        rows.append(
            [
                s["n"],
                s.get("settle_seconds"),
                q.get("reconciler_api_requests", 0) * per_min,
                q["sa_requests"] * per_min,
                q["sa_requests"] * per_min / s["n"],
                q.get("reconciles", 0) * per_min,
                q["cpu_seconds"].get("edgemodel-operator", math.nan) / q["seconds"] * 100,
                q["cpu_seconds"].get("kube-apiserver", math.nan) / q["seconds"] * 100,
                q["all_apiserver_requests"] * per_min,
                s["operator_rss_end_mb"],
            ]
        )
    md.append(
        common.markdown_table(
            [
                "EdgeModels",
                "settle (s)",
                "reconciler API requests / min",
                "operator SA requests / min",
                "per EM / min",
                "reconciles / min",
                "operator CPU %",
                "apiserver CPU %",
                "all API server requests / min (every client)",
                "operator RSS (MB)",
            ],
            rows,
        )
    )
    md.append(
        "\n## Where the operator's requests go (create to all Ready)\n\n"
        "Counted by the API server: its audit log records every request the operator's "
        "ServiceAccount sends (kopf's watches and annotation patches included), per EdgeModel.\n"
    )
    kinds = sorted(
        {k for s in sizes for k in s["rollout"].get("operator_requests_by_kind", {})},
        key=lambda k: (
            -sum(s["rollout"].get("operator_requests_by_kind", {}).get(k, 0) / s["n"] for s in sizes)
        ),
    )
    md.append(
        common.markdown_table(
            ["request", *[f"per EM at {s['n']}" for s in sizes]],
            [
                [k, *[s["rollout"].get("operator_requests_by_kind", {}).get(k, 0) / s["n"] for s in sizes]]
                for k in kinds
            ]
            + [["all", *[s["rollout"].get("audited_requests", math.nan) / s["n"] for s in sizes]]],
        )
    )
    md.append(
        "\n## Live runtimes\n\n"
        "Every inference replica reports at the runtime's real cadence, through the runtime's own "
        "`ReportPolicy` and `DriftReport` and the patch its `KubernetesSink` sends. *steady*: no "
        "drift-state change; *drift*: every tenth EdgeModel's replica turns `detected` on once. "
        "Passes and requests are the operator's over the phase, per minute.\n"
    )
    rows = []
    for s in sizes:
        for phase in ("live", "live_drift"):
            q = s.get(phase)
            if not q:
                continue
            per_min = 60.0 / q["seconds"]
            rows.append(
                [
                    s["n"],
                    "steady" if phase == "live" else "drift",
                    q["reports"] * per_min,
                    q["drift_state_changes"],
                    q.get("reconciles", 0) * per_min,
                    q["sa_requests"] * per_min,
                    ", ".join(
                        f"{k} {v}" for k, v in list(q.get("operator_requests_by_kind", {}).items())[:6]
                    ),
                    q["cpu_seconds"].get("edgemodel-operator", math.nan) / q["seconds"] * 100,
                ]
            )
    md.append(
        common.markdown_table(
            [
                "EdgeModels",
                "phase",
                "reports / min",
                "drift-state changes",
                "operator passes / min",
                "operator requests / min",
                "largest request kinds (count)",
                "operator CPU %",
            ],
            rows,
        )
    )
    return "\n".join(md)


def run(out: pathlib.Path, *, quick: bool, sizes: list[int] | None = None) -> common.Result:
    sizes = sizes or ([10] if quick else [100, 500, 1000])
    quiet = 5.0 if quick else 60.0
    timeout = 120.0 if quick else 480.0
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-operator-"))
    results = []
    try:
        for n in sizes:
            print(f"   operator: {n} EdgeModels", flush=True)
            results.append(_one_size(n, workdir, quiet_seconds=quiet, timeout=timeout))
            s = results[-1]
            partial = common.Result(
                "operator",
                "Operator scale (partial)",
                _markdown(results, quiet),
                {"sizes": results},
                status="partial",
            )
            common.write_result(partial, out, quick=quick)
            print(
                f"   operator: {n} -> all Ready in {s['all_ready_seconds']} s ({s['ready_count']} Ready), "
                f"RSS peak {s['operator_rss_peak_mb']:.0f} MB",
                flush=True,
            )
    finally:
        with contextlib.suppress(Exception):
            shutil.rmtree(workdir, ignore_errors=True)
    plots = _plot(out, results)
    data = {"sizes": results, "quiet_seconds": quiet}
    status = "ok" if all(s["all_ready_seconds"] is not None for s in results) else "incomplete"
    return common.Result("operator", "Operator scale", _markdown(results, quiet), data, plots, status=status)
