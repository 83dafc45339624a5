"""Fixtures that start real components on 127.0.0.1 and stop them after use.

- ``mosquitto``: a fresh broker per test (it starts in about 0.1 s).
- ``mlflow_server``: one tracking server per session (it starts in about 10 s); tests
  isolate themselves with unique model and experiment names.
- ``cluster``: one control plane per session (see ``tests/integration/conftest.py``).
"""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator

import pytest

from edgemodel_dev.harness import mlflowserver, mosquitto


@pytest.fixture
def mosquitto_broker(tmp_path: pathlib.Path) -> Iterator[mosquitto.Mosquitto]:
    broker = mosquitto.Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflowserver.MlflowServer]:
    server = mlflowserver.MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unique_name() -> str:
    """A name no other test uses: for registered models, experiments and EdgeModels."""
    return f"t{uuid.uuid4().hex[:10]}"
