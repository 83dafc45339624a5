"""The trainer's MLflow I/O: training windows in, runs with params, metrics and datasets out.

Registry operations (publish, load, aliases, outcome tags) live in
:mod:`edgemodel.registry`, shared with the runtime; this module holds what only the
trainer does with the tracking server.

I/O: MLflow over HTTP and a temporary download folder.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Mapping

import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edgemodel import contracts
from edgemodel_trainer import data

__all__ = [
    "RUN_TAGS",
    "Source",
    "ensure_experiment",
    "fetch_windows",
    "file_source",
    "finish_run",
    "log_dataset",
    "log_metrics",
    "log_params",
    "set_tags",
    "start_run",
    "window_source",
]

logger = logging.getLogger(__name__)

RUN_TAGS = {
    "kind": "edgemodel.kind",  # "training" or "rollback"
    "edgemodel": "edgemodel.name",
    "model_name": "edgemodel.model_name",
    "window_runs": "edgemodel.window_runs",
    "outcome": "edgemodel.outcome",
    "reason": "edgemodel.reason",
    "version": "edgemodel.version",
}
MIN_ROWS_AFTER_CHANGE = data.MIN_ROWS_AFTER_CHANGE
"""Fewest readings after a marked change for the trainer to train on those alone."""
MAX_WINDOW_RUNS = 20
WAITING = "Waiting up to %.0f s for a training window of %s with enough readings after the plant change"
"""Logged once when :func:`fetch_windows` waits for a fresh window."""

Source = DatasetSource | str
"""A dataset's origin: an MLflow source object, or a local path MLflow resolves to one."""
_PARAM_LIMIT = 6000


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when absent (safe against a concurrent creator)."""
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(mlflow_client.create_experiment(name))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        again = mlflow_client.get_experiment_by_name(name)
        assert again is not None
        return str(again.experiment_id)


def start_run(
    mlflow_client: MlflowClient, experiment_id: str, *, run_name: str, tags: Mapping[str, str]
) -> str:
    return str(mlflow_client.create_run(experiment_id, tags=dict(tags), run_name=run_name).info.run_id)


def finish_run(mlflow_client: MlflowClient, run_id: str, *, failed: bool) -> None:
    mlflow_client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")


def log_params(mlflow_client: MlflowClient, run_id: str, params: Mapping[str, object]) -> None:
    mlflow_client.log_batch(
        run_id, params=[Param(k, str(v)[:_PARAM_LIMIT]) for k, v in params.items() if v is not None]
    )


def log_metrics(mlflow_client: MlflowClient, run_id: str, metrics: Mapping[str, float | None]) -> None:
    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
    )


def set_tags(mlflow_client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    mlflow_client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def file_source(path: str) -> str:
    """Where a ``--data`` file came from: its absolute path, which MLflow records as a local source."""
    return str(pathlib.Path(path).resolve())


def window_source(tracking_uri: str, run_id: str) -> DatasetSource:
    """The newest training window's artifact, as a URL the tracking server serves."""
    query = urllib.parse.urlencode({"path": contracts.WINDOW_ARTIFACT, "run_uuid": run_id})
    source: DatasetSource = HTTPDatasetSource(f"{tracking_uri.rstrip('/')}/get-artifact?{query}")  # type: ignore[no-untyped-call]
    return source


def log_dataset(
    mlflow_client: MlflowClient,
    run_id: str,
    table: pd.DataFrame,
    *,
    name: str,
    source: Source,
    target: str,
    context: str = "training",
) -> str:
    """Log ``table`` as the run's input dataset; return its digest."""
    with warnings.catch_warnings():
        # Silences schema-inference hints and "a local path could be two kinds of source".
        warnings.simplefilter("ignore")
        dataset = from_pandas(table, source=source, name=name, targets=target)
        entity = dataset._to_mlflow_entity()
    mlflow_client.log_inputs(
        run_id, datasets=[DatasetInput(dataset=entity, tags=[InputTag("mlflow.data.context", context)])]
    )
    return str(dataset.digest)


