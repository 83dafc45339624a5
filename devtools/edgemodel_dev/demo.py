"""The whole self-healing loop, for real, on one machine with no Docker and no cluster.

What runs, all as real processes on 127.0.0.1:

- a Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok);
- Mosquitto and an MLflow tracking server;
- ``edgemodel-operator``, under its own RBAC rules;
- the runtime and the trainer, as local processes standing in for the Pods and Jobs the
  operator created (kwok marks those Pods Running; :mod:`edgemodel_dev.harness.pods` runs
  their programs with their configuration and records Job outcomes on the Pods);
- the sensor simulator, which injects drift.

It prints progress as it happens and ends with a summary: when drift began and was
detected, the Job, the new version, the RMSE before and after, and the time to heal. It
also writes ``report.html`` in the work folder: the RMSE over time with the injection,
detection, retraining and promotion marked, drawn by :mod:`edgemodel_backtest.report`,
the same page ``edgemodel backtest --report`` writes.

I/O: everything; this is the top of the stack.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import kubernetes
import yaml
from mlflow import tracking as mlflow_tracking

from edgemodel import api, contracts
from edgemodel_backtest import figures, report
from edgemodel_dev.harness import (
    binaries,
    controlplane,
    mlflowserver,
    mosquitto,
    operatorprocess,
    pods,
    processes,
)
from edgemodel_simulator import sensors

__all__ = ["Timeline", "main", "report_page", "run"]

NAMESPACE = "edgemodel-demo"
NAME = "line1-temperature"
THRESHOLD = 1.0
WINDOW = 60
DEVICES = 3
RATE = 20.0  # readings per second per device


@dataclasses.dataclass
class Timeline:
    """Wall-clock seconds since the demo started, and what was measured."""

    drift_started: float | None = None
    drift_detected: float | None = None
    job_started: float | None = None
    job_name: str | None = None
    training_done: float | None = None
    promoted: float | None = None
    reloaded: float | None = None
    healed: float | None = None
    version_before: str | None = None
    version_after: str | None = None
    rmse_before: float | None = None
    rmse_drifted: float | None = None
    rmse_after: float | None = None
    trainer: dict[str, Any] = dataclasses.field(default_factory=dict)
    rmse_samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    """``(seconds, status.drift.rmse)`` as the operator summarised it, from Ready to healed."""

    def sample(self, t: float, rmse: float | None) -> None:
        """Record the summarised RMSE at ``t`` when it changed (or a second passed)."""
        if rmse is None:
            return
        if self.rmse_samples and self.rmse_samples[-1][1] == rmse and t - self.rmse_samples[-1][0] < 1.0:
            return
        self.rmse_samples.append((round(t, 2), rmse))

    @property
    def time_to_heal(self) -> float | None:
        if self.healed is None or self.drift_started is None:
            return None
        return self.healed - self.drift_started

    def breakdown(self) -> dict[str, float | None]:
        def span(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round(b - a, 2)

        return {
            "detection": span(self.drift_started, self.drift_detected),
            "job_start": span(self.drift_detected, self.job_started),
            "training": span(self.job_started, self.training_done),
            "data_wait_and_load": (self.trainer.get("stages") or {}).get("load_seconds"),
            "registration_and_gating": self.trainer.get("register_and_gate_seconds"),
            "reload": span(self.training_done, self.reloaded),
            "recovery": span(self.reloaded, self.healed),
            "time_to_heal": span(self.drift_started, self.healed),
        }

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["breakdown"] = self.breakdown()
        return out


class _Clock:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.start = time.monotonic()
        self._say = say

    def now(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        self._say(f"[{self.now():6.1f}s] {message}")


def _edgemodel(broker: mosquitto.Mosquitto, mlflow_uri: str, history: pathlib.Path) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "sensors": {
                "topics": ["plant/line1/+/telemetry"],
                "features": ["temperature", "humidity"],
                "target": "temperature",
                "deviceField": "device_id",
                "lags": 3,
            },
            "drift": {"threshold": THRESHOLD, "window": WINDOW},
            "scaling": {"minReplicas": 1, "maxReplicas": 1},
            "retraining": {"cooldownSeconds": 20, "trainingWindow": 600, "promotionMargin": 0.02},
            "model": {"algorithm": "ridge", "trackingUri": mlflow_uri, "bootstrapData": str(history)},
            "broker": {
                "host": "127.0.0.1",
                "port": broker.port,
                "credentialsSecret": {"name": "demo-broker"},
            },
        },
    }


def _status(client: kubernetes.client.ApiClient) -> api.EdgeModelStatus:
    body = kubernetes.client.CustomObjectsApi(client).get_namespaced_custom_object(
        api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, NAME
    )
    return api.EdgeModelStatus.model_validate(cast(dict[str, Any], body).get("status") or {})


def _find_condition(st: api.EdgeModelStatus, type_: str) -> api.Condition | None:
    return next((c for c in st.conditions if c.type == type_), None)


def _condition(st: api.EdgeModelStatus, type_: str) -> str:
    found = _find_condition(st, type_)
    return "Unknown" if found is None else found.status


def _jobs(client: kubernetes.client.ApiClient) -> list[str]:
    items = (
        kubernetes.client.BatchV1Api(client)
        .list_namespaced_job(NAMESPACE, label_selector=f"edgeml.dev/edgemodel={NAME}")
        .items
    )
    return sorted(str(j.metadata.name) for j in items if j.metadata is not None)


def _wait_status(
    client: kubernetes.client.ApiClient,
    predicate: Callable[[api.EdgeModelStatus], bool],
    *,
    timeout: float,
    what: str,
) -> api.EdgeModelStatus:
    seen: list[api.EdgeModelStatus] = []

    def check() -> bool:
        st = _status(client)
        seen.append(st)
        return predicate(st)

    processes.wait_until(check, timeout=timeout, interval=0.1, what=what)
    return seen[-1]


def _trainer_timings(mlflow_uri: str, message: str) -> dict[str, Any]:
    """The trainer's own stage timings, from its MLflow run."""
    result = contracts.TrainingResult.from_termination_message(message)
    out: dict[str, Any] = {
        "outcome": result.outcome,
        "version": result.version,
        "reason": result.reason,
        "holdout_rmse": result.holdout_rmse,
        "champion_rmse": result.champion_rmse,
        "duration_seconds": result.duration_seconds,
    }
    if result.run_id:
        metrics = mlflow_tracking.MlflowClient(mlflow_uri).get_run(result.run_id).data.metrics
        out["stages"] = {k: round(v, 3) for k, v in metrics.items() if k.endswith("_seconds")}
        gate = sum(
            metrics.get(k, 0.0)
            for k in ("champion_seconds", "register_seconds", "verify_seconds", "promote_seconds")
        )
        out["register_and_gate_seconds"] = round(gate, 3)
    return out


