"""Log a training window to MLflow, where the trainer finds it (the I/O half of ``window``).

The run goes to the experiment :func:`edgemodel.contracts.window_experiment`, with the
CSV artifact :data:`edgemodel.contracts.WINDOW_ARTIFACT` (columns ``device``, ``ts``, then
the fields of the feature spec, oldest reading first) and the tags of
:data:`edgemodel.contracts.WINDOW_TAGS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgemodel import contracts
from edgemodel_runtime import mlflowapi, payloads
from edgemodel_runtime.window import to_csv

__all__ = ["upload"]


def upload(
    client: mlflowapi.Client | Any,
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
    """Log the window as a finished MLflow run; return the run id.

    ``client`` is an :class:`~edgemodel_runtime.mlflowapi.Client`, or any client with a
    ``tracking_uri`` (an ``MlflowClient``), whose server is then reached the same way.
    """
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
    api = mlflowapi.client_for(client)
    run_id, artifact_uri = api.create_run(api.experiment_id(contracts.window_experiment(model_name)), tags)
    try:
        api.upload_artifact(artifact_uri, contracts.WINDOW_ARTIFACT, to_csv(readings, fields).encode())
        metrics = {"readings": float(len(readings)), "devices": float(len({r.device for r in readings}))}
        if readings_after_change is not None:
            metrics[contracts.WINDOW_FRESH_METRIC] = float(readings_after_change)
        api.log_metrics(run_id, metrics)
    except Exception:
        api.end_run(run_id, "FAILED")
        raise
    api.end_run(run_id, "FINISHED")
    return run_id
