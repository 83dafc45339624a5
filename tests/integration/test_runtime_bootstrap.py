"""Without a model, the runtime hands its window to the bootstrap Job through the real MLflow."""

from __future__ import annotations

import csv
import io
import json

import pytest

from edgemodel import contracts
from edgemodel.registry import client as mlflow_client
from edgemodel_dev import testing
from edgemodel_runtime import app

pytestmark = [pytest.mark.mqtt, pytest.mark.mlflow]

DEVICES = 4


def _bootstrap_runs(uri: str, name: str) -> list:
    c = mlflow_client(uri)
    experiment = c.get_experiment_by_name(contracts.window_experiment(name))
    if experiment is None:
        return []
    runs = c.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return [r for r in runs if r.data.tags.get(contracts.WINDOW_TAGS["reason"]) == "bootstrap"]


def _rows(uri: str, run_id: str) -> list[dict[str, str]]:
    path = mlflow_client(uri).download_artifacts(run_id, contracts.WINDOW_ARTIFACT)
    with open(path) as f:
        return list(csv.DictReader(io.StringIO(f.read())))


def test_window_is_uploaded_for_bootstrap_while_no_model_serves(mosquitto_broker, mlflow_server, unique_name):
    name = unique_name
    uri = mlflow_server.uri
    runs_at_report: list[int] = []
    sink = testing.RecordingSink(lambda entry: runs_at_report.append(len(_bootstrap_runs(uri, name))))
    settings = testing.for_broker(
        mosquitto_broker,
        uri,
        name,
        training_window=1000,  # min(1000, 200): the first upload needs 200 readings
        bootstrap_upload_seconds=1.0,
        edgemodel=f"default/{name}",
        pod_name="rt-0",
    )
    runtime = app.App(settings, status_sink=sink).start()
    publisher = testing.publisher_for(mosquitto_broker, name)
    reg = runtime.metrics.registry
    logged = {"result": "logged", "reason": "bootstrap"}
    data = testing.readings(DEVICES, 1000, seed=3)
    try:
        assert runtime.wait_connected(30)
        assert runtime.poller is not None
        testing.wait_for(runtime.poller.resolved.is_set, timeout=60, what="the alias lookup")

        def send(payloads: list[dict]) -> None:
            for info in [publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p)) for p in payloads]:
                info.wait_for_publish(30)

        send(data[:199])
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_readings_total") == 199, timeout=60, what="199 readings"
        )
        assert not _bootstrap_runs(uri, name)  # 199 < 200: nothing to train on yet

        send(data[199:400])
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_training_windows_total", logged) >= 1,
            timeout=60,
            what="the bootstrap window",
        )
        runs = _bootstrap_runs(uri, name)
        assert runs
        first = runs[0]
        tags = first.data.tags
        assert tags[contracts.WINDOW_TAGS["kind"]] == contracts.WINDOW_KIND
        assert tags[contracts.WINDOW_TAGS["edgemodel"]] == f"default/{name}"
        assert tags[contracts.WINDOW_TAGS["pod"]] == "rt-0"
        assert contracts.WINDOW_TAGS["model_version"] not in tags  # no model serves
        rows = _rows(uri, first.info.run_id)
        assert len(rows) >= 200
        assert list(rows[0]) == ["device", "ts", *testing.SPEC.fields]
        testing.wait_for(lambda: any(n >= 1 for n in runs_at_report), timeout=30, what="the report after it")

        # still no model: the readings that keep coming bring another upload once the period passed
        sent = 400
        while testing.sample(reg, "edgemodel_training_windows_total", logged) < 2:
            assert sent < 3000, "no second bootstrap window"
            send(data[sent : sent + 20])
            sent += 20
            testing.wait_for(
                lambda n=sent: testing.sample(reg, "edgemodel_readings_total") == n,
                timeout=60,
                what="a chunk",
            )
            testing.wait_for(lambda: not runtime.reporter.uploading, timeout=60, what="uploads to finish")
        testing.wait_for(lambda: not runtime.reporter.uploading, timeout=60, what="uploads to finish")
        uploads = testing.sample(reg, "edgemodel_training_windows_total", logged)
        assert len(_bootstrap_runs(uri, name)) == uploads

        # a model arrives: predictions start and bootstrap uploads stop
        version = testing.publish_model(uri, name)
        testing.wait_for(lambda: runtime.holder.state.version == version, timeout=60, what="model load")
        send(data[sent : sent + 400])
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_readings_total") == sent + 400,
            timeout=60,
            what="all readings",
        )
        assert testing.sample(reg, "edgemodel_predictions_total") > 0
        assert testing.sample(reg, "edgemodel_readings_without_model_total") == sent
        testing.wait_for(lambda: not runtime.reporter.uploading, timeout=60, what="uploads to finish")
        assert testing.sample(reg, "edgemodel_training_windows_total", logged) == uploads
        assert (
            testing.sample(
                reg, "edgemodel_training_windows_total", {"result": "failed", "reason": "bootstrap"}
            )
            == 0
        )
    finally:
        publisher.close()
        runtime.stop()