@contextlib.contextmanager
def _stack(workdir: pathlib.Path, clock: _Clock) -> Iterator[dict[str, Any]]:
    """Start the control plane, Mosquitto, MLflow and the operator; stop them all afterwards."""
    with contextlib.ExitStack() as stack:
        clock.say("Starting the control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok")
        plane = controlplane.ControlPlane(workdir / "cluster").start()
        stack.callback(plane.stop)
        clock.say(f"Control plane ready at {plane.server}; kubeconfig {plane.kubeconfig}")
        broker = mosquitto.Mosquitto(workdir / "mosquitto").start()
        stack.callback(broker.stop)
        clock.say(f"Mosquitto ready on 127.0.0.1:{broker.port}")
        mlflow = mlflowserver.MlflowServer(workdir / "mlflow").start()
        stack.callback(mlflow.stop)
        clock.say(f"MLflow ready at {mlflow.uri}")
        plane.kubectl("apply", "--server-side", "-f", str(binaries.repo_root() / "crds" / "edgemodel.yaml"))
        plane.kubectl("wait", "--for=condition=Established", "crd/edgemodels.edgeml.dev", "--timeout=60s")
        plane.kubectl("create", "namespace", NAMESPACE)
        operator = operatorprocess.OperatorProcess(
            plane,
            workdir / "operator",
            env={
                "EDGEMODEL_NAMESPACE": NAMESPACE,
                "EDGEMODEL_LEASE_NAMESPACE": NAMESPACE,
                "EDGEMODEL_MLFLOW_TRACKING_URI": mlflow.uri,
                "EDGEMODEL_RESYNC_SECONDS": "10",
                "EDGEMODEL_WINDOW_SINCE_SLACK_SECONDS": "5",
            },
        ).start()
        stack.callback(operator.stop)
        clock.say("edgemodel-operator running under its own ServiceAccount and RBAC rules")
        yield {"plane": plane, "broker": broker, "mlflow": mlflow, "operator": operator, "stack": stack}


