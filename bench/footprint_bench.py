# ruff: noqa: PLC0415 - heavy or optional dependencies are imported where they are used
"""The runtime's footprint: what each way of getting and running a model costs in memory (issue 13).

Every variant runs in a fresh interpreter (:mod:`bench.footprint_probe`) that imports its
steps one by one and then does the real work against real parts, reporting VmRSS after
each step and after the work:

- **baseline**: the bare interpreter plus the runtime's unavoidable imports (numpy,
  pydantic and ``edgemodel.api``, paho, prometheus_client): ``core``;
- **(a) skops + scikit-learn**: load the ridge model as the trainer saved it (downloaded
  from a real MLflow; SHA-256 checked, then skops with the allow-list) and predict a batch;
- **(b) ONNX**: the same model as the trainer registers it since issue 13 (converted by
  :func:`edgemodel.modelstore.to_onnx` at registration, ``model.onnx`` with its own SHA-256
  tag), downloaded from MLflow, loaded from bytes whose SHA-256 was checked first, with
  onnxruntime (one thread), predicting the same batch; predictions must agree with (a) to
  1e-6 relative;
- **(c) MLflow client vs REST**: resolve the alias and download the version's files from a
  real MLflow server, with ``MlflowClient`` and ``mlflow.artifacts`` (as the runtime did)
  or with :mod:`edgemodel_runtime.mlflowapi` (urllib); both on top of core + skops, which
  the runtime has anyway, so the difference is the margin;
- **(d) kubernetes client vs HTTPS**: merge-patch the replica's status entry of a real
  EdgeModel on a real kube-apiserver, read the status and list EndpointSlices, with the
  kubernetes client (as the runtime did) or :mod:`edgemodel_runtime.kubeapi` (urllib);
- **the whole runtime**: ``edgemodel-runtime`` serving the model from MLflow on a real
  Mosquitto and reporting to the real API server, idle once the model is loaded, once
  serving a version without ONNX (skops + scikit-learn) and once the same weights
  registered with ``model.onnx`` (onnxruntime; scikit-learn never imported); and, in a
  full run, the runtime before issue 13 (a git worktree of :data:`BEFORE`), in the same run.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from bench import common, procs

__all__ = ["run"]

MODEL = "bench-footprint"
MODEL_ONNX = "bench-footprint-onnx"
"""The same weights as :data:`MODEL`'s version, registered with ``model.onnx`` (as the trainer does)."""
BEFORE = "d103231"
"""The last commit before issue 13's footprint work: the runtime with the MLflow and kubernetes clients."""
POD = "footprint-0"
MB = 1024 * 1024

VARIANTS: dict[str, tuple[list[str], str]] = {
    "baseline": (["core"], "none"),
    "skops": (["core", "skops"], "predict-skops"),
    "onnx": (["core", "onnxruntime"], "predict-onnx"),
    "mlflow_client": (["core", "skops", "mlflow"], "fetch-mlflow"),
    "mlflow_rest": (["core", "skops", "mlflowapi"], "fetch-rest"),
    "kubernetes_client": (["core", "kubernetes"], "patch-kubernetes"),
    "kubernetes_https": (["core", "kubeapi"], "patch-https"),
    "mlflow_client_alone": (["core", "mlflow"], "none"),
}


