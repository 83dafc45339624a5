# ruff: noqa: PLC0415 - heavy or optional dependencies are imported where they are used
"""Benchmark 4, sharding: one operator against ``shards`` operator replicas on the same workload.

``python -m bench operator --sizes 200 --shards 2``. For each size ``n``, two runs, each on
a fresh harness control plane (kwok nodes, the audited API server of
:mod:`bench.operator_bench`): first one ``edgemodel-operator`` with ``shards: 1`` (today's
single leader), then ``shards`` processes with ``EDGEMODEL_SHARDS=<shards>``, each holding
one shard. ``n`` EdgeModels are created and made Ready as in the scale benchmark (the
Reporter plays each runtime's first report). Measured per run: time until all are Ready,
each process's reconciles, API requests (its own counter), CPU seconds and RSS; the API
server's audited requests of the operators' ServiceAccount; and, from the API server's
``managedFields`` (each process applies under a field manager of its own), how many
EdgeModels had children written by more than one process: it must be 0.

On a machine whose cores the control plane and the operators share, more processes cannot
buy much time: the point is that the work splits and nothing is done twice. Ratios are
against the single operator of the same run. ``BENCH_SHARDS_BASELINE=0`` skips the single
operator (half the time, no ratio), e.g. to show the split at 1,000 on a busy machine.

I/O: processes and the Kubernetes API.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
import time
from typing import Any, cast

from bench import common, operator_bench

__all__ = ["run"]

TAKEOVER_SECONDS = 600
"""Long: each process starts holding none and takes one shard; none takes a second during the run."""
SHARD_GAUGE = re.compile(r'^edgemodel_operator_shard_leader\{shard="(\d+)"\} 1\.0$', re.M)


def _held(op: Any) -> set[int]:
    return {int(i) for i in SHARD_GAUGE.findall(op.metrics_text())}


def _writers(client: Any, namespace: str, managers: list[str]) -> dict[str, set[str]]:
    """EdgeModel -> the operator field managers found on its inference StatefulSet and Service."""
    import kubernetes

    apps, core = kubernetes.client.AppsV1Api(client), kubernetes.client.CoreV1Api(client)
    out: dict[str, set[str]] = {}
    for child in [
        *apps.list_namespaced_stateful_set(namespace).items,
        *core.list_namespaced_service(namespace).items,
    ]:
        owner = (child.metadata.labels or {}).get("edgeml.dev/edgemodel")
        if owner is not None:
            found = {f.manager for f in child.metadata.managed_fields or []}
            out.setdefault(owner, set()).update(m for m in managers if m in found)
    return out


def _one_run(n: int, shards: int, workdir: pathlib.Path, *, timeout: float) -> dict[str, Any]:
    import kubernetes

    from edgemodel_dev.harness import controlplane, operatorprocess, processes

    nodes = math.ceil(n / 80) + 1
    controlplane.SERVICE_CIDR = operator_bench.SERVICE_CIDR
    plane = operator_bench._audited_plane(workdir / f"plane-{n}-{shards}", nodes)
    ops: list[Any] = []
    managers = [f"edgemodel-operator-{i}" for i in range(shards)]
    out: dict[str, Any] = {"n": n, "shards": shards, "processes": shards, "nodes": nodes}
    try:
        plane.start()
        operator_bench.install_crd(plane)
        client = plane.api_client()
        namespace = operator_bench.NAMESPACE
        kubernetes.client.CoreV1Api(client).create_namespace(cast(Any, {"metadata": {"name": namespace}}))
        for i in range(shards):
            op = operatorprocess.OperatorProcess(
                plane,
                workdir / f"operators-{n}-{shards}",
                identity=f"operator-{i}",
                env={
                    "EDGEMODEL_NAMESPACE": namespace,
                    "EDGEMODEL_LEASE_NAMESPACE": namespace,
                    "EDGEMODEL_RESYNC_SECONDS": "60",
                    "EDGEMODEL_MLFLOW_TRACKING_URI": operator_bench.MLFLOW_URI,
                    "EDGEMODEL_LEASE_DURATION_SECONDS": str(operator_bench.LEASE_SECONDS),
                    "EDGEMODEL_STALE_REPORT_SECONDS": str(operator_bench.STALE_REPORT_SECONDS),
                    "EDGEMODEL_SHARDS": str(shards),
                    "EDGEMODEL_SHARD_TAKEOVER_SECONDS": str(TAKEOVER_SECONDS),
                    "EDGEMODEL_FIELD_MANAGER": managers[i],
                },
            )
            ops.append(op)
            op.start()
            processes.wait_until(
                lambda op=op: len(_held(op)) == 1, timeout=120, what=f"operator-{i} to hold a shard"
            )
        held = [sorted(_held(op)) for op in ops]
        before = [common.parse_prometheus(op.metrics_text()) for op in ops]
        cpu0 = [common.proc_cpu_seconds(operator_bench._op_pid(op)) for op in ops]
        audit0 = operator_bench._audit_offset(plane)
        with operator_bench.Reporter(client, namespace) as reporter:
            out["create_seconds"] = operator_bench._create_all(client, namespace, n)
            timeline: list[tuple[float, int]] = []
            all_ready, ready_times, ready_count = operator_bench._wait_all_ready(
                client, namespace, n, timeout, timeline
            )
            out["reporter_errors"] = reporter.errors
        out["all_ready_seconds"] = all_ready
        out["ready_count"] = ready_count
        out["ready_p50_seconds"] = common.percentile(ready_times, 50)
        out["ready_timeline"] = timeline
        per: list[dict[str, Any]] = []
        for i, op in enumerate(ops):
            now = common.parse_prometheus(op.metrics_text())
            per.append(
                {
                    "identity": op.identity,
                    "shards_held": held[i],
                    "reconciles": common.sample_sum(now, "edgemodel_operator_reconciles_total")
                    - common.sample_sum(before[i], "edgemodel_operator_reconciles_total"),
                    "api_requests": common.sample_sum(now, "edgemodel_operator_api_requests_total")
                    - common.sample_sum(before[i], "edgemodel_operator_api_requests_total"),
                    "cpu_seconds": common.proc_cpu_seconds(operator_bench._op_pid(op)) - cpu0[i],
                    "rss_mb": common.proc_rss_bytes(operator_bench._op_pid(op)) / 2**20,
                }
            )
        out["operators"] = per
        out["audited_requests"] = sum(
            operator_bench._audit_breakdown(plane, audit0, operator_bench._audit_offset(plane)).values()
        )
        writers = _writers(client, namespace, managers)
        out["edgemodels_by_writer"] = {m: sum(1 for w in writers.values() if w == {m}) for m in managers}
        out["edgemodels_written_by_several"] = sum(1 for w in writers.values() if len(w) > 1)
        out["edgemodels_written_by_none"] = n - len(writers)
    finally:
        for op in ops:
            op.stop()
        plane.stop()
    return out


def _markdown(pairs: list[tuple[dict[str, Any] | None, dict[str, Any]]]) -> str:
    rows = []
    for single, sharded in pairs:
        base = (single or {}).get("all_ready_seconds") or math.nan
        for r in (single, sharded):
            if r is None:
                continue
            ops = r.get("operators") or []
            rows.append(
                [
                    r["n"],
                    r["shards"],
                    " / ".join(str(v) for v in r["edgemodels_by_writer"].values()),
                    r["all_ready_seconds"] if r["all_ready_seconds"] is not None else math.nan,
                    (r["all_ready_seconds"] or math.nan) / base,
                    " / ".join(f"{o['reconciles']:.0f}" for o in ops),
                    " / ".join(f"{o['api_requests']:.0f}" for o in ops),
                    " / ".join(f"{o['cpu_seconds']:.1f}" for o in ops),
                    " / ".join(f"{o['rss_mb']:.0f}" for o in ops),
                    r["audited_requests"],
                    r["edgemodels_written_by_several"],
                ]
            )
    intro = (
        "One operator (shards 1) against one process per shard, each run on a fresh control plane; "
        if any(single is not None for single, _ in pairs)
        else "One process per shard (BENCH_SHARDS_BASELINE=0: no single-operator run); "
    )
    return (
        intro
        + "per-process values are separated by /.\n\n"
        + common.markdown_table(
            [
                "EdgeModels",
                "shards (processes)",
                "EdgeModels each process wrote",
                "all Ready (s)",
                "vs. one operator",
                "reconciles",
                "API requests",
                "operator CPU s",
                "RSS MB",
                "audited requests (all operators)",
                "EdgeModels written by more than one process",
            ],
            rows,
        )
    )


def run(out: pathlib.Path, *, quick: bool, sizes: list[int] | None = None, shards: int = 2) -> common.Result:
    import shutil
    import tempfile

    sizes = sizes or ([10] if quick else [200])
    timeout = 120.0 if quick else 600.0
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-operator-shards-"))
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
    baseline = os.environ.get("BENCH_SHARDS_BASELINE", "1") != "0"
    try:
        for n in sizes:
            single = None
            if baseline:
                print(f"   operator shards: {n} EdgeModels, 1 operator", flush=True)
                single = _one_run(n, 1, workdir, timeout=timeout)
            print(f"   operator shards: {n} EdgeModels, {shards} shards", flush=True)
            t = time.monotonic()
            sharded = _one_run(n, shards, workdir, timeout=timeout)
            pairs.append((single, sharded))
            print(
                f"   operator shards: {n} -> one operator {(single or {}).get('all_ready_seconds')} s, "
                f"{shards} shards {sharded['all_ready_seconds']} s ({time.monotonic() - t:.0f} s run), "
                f"written by several: {sharded['edgemodels_written_by_several']}",
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    data = {"pairs": [{"single": s, "sharded": h} for s, h in pairs], "shards": shards}
    ok = all(
        h["all_ready_seconds"] is not None
        and (s is None or s["all_ready_seconds"] is not None)
        and h["edgemodels_written_by_several"] == 0
        for s, h in pairs
    )
    return common.Result(
        "operator_shards",
        f"Operator sharding ({shards} shards)",
        _markdown(pairs),
        data,
        status="ok" if ok else "incomplete",
    )
