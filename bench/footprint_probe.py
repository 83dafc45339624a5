# ruff: noqa: PLC0415 - every import is a measured step
"""One footprint variant in a fresh interpreter: import steps, then the real work; VmRSS after each.

``python -m bench.footprint_probe '<json>'`` with ``{"steps": [...], "work": name, "args": {...}}``;
prints one JSON line: ``{"start": rss, "steps": [{"name", "rss", "seconds"}], "work": {...}}``.
Only the standard library is imported before the first step, so the start is the bare
interpreter (plus this module's json, time, pathlib, hashlib).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys
import time
from typing import Any


def rss() -> int:
    """This process' VmRSS in bytes."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _import(step: str) -> None:
    if step == "core":  # what serving cannot do without: the runtime's unavoidable imports
        import numpy
        import paho.mqtt.client
        import prometheus_client
        import pydantic

        from edgemodel import api

        del numpy, paho, prometheus_client, pydantic, api
    elif step == "skops":  # the model's library, as the runtime loads it (modelstore imports it lazily)
        import skops.io

        from edgemodel import modelstore

        del modelstore, skops
    elif step == "onnxruntime":
        import onnxruntime

        del onnxruntime
    elif step == "mlflow":  # what the runtime imported before issue 13: the client and its artifacts
        import mlflow.artifacts
        from mlflow.tracking import MlflowClient

        del mlflow, MlflowClient
    elif step == "mlflowapi":
        from edgemodel_runtime import mlflowapi

        del mlflowapi
    elif step == "kubernetes":
        from kubernetes import client, config

        del client, config
    elif step == "kubeapi":
        from edgemodel_runtime import kubeapi

        del kubeapi
    elif step == "runtime":  # the whole runtime as its CLI imports it
        from edgemodel_runtime import app, main

        del app, main
    else:
        raise SystemExit(f"unknown step {step!r}")


def _sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _work(name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "none":
        return {}
    if name == "predict-skops":
        import numpy as np

        from edgemodel import modelstore

        model = modelstore.load(pathlib.Path(args["model"]), expected_sha256=args["sha256"])
        x = np.load(args["batch"])
        y = np.asarray(model.predict(x), dtype=np.float64)
        np.save(args["out"], y)
        return {"rows": len(y)}
    if name == "predict-onnx":
        import numpy as np
        import onnxruntime

        path = pathlib.Path(args["model"])
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() != args["sha256"]:  # checked before the graph is parsed
            raise SystemExit("SHA-256 mismatch")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
        x = np.load(args["batch"])
        y = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], dtype=np.float64).ravel()
        np.save(args["out"], y)
        return {"rows": len(y)}
    if name == "fetch-mlflow":  # as edgemodel.registry.load_version did, without parsing the model
        import tempfile

        import mlflow.artifacts
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=args["uri"], registry_uri=args["uri"])
        version = str(client.get_model_version_by_alias(args["name"], "champion").version)
        mv = client.get_model_version(args["name"], version)
        with tempfile.TemporaryDirectory() as tmp:
            local = pathlib.Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=str(mv.source), dst_path=tmp, tracking_uri=args["uri"]
                )
            )
            ok = _sha256(local / "model.skops") == mv.tags["edgemodel.sha256"]
        return {"version": version, "sha256_ok": ok}
    if name == "fetch-rest":
        import tempfile

        from edgemodel_runtime import mlflowapi

        api = mlflowapi.Client(args["uri"])
        version = api.resolve_alias(args["name"], "champion")
        assert version is not None
        expected = api.version_tags(args["name"], version)["edgemodel.sha256"]
        with tempfile.TemporaryDirectory() as tmp:
            actual = api.download_version_file(
                args["name"], version, "model.skops", pathlib.Path(tmp) / "model.skops"
            )
            api.download_version_file(args["name"], version, "edgemodel.json", pathlib.Path(tmp) / "m.json")
        return {"version": version, "sha256_ok": actual == expected}
    if name == "patch-kubernetes":  # as KubernetesSink and EndpointSliceMembers did before issue 13
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=args["kubeconfig"])
        custom = client.CustomObjectsApi(api_client)
        for _ in range(args["patches"]):
            custom.patch_namespaced_custom_object_status(
                "edgeml.dev", "v1alpha1", args["namespace"], "edgemodels", args["edgemodel"],
                args["patch"], _content_type="application/merge-patch+json",
            )  # fmt: skip
        obj = custom.get_namespaced_custom_object_status(
            "edgeml.dev", "v1alpha1", args["namespace"], "edgemodels", args["edgemodel"]
        )
        slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
            args["namespace"], label_selector="kubernetes.io/service-name=footprint", _preload_content=False
        )
        json.loads(slices.data)
        return {"reported": args["pod"] in obj["status"]["replicaDrift"]}
    if name == "patch-https":
        from edgemodel_runtime import kubeapi

        api = kubeapi.from_kubeconfig(pathlib.Path(args["kubeconfig"]))
        path = kubeapi.custom_object_path(
            "edgeml.dev", "v1alpha1", args["namespace"], "edgemodels", args["edgemodel"]
        )
        for _ in range(args["patches"]):
            api.merge_patch(path + "/status", args["patch"])
        obj = api.request("GET", path + "/status")
        api.list_endpoint_slices(args["namespace"], label_selector="kubernetes.io/service-name=footprint")
        return {"reported": args["pod"] in obj["status"]["replicaDrift"]}
    raise SystemExit(f"unknown work {name!r}")


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    out: dict[str, Any] = {"start": rss(), "steps": []}
    for step in spec["steps"]:
        t = time.perf_counter()
        _import(step)
        out["steps"].append({"name": step, "rss": rss(), "seconds": time.perf_counter() - t})
    t = time.perf_counter()
    result = _work(spec.get("work", "none"), spec.get("args", {}))
    out["work"] = {
        "name": spec.get("work", "none"),
        "rss": rss(),
        "seconds": time.perf_counter() - t,
        **result,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