def _probe(steps: list[str], work: str, args: dict[str, Any]) -> dict[str, Any]:
    spec = json.dumps({"steps": steps, "work": work, "args": args})
    return procs.run_json([sys.executable, "-m", "bench.footprint_probe", spec], timeout=300)


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each figure over repeated runs of one variant."""
    first = runs[0]
    steps = []
    for i, step in enumerate(first["steps"]):
        steps.append(
            {
                "name": step["name"],
                "rss": statistics.median(r["steps"][i]["rss"] for r in runs),
                "seconds": statistics.median(r["steps"][i]["seconds"] for r in runs),
            }
        )
    work = dict(first["work"])
    work["rss"] = statistics.median(r["work"]["rss"] for r in runs)
    work["seconds"] = statistics.median(r["work"]["seconds"] for r in runs)
    return {"start": statistics.median(r["start"] for r in runs), "steps": steps, "work": work, "runs": runs}


def _runtime_rss(
    *,
    broker: Any,
    uri: str,
    kubeconfig: pathlib.Path,
    namespace: str,
    workdir: pathlib.Path,
    tag: str,
    pythonpath: str | None = None,
    python: str = sys.executable,
    settle: float = 5.0,
    model: str = MODEL,
) -> dict[str, Any]:
    """Start ``edgemodel-runtime``, wait for the model and the first report, let it idle; its VmRSS."""
    from edgemodel_dev.harness import processes

    port = processes.free_port()
    argv = [
        python, "-m", "edgemodel_runtime.main",
        "--topics", "bench/footprint/+", "--features", "temp,humidity", "--target", "temp",
        "--lags", "3", "--horizon", "1", "--device-field", "device",
        "--output-topic", "bench/footprint-out/{device}", "--drift-threshold", "1.5",
        "--broker-host", broker.host, "--broker-port", str(broker.port),
        "--mlflow-tracking-uri", uri, "--model-name", model, "--model-poll-seconds", "5",
        "--edgemodel", f"{namespace}/{MODEL}",
        "--http-bind", "127.0.0.1", "--http-port", str(port), "--client-id", f"footprint-{tag}",
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {
        "MQTT_USERNAME": broker.username,
        "MQTT_PASSWORD": broker.password,
        "POD_NAME": POD,
        "POD_NAMESPACE": namespace,
        "KUBECONFIG": str(kubeconfig),
    }
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    t = time.monotonic()
    h = procs.Helper(argv, env=env, stderr_path=workdir / f"runtime-{tag}.log")
    try:
        processes.wait_until(
            lambda: common.get_json(f"http://127.0.0.1:{port}/readyz").get("modelVersion") is not None,
            timeout=180,
            what=f"the {tag} runtime to be ready with a model",
        )
        ready = time.monotonic() - t
        loaded = common.get_json(f"http://127.0.0.1:{port}/readyz").get("modelVersion")
        reports = 0.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and reports < 1:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            reports = common.parse_prometheus(text).get(
                ("edgemodel_status_reports_total", (("result", "sent"),)), 0.0
            )
            if reports < 1:
                time.sleep(0.2)
        # idle: sample for a few seconds once the model serves and the report went out
        samples = []
        end = time.monotonic() + settle
        while time.monotonic() < end:
            samples.append(common.proc_rss_bytes(h.pid))
            time.sleep(0.25)
        return {
            "rss": statistics.median(samples),
            "rss_max": max(samples),
            "ready_seconds": ready,
            "reports_sent": reports,
            "model": model,
            "model_version": loaded,
        }
    finally:
        h.stop()


def _before_tree(workdir: pathlib.Path) -> pathlib.Path | None:
    """A git worktree of :data:`BEFORE`, or None when this is not a git checkout with that commit."""
    tree = workdir / "before"
    proc = subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), BEFORE],
        cwd=procs.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return tree if proc.returncode == 0 else None


def _remove_tree(tree: pathlib.Path) -> None:
    subprocess.run(
        ["git", "worktree", "remove", "--force", str(tree)], cwd=procs.REPO, capture_output=True, check=False
    )


def _prepare_cluster(plane: Any) -> tuple[str, dict[str, Any]]:
    """The CRD, a namespace and an EdgeModel to report to; the namespace and a status patch."""
    from edgemodel import api, contracts
    from edgemodel_dev.harness import processes
    from edgemodel_runtime import kubeapi

    crd = procs.REPO / "crds" / "edgemodel.yaml"
    plane.kubectl("apply", "--server-side", "-f", str(crd))
    admin = kubeapi.from_kubeconfig(plane.kubeconfig)

    def established() -> bool:
        try:
            obj = admin.request(
                "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/edgemodels.edgeml.dev"
            )
        except kubeapi.ApiError:
            return False
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    processes.wait_until(established, timeout=60, what="the EdgeModel CRD")
    namespace = "footprint"
    admin.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    spec = {
        "sensors": {"topics": ["bench/footprint/+"], "features": ["temp", "humidity"], "target": "temp"},
        "drift": {"threshold": 1.5, "window": 100},
        "broker": {"host": "mqtt.site.example", "port": 1883},
    }
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": MODEL}, "spec": spec}
    admin.request("POST", f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}", body=body)
    from bench import operator_bench

    return namespace, contracts.replica_drift_patch(POD, operator_bench.quiet_report())


def _installed_mb(path: pathlib.Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = pathlib.Path(root) / f
            if not p.is_symlink():
                total += p.stat().st_size
    return total / MB


def _pip(python: pathlib.Path, *args: str) -> None:
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args],
                   check=True, capture_output=True, timeout=1800)  # fmt: skip


def _slim_venvs(workdir: pathlib.Path) -> dict[str, Any]:
    """Fresh venvs from PyPI: the wheel with only the ``runtime`` extra's requirements, and with all its own.

    Opt-in (``EDGEMODEL_FOOTPRINT_SLIM=1``): it downloads and installs from the package index.
    """
    import tomllib

    dist = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(dist), "."],
        cwd=procs.REPO, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = dist.glob("edgemodel-*.whl")
    extras = tomllib.loads((procs.REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    out: dict[str, Any] = {"runtime_requirements": extras["runtime"]}
    for name in ("slim", "full"):
        venv = workdir / f"venv-{name}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        python = venv / "bin" / "python"
        t = time.monotonic()
        if name == "slim":
            _pip(python, "--no-deps", str(wheel))
            _pip(python, *extras["runtime"])
        else:
            _pip(python, str(wheel))
        site = next((venv / "lib").glob("python3*/site-packages"))
        out[name] = {
            "python": str(python),
            "install_seconds": time.monotonic() - t,
            "venv_mb": _installed_mb(venv),
            "site_packages_mb": _installed_mb(site),
            "packages": len(list(site.glob("*.dist-info"))),
        }
    return out


def run(out: pathlib.Path, *, quick: bool) -> common.Result:
    import numpy as np

    from edgemodel import features
    from edgemodel_dev import testing
    from edgemodel_dev.harness import controlplane, mlflowserver, mosquitto
    from edgemodel_runtime import mlflowapi

    repeats = 1 if quick else 3
    rows = 100 if quick else 1000
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    broker = mosquitto.Mosquitto(workdir / "mosquitto")
    mlflow = mlflowserver.MlflowServer(workdir / "mlflow")
    plane = controlplane.ControlPlane(workdir / "controlplane")
    before_tree: pathlib.Path | None = None
    data: dict[str, Any] = {"repeats": repeats, "rows": rows, "before": BEFORE}
    try:
        broker.start()
        mlflow.start()
        plane.start()
        namespace, patch = _prepare_cluster(plane)
        version = common.publish_model(mlflow.uri, MODEL)
        data["model_version"] = version

        # The model file exactly as the trainer registered it, and a batch of real feature rows.
        client = mlflowapi.Client(mlflow.uri)
        sha = client.version_tags(MODEL, version)["edgemodel.sha256"]
        skops_file = workdir / "model.skops"
        assert client.download_version_file(MODEL, version, "model.skops", skops_file) == sha
        frame = features.build_training_frame(
            testing.SPEC,
            [
                (p["device"], p["ts"], {f: p[f] for f in testing.SPEC.fields})
                for p in testing.readings(5, rows // 5 + 10, seed=7)
            ],
        )
        batch = np.ascontiguousarray(np.asarray(frame.x, dtype=np.float64)[:rows])
        np.save(workdir / "batch.npy", batch)

        # (b) converted at registration as the trainer does (modelstore.to_onnx: skl2onnx, float64,
        # checked on the rows), the same weights registered again with model.onnx and its tag.
        from edgemodel import modelstore

        model = modelstore.load(skops_file, expected_sha256=sha)
        t = time.perf_counter()
        raw, outcome = modelstore.to_onnx(model, batch)
        data["onnx_convert_seconds"] = time.perf_counter() - t
        data["onnx_outcome"] = outcome
        assert raw is not None, outcome
        data["onnx_model_version"] = onnx_version = _publish_onnx(mlflow.uri, model, batch)
        onnx_sha = client.version_tags(MODEL_ONNX, onnx_version)["edgemodel.onnx.sha256"]
        onnx_file = workdir / "model.onnx"
        assert client.download_version_file(MODEL_ONNX, onnx_version, "model.onnx", onnx_file) == onnx_sha
        data["model_bytes"] = {"skops": skops_file.stat().st_size, "onnx": onnx_file.stat().st_size}

        args = {
            "skops": {"model": str(skops_file), "sha256": sha, "batch": str(workdir / "batch.npy"),
                      "out": str(workdir / "pred-skops.npy")},
            "onnx": {"model": str(onnx_file), "sha256": onnx_sha, "batch": str(workdir / "batch.npy"),
                     "out": str(workdir / "pred-onnx.npy")},
            "mlflow_client": {"uri": mlflow.uri, "name": MODEL},
            "mlflow_rest": {"uri": mlflow.uri, "name": MODEL},
            "kubernetes_client": {"kubeconfig": str(plane.kubeconfig), "namespace": namespace,
                                  "edgemodel": MODEL, "patch": patch, "pod": POD, "patches": 5},
            "kubernetes_https": {"kubeconfig": str(plane.kubeconfig), "namespace": namespace,
                                 "edgemodel": MODEL, "patch": patch, "pod": POD, "patches": 5},
        }  # fmt: skip
        variants: dict[str, Any] = {}
        for _ in range(repeats):  # interleaved, so a slow minute of the machine hits every variant
            for name, (steps, work) in VARIANTS.items():
                variants.setdefault(name, []).append(_probe(steps, work, args.get(name, {})))
        data["variants"] = {name: _median_run(runs) for name, runs in variants.items()}

        y_skops = np.load(workdir / "pred-skops.npy")
        y_onnx = np.load(workdir / "pred-onnx.npy")
        rel = float(np.max(np.abs(y_onnx - y_skops) / np.maximum(np.abs(y_skops), 1e-12)))
        data["onnx_max_relative_error"] = rel
        data["onnx_agrees"] = bool(rel <= 1e-6)

        kw = {"broker": broker, "uri": mlflow.uri, "kubeconfig": plane.kubeconfig, "namespace": namespace,
              "workdir": workdir}  # fmt: skip
        settle = 2.0 if quick else 5.0
        data["runtime"] = {
            "after": _runtime_rss(tag="after", settle=settle, **kw),
            "onnx": _runtime_rss(tag="onnx", settle=settle, model=MODEL_ONNX, **kw),
        }
        if os.environ.get("EDGEMODEL_FOOTPRINT_SLIM") == "1":
            data["venvs"] = venvs = _slim_venvs(workdir)
            for name in ("slim", "full"):
                data["runtime"][f"venv_{name}"] = _runtime_rss(
                    tag=f"venv-{name}", python=venvs[name]["python"], pythonpath="", **kw
                )
                data["runtime"][f"venv_{name}_onnx"] = _runtime_rss(
                    tag=f"venv-{name}-onnx",
                    python=venvs[name]["python"],
                    pythonpath="",
                    model=MODEL_ONNX,
                    **kw,
                )
        if not quick:
            before_tree = _before_tree(workdir)
            if before_tree is not None:
                pythonpath = os.pathsep.join([str(before_tree), str(before_tree / "runtime")])
                data["runtime"]["before"] = _runtime_rss(tag="before", pythonpath=pythonpath, **kw)
    finally:
        if before_tree is not None:
            _remove_tree(before_tree)
        plane.stop()
        mlflow.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    return _result(data, quick=quick)


def _publish_onnx(uri: str, model: Any, rows: Any) -> str:
    """Register ``model`` as :data:`MODEL_ONNX` with its ONNX file, as the trainer does; alias champion."""
    from edgemodel import registry
    from edgemodel_dev import testing

    client = registry.client(uri)
    experiment = client.get_experiment_by_name("bench-footprint-onnx")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("bench-footprint-onnx")
    )
    run_id = client.create_run(experiment_id).info.run_id
    spec = testing.SPEC
    meta = registry.ModelMeta(
        columns=spec.columns, algorithm="ridge", features=spec.features, target=spec.target,
        horizon=spec.horizon, lags=spec.lags,
    )  # fmt: skip
    version = registry.publish(client, name=MODEL_ONNX, run_id=run_id, model=model, meta=meta, onnx_rows=rows)
    client.set_terminated(run_id)
    client.set_registered_model_alias(MODEL_ONNX, "champion", version)
    return version


def _figures(data: dict[str, Any]) -> dict[str, Any]:
    """Each variant's cost over the part it is compared at (MB), and its import and work times."""
    v = data["variants"]

    def after(name: str, step: str) -> float:
        return float(next(s["rss"] for s in v[name]["steps"] if s["name"] == step))

    def import_s(name: str, step: str) -> float:
        return float(next(s["seconds"] for s in v[name]["steps"] if s["name"] == step))

    core = after("baseline", "core")
    fig: dict[str, Any] = {
        "interpreter_mb": v["baseline"]["start"] / MB,
        "core_mb": core / MB,
        "core_import_s": import_s("baseline", "core"),
    }
    for name, base_step, step in (
        ("skops", "core", "skops"),
        ("onnx", "core", "onnxruntime"),
        ("mlflow_client", "skops", "mlflow"),
        ("mlflow_rest", "skops", "mlflowapi"),
        ("kubernetes_client", "core", "kubernetes"),
        ("kubernetes_https", "core", "kubeapi"),
        ("mlflow_client_alone", "core", "mlflow"),
    ):
        base = after(name, base_step)
        fig[name] = {
            "import_mb": (after(name, step) - base) / MB,
            "with_work_mb": (v[name]["work"]["rss"] - base) / MB,
            "total_mb": v[name]["work"]["rss"] / MB,
            "import_s": import_s(name, step),
            "work_s": v[name]["work"]["seconds"],
        }
    return fig


