"""The trainer's hand-off from the runtime on a real MLflow: it waits for the changed plant.

A replica logs a window the moment it detects drift, marking the change, with hardly any
readings after it; it logs the window again once enough have arrived. A trainer asked for
windows since the drift waits for the second and trains on the readings after the change.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from edgemodel import contracts
from edgemodel.registry import client as mlflow_client
from edgemodel_dev import testing
from edgemodel_runtime import payloads, windowlog
from edgemodel_trainer import tracking

pytestmark = [pytest.mark.mlflow]

DEVICES, PER_DEVICE, SHIFT_AT = 2, 300, 200
FIELDS = ["temp", "humidity"]


def _readings(upto: int) -> list[payloads.Reading]:
    data = testing.readings(DEVICES, PER_DEVICE, seed=3, shift_at=SHIFT_AT)[: upto * DEVICES]
    return [payloads.Reading(str(p["device"]), float(p["ts"]), {f: p[f] for f in FIELDS}) for p in data]


def _upload(uri: str, name: str, readings: list[payloads.Reading], change_ts: float) -> None:
    windowlog.upload(
        mlflow_client(uri),
        readings,
        fields=FIELDS,
        model_name=name,
        edgemodel=f"default/{name}",
        pod="p0",
        reason="drift",
        model_version="1",
        change_ts=change_ts,
        readings_after_change=sum(r.ts >= change_ts for r in readings),
    )


def _waited(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.msg == tracking.WAITING for r in caplog.records)


def test_trainer_waits_for_the_window_with_the_changed_plant(mlflow_server, unique_name, caplog):
    caplog.set_level(logging.INFO, logger=tracking.__name__)
    uri = mlflow_server.uri
    change_ts = _readings(SHIFT_AT + 3)[-1].ts
    since = time.time() - 1
    _upload(uri, unique_name, _readings(SHIFT_AT + 3), change_ts)  # at detection: 2 readings after it

    result: dict[str, object] = {}

    def fetch() -> None:
        result["table"], result["runs"] = tracking.fetch_windows(
            mlflow_client(uri),
            unique_name,
            needed=1000,
            edgemodel=f"default/{unique_name}",
            since=since,
            wait_seconds=60,
        )

    fetcher = threading.Thread(target=fetch)
    fetcher.start()
    time.sleep(3)
    assert fetcher.is_alive(), "the trainer took the window with no changed plant in it"
    _upload(uri, unique_name, _readings(PER_DEVICE), change_ts)  # enough readings after the change
    fetcher.join(60)
    assert not fetcher.is_alive()
    assert _waited(caplog)

    table = result["table"]
    assert len(result["runs"]) >= 1  # type: ignore[arg-type]
    # Only the readings from the change on are kept.
    assert float(table["ts"].min()) >= change_ts  # type: ignore[index]
    assert len(table) >= tracking.MIN_ROWS_AFTER_CHANGE  # type: ignore[arg-type]


def test_an_unmarked_window_is_taken_at_once(mlflow_server, unique_name, caplog):
    caplog.set_level(logging.INFO, logger=tracking.__name__)
    uri = mlflow_server.uri
    since = time.time() - 1
    windowlog.upload(
        mlflow_client(uri),
        _readings(PER_DEVICE),
        fields=FIELDS,
        model_name=unique_name,
        edgemodel=None,
        pod=None,
        reason="manual",
        model_version=None,
    )
    table, runs = tracking.fetch_windows(
        mlflow_client(uri), unique_name, needed=100, since=since, wait_seconds=60
    )
    assert not _waited(caplog), "it waited although the newest window was fit to train on"
    assert len(runs) == 1 and len(table) == DEVICES * PER_DEVICE
    experiment = mlflow_client(uri).get_experiment_by_name(contracts.window_experiment(unique_name))
    assert experiment is not None
