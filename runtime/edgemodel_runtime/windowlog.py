"""Log a training window to MLflow, where the trainer finds it (the I/O half of ``window``).

The run goes to the experiment :func:`edgemodel.contracts.window_experiment`, with the
CSV artifact :data:`edgemodel.contracts.WINDOW_ARTIFACT` (columns ``device``, ``ts``, then
the fields of the feature spec, oldest reading first) and the tags of
:data:`edgemodel.contracts.WINDOW_TAGS`.
"""

from __future__ import annotations

import pathlib
import tempfile
from collections.abc import Sequence

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edgemodel import contracts
from edgemodel_runtime import payloads
from edgemodel_runtime.window import to_csv

__all__ = ["upload"]


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # another replica created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def upload(
    client: MlflowClient,
    readings: Sequence[payloads.Reading],
    *,
    fields: Sequence[str],
    model_name: str,
    edgemodel: str | None,
    pod: str | None,
    reason: str,
    model_version: str | None,
    change_ts: float | None = None,
    readings_after_change: int | None = None,
) -> str:
    """Log the window as a finished MLflow run; return the run id."""
    tags = {
        contracts.WINDOW_TAGS["kind"]: contracts.WINDOW_KIND,
        contracts.WINDOW_TAGS["reason"]: reason,
    }
    if edgemodel is not None:
        tags[contracts.WINDOW_TAGS["edgemodel"]] = edgemodel
    if pod is not None:
        tags[contracts.WINDOW_TAGS["pod"]] = pod
    if model_version is not None:
        tags[contracts.WINDOW_TAGS["model_version"]] = model_version
    if change_ts is not None:
        tags[contracts.WINDOW_TAGS["change_ts"]] = repr(float(change_ts))
    run = client.create_run(_experiment_id(client, contracts.window_experiment(model_name)), tags=tags)
    run_id = str(run.info.run_id)
    try:
        folder, _, filename = contracts.WINDOW_ARTIFACT.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = pathlib.Path(tmp) / filename
            path.write_text(to_csv(readings, fields))
            client.log_artifact(run_id, str(path), folder or None)
        client.log_metric(run_id, "readings", float(len(readings)))
        client.log_metric(run_id, "devices", float(len({r.device for r in readings})))
        if readings_after_change is not None:
            client.log_metric(run_id, contracts.WINDOW_FRESH_METRIC, float(readings_after_change))
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