def _result(data: dict[str, Any], *, quick: bool) -> common.Result:
    fig = data["figures"] = _figures(data)
    runtime = data["runtime"]
    after_mb = runtime["after"]["rss"] / MB
    # What the runtime would take serving ONNX: the same process without skops and scikit-learn,
    # with onnxruntime and the ONNX model instead (a projection from this run's increments).
    projected = after_mb - fig["skops"]["with_work_mb"] + fig["onnx"]["with_work_mb"]
    data["onnx_runtime_projected_mb"] = projected
    rows = [
        ["baseline: the interpreter", "–", None, None, fig["interpreter_mb"], None],
        ["baseline: + numpy, pydantic, paho, prometheus_client (core)", "interpreter",
         fig["core_mb"] - fig["interpreter_mb"], None, fig["core_mb"], fig["core_import_s"]],
    ]  # fmt: skip
    labels = {
        "skops": ("(a) skops + scikit-learn: load, predict", "core"),
        "onnx": ("(b) onnxruntime: load ONNX, predict", "core"),
        "mlflow_client": ("(c) MLflow client: alias, download", "core + skops"),
        "mlflow_rest": ("(c) REST (urllib): alias, download", "core + skops"),
        "kubernetes_client": ("(d) kubernetes client: 5 patches, GET, list", "core"),
        "kubernetes_https": ("(d) HTTPS + token: 5 patches, GET, list", "core"),
        "mlflow_client_alone": ("MLflow client imported on core alone", "core"),
    }
    for name, (label, over) in labels.items():
        f = fig[name]
        rows.append([label, over, f["import_mb"], f["with_work_mb"], f["total_mb"], f["import_s"]])
    table = common.markdown_table(
        ["variant", "measured over", "import (MB)", "import + work (MB)", "process RSS (MB)", "import (s)"],
        rows,
    )
    proc_rows = [
        ["this tree, a version without ONNX (skops + scikit-learn)", after_mb,
         runtime["after"]["ready_seconds"]],
        ["this tree, the same weights with model.onnx (onnxruntime)", runtime["onnx"]["rss"] / MB,
         runtime["onnx"]["ready_seconds"]],
    ]  # fmt: skip
    if "before" in runtime:
        proc_rows.insert(
            0, [f"before ({BEFORE})", runtime["before"]["rss"] / MB, runtime["before"]["ready_seconds"]]
        )
    venv_labels = (
        ("venv_full", "a fresh venv: the wheel and all its dependencies; skops"),
        ("venv_full_onnx", "a fresh venv: the wheel and all its dependencies; ONNX"),
        ("venv_slim", "a fresh venv: the wheel (--no-deps), the `runtime` extra; skops"),
        ("venv_slim_onnx", "a fresh venv: the wheel (--no-deps), the `runtime` extra; ONNX"),
    )
    for name, label in venv_labels:
        if name in runtime:
            proc_rows.append([label, runtime[name]["rss"] / MB, runtime[name]["ready_seconds"]])
    proc_rows.append(
        ["projection from the increments: this tree's skops runtime - (a) + (b)", projected, None]
    )
    proc_table = common.markdown_table(
        ["runtime process", "idle RSS with the model (MB)", "start to ready (s)"], proc_rows
    )
    markdown = f"""
Each variant ran {data["repeats"]}× in a fresh interpreter (interleaved; medians), doing the real
work against a real MLflow server, a real kube-apiserver and the ridge model as the trainer
registered it (`{data["model_bytes"]["skops"]:,}` bytes of skops, `{data["model_bytes"]["onnx"]:,}` of
ONNX after skl2onnx, {data["onnx_convert_seconds"]:.1f} s to convert). A batch of {data["rows"]} rows was
predicted by (a) and (b): largest relative difference **{data["onnx_max_relative_error"]:.2g}**
(at registration: {data["onnx_outcome"]})
({"agree" if data["onnx_agrees"] else "DISAGREE"} to 1e-6). VmRSS from `/proc/self/status`.

{table}

The whole runtime (`edgemodel-runtime`, the model from MLflow, a real Mosquitto, reports
to the real API server), idle once the model serves and its first report was sent:

{proc_table}
"""
    if "venvs" in data:
        venvs = data["venvs"]
        size_rows = [
            [label, venvs[name]["venv_mb"], venvs[name]["site_packages_mb"], venvs[name]["packages"]]
            for name, label in (("full", "the wheel with its dependencies"),
                                ("slim", "the wheel with --no-deps, then the `runtime` extra"))
        ]  # fmt: skip
        markdown += (
            "\nInstalled size, fresh venvs from PyPI (`du` of the files):\n\n"
            + common.markdown_table(
                ["install", "venv (MB)", "site-packages (MB)", "distributions"], size_rows
            )
            + "\n"
        )
    return common.Result("footprint", "Runtime footprint (issue 13)", markdown, data)
