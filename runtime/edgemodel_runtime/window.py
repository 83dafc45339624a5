"""The training window: the last valid raw readings, handed to the trainer through MLflow.

On drift, the replica logs its window as a run in the experiment
:func:`edgemodel.contracts.window_experiment`, with the CSV artifact
:data:`edgemodel.contracts.WINDOW_ARTIFACT` (columns ``device``, ``ts``, then the fields
of the feature spec, oldest reading first) and the tags of
:data:`edgemodel.contracts.WINDOW_TAGS`; only then does it report the drift.

:class:`TrainingWindow` and :func:`to_csv` are pure; :func:`upload` talks to MLflow.
"""

from __future__ import annotations

import collections
import csv
import io
import pathlib
import tempfile
import threading
from collections.abc import Iterable, Sequence

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edgemodel import contracts
from edgemodel_runtime import payloads

__all__ = ["TrainingWindow", "to_csv", "upload"]


class TrainingWindow:
    """The last ``size`` valid readings of this replica; appended by one thread, copied by others."""

    def __init__(self, size: int) -> None:
        self._readings: collections.deque[payloads.Reading] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._readings)

    def extend(self, readings: Iterable[payloads.Reading]) -> None:
        with self._lock:
            self._readings.extend(readings)

    def snapshot(self) -> list[payloads.Reading]:
        with self._lock:
            return list(self._readings)


def to_csv(readings: Sequence[payloads.Reading], fields: Sequence[str]) -> str:
    """The window as CSV text.

    >>> print(to_csv([payloads.Reading("d1", 10.0, {"temp": 21.5})], ["temp"]), end="")
    device,ts,temp
    d1,10.0,21.5
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["device", "ts", *fields])
    for r in readings:
        writer.writerow([r.device, repr(r.ts), *(repr(r.values[f]) for f in fields)])
    return out.getvalue()


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
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