def run(
    workdir: pathlib.Path,
    *,
    keep: bool = False,
    drift: str = "abrupt",
    say: Callable[[str], None] = print,
) -> Timeline:
    """Run the loop once and return its timeline; everything started is stopped unless ``keep``."""
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    clock = _Clock(say)
    timeline = Timeline()
    with _stack(workdir, clock) as parts:
        plane: controlplane.ControlPlane = parts["plane"]
        broker: mosquitto.Mosquitto = parts["broker"]
        mlflow: mlflowserver.MlflowServer = parts["mlflow"]
        stack: contextlib.ExitStack = parts["stack"]
        client = plane.api_client()

        # The site's broker credentials, and a day of history for the first model.
        kubernetes.client.CoreV1Api(client).create_namespaced_secret(
            NAMESPACE,
            cast(
                Any,
                {
                    "metadata": {"name": "demo-broker", "labels": {"edgeml.dev/use": "broker"}},
                    "stringData": {"username": broker.username, "password": broker.password},
                },
            ),
        )
        plant = sensors.Plant(devices=DEVICES, seed=7)
        history = sensors.write_history(plant, workdir / "history.csv", readings_per_device=400)
        manifest = _edgemodel(broker, mlflow.uri, history)
        (workdir / "edgemodel.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
        plane.kubectl("apply", "-f", str(workdir / "edgemodel.yaml"))
        clock.say(f"Applied EdgeModel {NAMESPACE}/{NAME} (threshold {THRESHOLD}, window {WINDOW})")

        # Bootstrap: the operator starts a Job; its trainer runs here and registers version 1.
        processes.wait_until(
            lambda: f"{NAME}-bootstrap-1" in _jobs(client), timeout=60, what="the bootstrap Job"
        )
        clock.say(f"Operator started Job {NAME}-bootstrap-1 (no model yet); running its trainer")
        code, message = pods.run_job(client, NAMESPACE, f"{NAME}-bootstrap-1", workdir / "jobs")
        first = contracts.TrainingResult.from_termination_message(message)
        if code != 0:
            raise RuntimeError(f"the bootstrap training failed: {first.reason}")
        clock.say(
            f"Bootstrap trained version {first.version} "
            f"(holdout RMSE {_fmt_rmse(first.holdout_rmse)}); champion"
        )

        # The inference replica: the runtime runs with the Pod's configuration.
        processes.wait_until(lambda: _inference_pod(client) is not None, timeout=60, what="the inference Pod")
        pod = _inference_pod(client)
        assert pod is not None
        runtime_kubeconfig = plane.kubeconfig_for_service_account(NAMESPACE, f"{NAME}-runtime")
        runtime = pods.start_pod_process(
            client,
            NAMESPACE,
            pod,
            workdir / "runtime",
            env={
                "KUBECONFIG": str(runtime_kubeconfig),
                "EDGEMODEL_HTTP_BIND": "127.0.0.1",
                "EDGEMODEL_HTTP_PORT": str(processes.free_port()),
                "EDGEMODEL_MODEL_POLL_SECONDS": "0.5",
                "EDGEMODEL_REPORT_INTERVAL_SECONDS": "1",
            },
        )
        stack.callback(runtime.stop)
        clock.say(
            f"Runtime running as Pod {pod} (its own ServiceAccount: may patch only this EdgeModel's status)"
        )

        publisher = sensors.Publisher(
            plant,
            broker=sensors.Broker("127.0.0.1", broker.port, broker.username, broker.password),
            topic_template="plant/line1/{device}/telemetry",
            rate=RATE,
        )
        publisher.start()
        stack.callback(publisher.stop)
        clock.say(f"Simulator publishing {DEVICES} devices × {RATE:.0f} readings/s")

        st = _wait_status(
            client,
            lambda s: _condition(s, "Ready") == "True" and _condition(s, "Drifted") == "False",
            timeout=120,
            what="a healthy, Ready EdgeModel",
        )
        timeline.version_before = st.model.version
        timeline.rmse_before = st.drift.rmse
        timeline.sample(clock.now(), st.drift.rmse)
        clock.say(
            f"Ready: version {st.model.version} serving, "
            f"RMSE {_fmt_rmse(st.drift.rmse)} < threshold {THRESHOLD}"
        )

        # Drift.
        plant.inject(drift)
        timeline.drift_started = clock.now()
        clock.say(f"Injected {drift} drift into the plant")
        _watch(client, clock, timeline, workdir, mlflow.uri)
        clock.say(
            f"Healed: version {timeline.version_after} serving, RMSE {timeline.rmse_after:.3f} < {THRESHOLD}"
        )
        if keep:
            _explore(plane, say)
    return timeline


def _inference_pod(client: kubernetes.client.ApiClient) -> str | None:
    items = (
        kubernetes.client.CoreV1Api(client)
        .list_namespaced_pod(
            NAMESPACE, label_selector=f"edgeml.dev/edgemodel={NAME},app.kubernetes.io/component=inference"
        )
        .items
    )
    running = [
        str(p.metadata.name)
        for p in items
        if p.metadata is not None
        and p.status is not None
        and p.status.phase == "Running"
        and not p.metadata.deletion_timestamp
    ]
    return running[0] if running else None


def _watch(
    client: kubernetes.client.ApiClient,
    clock: _Clock,
    timeline: Timeline,
    workdir: pathlib.Path,
    mlflow_uri: str,
) -> None:
    """Follow the EdgeModel through detection, retraining, promotion, reload and recovery."""
    trainer: dict[str, Any] = {}
    runner: threading.Thread | None = None
    handled: set[str] = set()  # Jobs whose trainer already ran here
    drifted_seen = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        st = _status(client)
        timeline.sample(clock.now(), st.drift.rmse)
        if not drifted_seen and _condition(st, "Drifted") == "True":
            drifted_seen = True
            if timeline.drift_detected is None:
                timeline.drift_detected = clock.now()
            timeline.rmse_drifted = st.drift.rmse
            drifted = _find_condition(st, "Drifted")
            reason = "" if drifted is None else drifted.reason
            clock.say(
                f"Drifted=True ({reason}): RMSE {_fmt_rmse(st.drift.rmse)}, threshold {THRESHOLD} "
                f"({st.drift.replica})"
            )
        if timeline.job_started is None:
            retrains = [j for j in _jobs(client) if "-retrain-" in j and j not in handled]
            if retrains:
                timeline.job_started = clock.now()
                # The operator writes the Job before the status that says Drifted=True, and
                # starts it only on drift it detected: seeing the Job is seeing the detection.
                if timeline.drift_detected is None:
                    timeline.drift_detected = timeline.job_started
                timeline.job_name = retrains[-1]
                handled.add(retrains[-1])
                clock.say(f"Retraining=True: operator started Job {timeline.job_name}; running its trainer")

                def train(job: str = retrains[-1]) -> None:
                    try:
                        code, message = pods.run_job(client, NAMESPACE, job, workdir / "jobs")
                        trainer.update(_trainer_timings(mlflow_uri, message), exit_code=code)
                    except Exception as exc:  # noqa: BLE001 - shown, and the operator retries
                        trainer.update(outcome="Failed", reason=f"{type(exc).__name__}: {exc}")
                    timeline.training_done = clock.now()

                runner = threading.Thread(target=train, name="trainer-job", daemon=True)
                runner.start()
        if timeline.training_done is not None and not timeline.trainer:
            timeline.trainer = dict(trainer)
            clock.say(
                f"Trainer: {trainer.get('outcome')} version {trainer.get('version')} "
                f"(holdout RMSE {_fmt_rmse(trainer.get('holdout_rmse'))}, "
                f"champion {_fmt_rmse(trainer.get('champion_rmse'))})"
            )
            if trainer.get("outcome") == "Promoted":
                timeline.promoted = timeline.training_done
                timeline.version_after = trainer.get("version")
            else:
                # A rejected challenger: the operator will retrain after its backoff; follow that one.
                timeline.job_started = timeline.training_done = None
                timeline.trainer = {}
                trainer.clear()
        if (
            timeline.reloaded is None
            and timeline.version_after is not None
            and st.model.version == timeline.version_after
        ):
            timeline.reloaded = clock.now()
            clock.say(f"Runtime hot-reloaded version {timeline.version_after}; no reading dropped")
        if (
            timeline.reloaded is not None
            and _condition(st, "Drifted") == "False"
            and st.drift.rmse is not None
            and st.drift.rmse < THRESHOLD
        ):
            timeline.healed = clock.now()
            timeline.rmse_after = st.drift.rmse
            break
        time.sleep(0.1)
    if runner is not None:
        runner.join(timeout=5)
    if timeline.healed is None:
        raise TimeoutError(f"the EdgeModel did not heal within 10 minutes: {json.dumps(timeline.to_json())}")


def _fmt_rmse(rmse: float | None) -> str:
    return "n/a" if rmse is None else f"{rmse:.3f}"


def _explore(plane: controlplane.ControlPlane, say: Callable[[str], None]) -> None:
    kubectl = binaries.find("kubectl")
    say("")
    say("Everything keeps running. In another shell:")
    say(f"  export KUBECONFIG={plane.kubeconfig}")
    say(f"  {kubectl} get edgemodels -n {NAMESPACE} -o wide")
    say(f"  {kubectl} get events -n {NAMESPACE} --sort-by=.lastTimestamp")
    say("Press Ctrl-C to stop.")
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(1)


def summary(timeline: Timeline) -> str:
    b = timeline.breakdown()

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:6.2f} s"

    lines = [
        "",
        "EdgeModel healed itself",
        f"  drift began           t = {fmt(timeline.drift_started)}",
        f"  drift detected        t = {fmt(timeline.drift_detected)}   (+{fmt(b['detection'])})",
        f"  retraining Job        {timeline.job_name} started +{fmt(b['job_start'])} after detection",
        f"  training              {fmt(b['training'])}"
        f"  (waiting for and loading the changed plant's data {fmt(b['data_wait_and_load'])},"
        f" registration and gating {fmt(b['registration_and_gating'])})",
        f"  new version           {timeline.version_before} -> {timeline.version_after}",
        f"  hot reload            {fmt(b['reload'])} after promotion",
        f"  RMSE                  before drift {timeline.rmse_before:.3f}, "
        f"drifted {timeline.rmse_drifted:.3f}, after {timeline.rmse_after:.3f} (threshold {THRESHOLD})"
        if None not in (timeline.rmse_before, timeline.rmse_drifted, timeline.rmse_after)
        else "  RMSE n/a",
        f"  time to heal          {fmt(b['time_to_heal'])}",
    ]
    return "\n".join(lines)


