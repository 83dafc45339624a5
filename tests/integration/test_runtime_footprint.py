"""Issue 13, footprint: the serving runtime loads neither the MLflow nor the kubernetes client,
and, serving a version's ONNX file, neither scikit-learn nor skops.

A fresh interpreter starts the runtime as its CLI does, serving a model registered in a
real MLflow and reporting to a real API server with a ServiceAccount token (a kubeconfig,
as the harness gives Pods); once the model serves and a report was sent, it lists which
of those clients are in ``sys.modules``. The ``runtime-slim`` contract in ``.importlinter``
forbids the imports statically; this checks what a running process actually loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgemodel_dev import testing
from edgemodel_dev.harness import processes
from tests.integration import edgemodels
from tests.integration.test_runtime_onnx import publish_onnx_model
from tests.integration.test_runtime_report import POD, _edgemodel, _runtime_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.mqtt, pytest.mark.mlflow]

SCRIPT = """
import json, os, sys, time
from edgemodel_runtime import app, config, main

settings = config.load(main.parser().parse_args(sys.argv[1:]), os.environ)
runtime = app.App(settings).start()
try:
    deadline = time.monotonic() + 120
    registry = runtime.metrics.registry
    while time.monotonic() < deadline:
        sent = registry.get_sample_value("edgemodel_status_reports_total", {"result": "sent"}) or 0
        if runtime.holder.state.version is not None and sent >= 1:
            break
        time.sleep(0.1)
    watched = {"mlflow", "kubernetes", "kopf", "sklearn", "skops", "scipy", "pandas", "onnxruntime"}
    loaded = sorted({m.split(".")[0] for m in sys.modules} & watched)
    print(json.dumps({"version": runtime.holder.state.version, "sent": sent, "loaded": loaded}))
finally:
    runtime.stop()
"""


def _serve(cluster, namespace, api_client, broker, mlflow_server, name, publish) -> dict:
    """Serve the version ``publish`` registers in a fresh interpreter, report once; what it loaded."""
    edgemodels.create(api_client, namespace, name, _edgemodel(name)["spec"])
    version = publish(mlflow_server.uri, name)
    kubeconfig = _runtime_kubeconfig(cluster, namespace)
    b = broker
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": POD,
        "POD_NAMESPACE": namespace,
        "MQTT_USERNAME": b.username,
        "MQTT_PASSWORD": b.password,
    }
    argv = [
        "--topics", f"{name}/sensors/+", "--features", ",".join(testing.FEATURES), "--target", testing.TARGET,
        "--drift-threshold", "1.5", "--broker-host", b.host, "--broker-port", str(b.port),
        "--mlflow-tracking-uri", mlflow_server.uri, "--model-name", name,
        "--edgemodel", f"{namespace}/{name}",
        "--http-bind", "127.0.0.1", "--http-port", str(processes.free_port()), "--client-id", name,
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["version"] == version, proc.stderr[-3000:]
    assert result["sent"] >= 1, proc.stderr[-3000:]  # a report the API server accepted (then removed on stop)
    return result


def test_the_serving_runtime_imports_neither_mlflow_nor_kubernetes(
    cluster, namespace, api_client, mosquitto_broker, mlflow_server, unique_name
):
    result = _serve(
        cluster, namespace, api_client, mosquitto_broker, mlflow_server, unique_name, testing.publish_model
    )
    assert not set(result["loaded"]) & {"mlflow", "kubernetes", "kopf"}
    assert {"sklearn", "skops"} <= set(result["loaded"])  # a version without ONNX: the skops fallback


def test_a_runtime_serving_onnx_imports_neither_scikit_learn_nor_skops(
    cluster, namespace, api_client, mosquitto_broker, mlflow_server, unique_name
):
    result = _serve(
        cluster, namespace, api_client, mosquitto_broker, mlflow_server, unique_name, publish_onnx_model
    )
    assert result["loaded"] == ["onnxruntime"]