def fetch_windows(
    mlflow_client: MlflowClient,
    model_name: str,
    *,
    needed: int,
    edgemodel: str | None = None,
    max_runs: int = MAX_WINDOW_RUNS,
    since: float | None = None,
    wait_seconds: float = 0.0,
) -> tuple[pd.DataFrame, list[str]]:
    """The newest training windows the runtime logged, newest first, until ``needed`` rows.

    Returns the concatenated raw tables (newest run first, so that de-duplication keeps
    the newest copy of a reading) and the ids of the runs read. With ``since`` (epoch
    seconds), only windows uploaded from then on count, and the call waits up to
    ``wait_seconds`` for one to appear. When the newest window marks where the plant
    changed (the ``change_ts`` tag) and enough readings follow it, only those are kept, so
    the challenger learns the plant as it is now. Raises :class:`LookupError` when there is
    no window at all.
    """
    clauses = [f"tags.`{contracts.WINDOW_TAGS['kind']}` = '{contracts.WINDOW_KIND}'"]
    if edgemodel is not None:
        clauses.append(f"tags.`{contracts.WINDOW_TAGS['edgemodel']}` = '{_quote(edgemodel)}'")
    if since is not None:
        clauses.append(f"attributes.start_time >= {int(since * 1000)}")
    deadline = time.monotonic() + wait_seconds
    waited = False
    while True:
        experiment = mlflow_client.get_experiment_by_name(contracts.window_experiment(model_name))
        runs = (
            []
            if experiment is None
            else mlflow_client.search_runs(
                [experiment.experiment_id],
                filter_string=" and ".join(clauses),
                order_by=["attributes.start_time DESC"],
                max_results=max_runs,
            )
        )
        if (runs and _fresh_enough(runs[0])) or time.monotonic() >= deadline:
            break
        if not waited:
            logger.info(WAITING, wait_seconds, model_name)
            waited = True
        time.sleep(1.0)
    if experiment is None:
        raise LookupError(
            f"no --data given and no experiment {contracts.window_experiment(model_name)!r} in MLflow"
        )
    change_ts = (runs[0].data.tags or {}).get(contracts.WINDOW_TAGS["change_ts"]) if runs else None
    tables: list[pd.DataFrame] = []
    run_ids: list[str] = []
    rows = 0
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            run_id = str(run.info.run_id)
            try:
                folder = pathlib.Path(tmp) / run_id
                folder.mkdir()
                local = mlflow_client.download_artifacts(run_id, contracts.WINDOW_ARTIFACT, str(folder))
                table = data.read_csv(local)
            except (MlflowException, OSError, ValueError) as exc:
                logger.warning("Skipped training window of run %s: %s", run_id, exc)
                continue
            tables.append(table)
            run_ids.append(run_id)
            rows += len(table)
            if rows >= needed:
                break
    if not tables:
        raise LookupError(f"no readable training window in {contracts.window_experiment(model_name)!r}")
    table = pd.concat(tables, ignore_index=True)
    if change_ts is not None:
        whole = len(table)
        table, kept = data.since_change(table, float(change_ts), min_rows=MIN_ROWS_AFTER_CHANGE)
        if kept:
            logger.info("Kept %d of %d readings from the change at ts %s on", len(table), whole, change_ts)
        else:
            logger.info("Too few readings after the change at ts %s; training on the whole window", change_ts)
    return table, run_ids


def _fresh_enough(run: Run) -> bool:
    """Whether a window marking a change holds enough readings after it (unmarked ones do).

    The runtime logs a window the moment it detects drift, with hardly any readings of the
    changed plant, and again once enough have arrived; within ``wait_seconds`` the trainer
    waits for the second.
    """
    if contracts.WINDOW_TAGS["change_ts"] not in (run.data.tags or {}):
        return True
    fresh = (run.data.metrics or {}).get(contracts.WINDOW_FRESH_METRIC)
    return fresh is None or fresh >= MIN_ROWS_AFTER_CHANGE


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