def report_page(timeline: Timeline) -> str:
    """The run as one self-contained HTML page (:func:`edgemodel_backtest.report.render`)."""
    moments = [
        (timeline.drift_started, "injection", "the simulator changed the plant", None),
        (timeline.drift_detected, "detection", "Drifted=True", timeline.version_before),
        (timeline.job_started, "retrain", f"Job {timeline.job_name}", None),
        (timeline.promoted, "promotion", str(timeline.trainer.get("reason") or ""), timeline.version_after),
    ]
    events = [
        figures.Event(t, kind, detail, version) for t, kind, detail, version in moments if t is not None
    ]
    live = figures.from_series(
        name="loop",
        label="EdgeModel loop, live: status.drift.rmse as the operator summarised it",
        rolling=timeline.rmse_samples,
        events=events,
        threshold=THRESHOLD,
        window=WINDOW,
    )
    return report.render(
        [live],
        title="edgemodel demo: the self-healing loop, live",
        subtitle=(
            f"EdgeModel {NAMESPACE}/{NAME}: {DEVICES} devices at {RATE:.0f} readings/s; "
            f"threshold {THRESHOLD} over {WINDOW} outcomes; seconds since the demo started"
        ),
        notes=[line.strip() for line in summary(timeline).splitlines() if line.strip()],
        relative_time=True,
    )


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(*, workdir: pathlib.Path, keep: bool, drift: str, json_path: pathlib.Path | None) -> int:
    # SIGTERM unwinds like Ctrl-C, so every process the demo started is stopped.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    timeline = run(workdir, keep=keep, drift=drift)
    print(summary(timeline))
    page = workdir.resolve() / "report.html"
    page.write_text(report_page(timeline), encoding="utf-8")
    print(f"\nReport: {page}")
    if json_path is not None:
        json_path.write_text(json.dumps(timeline.to_json(), indent=2))
    return 0
