"""Run the program a Pod stands for as a local process, with that Pod's configuration.

kwok schedules Pods and marks them Running, but nothing runs inside them. Where a test
or the demo needs the real program (the trainer of a Job, the runtime of an inference
replica), these helpers read the Pod's command, arguments and environment from the API
server, resolve Secret, ConfigMap and downward-API references, run the same console
script locally, and, for Jobs, record the real exit code and termination message on the
Pod's status, so the Job controller completes or fails the Job as a kubelet would.

I/O: the Kubernetes API, processes and files.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Mapping
from typing import Any

import kubernetes

from edgemodel_dev.harness import processes

__all__ = ["complete_pod", "job_pod", "resolve_env", "run_job", "start_pod_process"]


def _core(client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client)


def _pod_dict(client: kubernetes.client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    pod = _core(client).read_namespaced_pod(name, namespace)
    return dict(client.sanitize_for_serialization(pod))  # type: ignore[no-untyped-call]


def job_pod(client: kubernetes.client.ApiClient, namespace: str, job: str, *, timeout: float = 60) -> str:
    """The name of the Job's Pod once it is Running on a (kwok) node."""
    found: list[str] = []

    def running() -> bool:
        pods = _core(client).list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
        )
        live = [p for p in pods.items if p.status and p.status.phase == "Running"]
        if live:
            found.append(str(live[0].metadata.name if live[0].metadata else ""))
            return True
        return False

    processes.wait_until(running, timeout=timeout, what=f"a Running Pod of Job {job}")
    return found[0]


def resolve_env(
    client: kubernetes.client.ApiClient, pod: Mapping[str, Any], container: Mapping[str, Any]
) -> dict[str, str]:
    """The container's environment as a kubelet would build it."""
    namespace = pod["metadata"]["namespace"]
    core = _core(client)
    out: dict[str, str] = {}
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            out[name] = str(var["value"])
            continue
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            data = core.read_namespaced_secret(ref["name"], namespace).data or {}
            if ref.get("optional") and ref["key"] not in data:
                continue  # as the kubelet: an optional key that is absent sets no variable
            out[name] = base64.b64decode(data[ref["key"]]).decode()
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            out[name] = str((core.read_namespaced_config_map(ref["name"], namespace).data or {})[ref["key"]])
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            out[name] = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": namespace}.get(
                path, ""
            )
    return out


def _script(command: str) -> str:
    found = shutil.which(command, path=str(pathlib.Path(sys.executable).parent))
    if found is None:
        raise FileNotFoundError(f"{command} is not installed beside {sys.executable}")
    return found


def _materialise_config_maps(
    client: kubernetes.client.ApiClient,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    root: pathlib.Path,
) -> dict[str, str]:
    """Write ConfigMap volumes under ``root``; return a map of mount path to local folder."""
    namespace = pod["metadata"]["namespace"]
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    mounts: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"]) or {}
        if "configMap" not in volume:
            continue  # scratch volumes (emptyDir) are the local file system's own folders
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        data = _core(client).read_namespaced_config_map(volume["configMap"]["name"], namespace).data or {}
        for key, value in data.items():
            (local / key).write_text(value)
        mounts[mount["mountPath"]] = str(local)
    return mounts


def _rewrite(value: str, mounts: Mapping[str, str]) -> str:
    for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount_path or value.startswith(mount_path + "/"):
            return local + value[len(mount_path) :]
    return value


def start_pod_process(
    client: kubernetes.client.ApiClient,
    namespace: str,
    pod_name: str,
    workdir: pathlib.Path,
    *,
    env: Mapping[str, str] | None = None,
    container_name: str | None = None,
) -> processes.ManagedProcess:
    """Start the program of one container of a Pod locally; the caller stops it."""
    pod = _pod_dict(client, namespace, pod_name)
    containers = pod["spec"]["containers"]
    container = next(c for c in containers if container_name in (None, c["name"]))
    mounts = _materialise_config_maps(client, pod, container, workdir / "volumes")
    resolved = {k: _rewrite(v, mounts) for k, v in resolve_env(client, pod, container).items()}
    command = list(container.get("command") or [])
    args = [_rewrite(a, mounts) for a in container.get("args") or []]
    full_env = dict(os.environ)
    full_env.update(resolved)
    full_env.update(env or {})
    argv = [_script(command[0]), *command[1:], *args]
    return processes.ManagedProcess(
        f"pod {namespace}/{pod_name}", argv, log_path=workdir / f"{pod_name}.log", env=full_env
    ).start()


def complete_pod(
    client: kubernetes.client.ApiClient,
    namespace: str,
    pod_name: str,
    *,
    exit_code: int,
    message: str,
    container: str = "trainer",
) -> None:
    """Record a finished container on the Pod's status, as the kubelet would."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod = _pod_dict(client, namespace, pod_name)
    statuses = []
    for current in (pod.get("status") or {}).get("containerStatuses") or []:
        cs = current
        if cs["name"] == container:
            cs = {
                **current,
                "ready": False,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": exit_code,
                        "reason": "Completed" if exit_code == 0 else "Error",
                        "message": message,
                        "startedAt": (cs.get("state") or {}).get("running", {}).get("startedAt", now),
                        "finishedAt": now,
                    }
                },
            }
        statuses.append(cs)
    patch = {
        "status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": statuses,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {
                    "type": "ContainersReady",
                    "status": "False",
                    "reason": "PodCompleted",
                    "lastTransitionTime": now,
                },
            ],
        }
    }
    _core(client).patch_namespaced_pod_status(pod_name, namespace, patch)


def run_job(
    client: kubernetes.client.ApiClient,
    namespace: str,
    job: str,
    workdir: pathlib.Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, str]:
    """Run a Job's trainer locally to the end and record the outcome on its Pod.

    Returns the exit code and the termination message.
    """
    pod_name = job_pod(client, namespace, job)
    workdir.mkdir(parents=True, exist_ok=True)
    termination = workdir / f"{pod_name}.termination-log"
    termination.unlink(missing_ok=True)
    proc = start_pod_process(
        client,
        namespace,
        pod_name,
        workdir,
        env={**(env or {}), "EDGEMODEL_TERMINATION_LOG": str(termination)},
    )
    try:
        processes.wait_until(
            lambda: not proc.running, timeout=timeout, interval=0.2, what=f"Job {job} to finish"
        )
    finally:
        code = proc.stop()
    exit_code = 1 if code is None else code
    message = termination.read_text() if termination.exists() else proc.log_tail(20)[-4000:]
    complete_pod(client, namespace, pod_name, exit_code=exit_code, message=message)
    return exit_code, message


def result_of(message: str) -> dict[str, Any]:
    """The trainer's result from a termination message."""
    return dict(json.loads(message))
