"""The MLflow model registry as EdgeModel uses it: publish versions and load them safely.

A model version's source is a run artifact folder ``model/`` holding
:data:`edgemodel.modelstore.MODEL_FILE` (skops), when the model converts faithfully
:data:`edgemodel.modelstore.ONNX_FILE` (ONNX, what the runtime serves; its own SHA-256 tag),
and ``edgemodel.json`` (its metadata,
including the calibration of its drift detector, so a version carries its own calibration
wherever the alias points: after a promotion, and after a rollback).
Each version carries the tags in :data:`TAGS`, among them the file's SHA-256, which
:func:`load_version` checks before parsing the file. The serving version is the one the
alias (``champion`` by default) points at. :class:`ModelMeta`, :class:`LoadedModel` and
:data:`TAGS` live in :mod:`edgemodel.modelmeta`, which needs no MLflow; they are re-exported here.

Used by the trainer (publish, load the champion to compare); the runtime follows the
alias through MLflow's REST API instead (:mod:`edgemodel_runtime.mlflowapi`).
I/O: MLflow over HTTP and a local download folder.
"""

from __future__ import annotations

import logging
import pathlib
import tempfile
from typing import Any

import mlflow
import numpy as np
import numpy.typing as npt
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edgemodel import modelstore
from edgemodel.modelmeta import ARTIFACT_DIR, META_FILE, TAGS, LoadedModel, ModelMeta

__all__ = [
    "TAGS",
    "LoadedModel",
    "ModelMeta",
    "client",
    "load_version",
    "move_alias",
    "publish",
    "resolve_alias",
    "set_outcome",
    "version_tags",
]

log = logging.getLogger(__name__)


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def publish(
    mlflow_client: MlflowClient,
    *,
    name: str,
    run_id: str,
    model: Any,
    meta: ModelMeta,
    tags: dict[str, str] | None = None,
    onnx_rows: npt.NDArray[np.float64] | None = None,
) -> str:
    """Log ``model`` into the run's ``model/`` folder and register it; return the version.

    With ``onnx_rows`` (the holdout's input rows) the model is also converted to ONNX
    (:func:`edgemodel.modelstore.to_onnx`) and ``model.onnx`` is stored beside the skops
    file with its own SHA-256 tag, if its predictions on those rows agree with the model's;
    the ``edgemodel.onnx`` tag says which happened and why. The alias is not moved here:
    promotion is the caller's decision.
    """
    onnx_tags: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / ARTIFACT_DIR
        digest = modelstore.save(model, folder / modelstore.MODEL_FILE)
        if onnx_rows is not None:
            raw, outcome = modelstore.to_onnx(model, onnx_rows)
            onnx_tags[TAGS["onnx"]] = outcome[:5000]
            if raw is None:
                log.warning("Stored no ONNX file for model %s: %s", name, outcome)
            else:
                (folder / modelstore.ONNX_FILE).write_bytes(raw)
                onnx_tags[TAGS["onnx_sha256"]] = modelstore.sha256_file(folder / modelstore.ONNX_FILE)
                log.info("Converted model %s to ONNX: %s", name, outcome)
        (folder / META_FILE).write_text(meta.to_json())
        mlflow_client.log_artifacts(run_id, str(folder), ARTIFACT_DIR)
    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    run = mlflow_client.get_run(run_id)
    version_tags = {
        TAGS["sha256"]: digest,
        TAGS["columns"]: ",".join(meta.columns),
        TAGS["algorithm"]: meta.algorithm,
        **onnx_tags,
        **(tags or {}),
    }
    version = mlflow_client.create_model_version(
        name=name,
        source=f"{run.info.artifact_uri}/{ARTIFACT_DIR}",
        run_id=run_id,
        tags=version_tags,
    )
    return str(version.version)


def resolve_alias(mlflow_client: MlflowClient, name: str, alias: str) -> str | None:
    """The version the alias points at, or ``None`` when there is no such model or alias."""
    try:
        return str(mlflow_client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def load_version(
    mlflow_client: MlflowClient, name: str, version: str, *, workdir: pathlib.Path | None = None
) -> LoadedModel:
    """Download one version and load it safely; :class:`modelstore.ModelLoadError` if refused."""
    mv = mlflow_client.get_model_version(name, version)
    expected = (mv.tags or {}).get(TAGS["sha256"])
    if not expected:
        raise modelstore.ModelLoadError(
            f"model {name} version {version} has no {TAGS['sha256']} tag; refusing to load it"
        )
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        try:
            local = pathlib.Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=str(mv.source), dst_path=tmp, tracking_uri=mlflow_client.tracking_uri
                )
            )
        except MlflowException as exc:
            raise modelstore.ModelLoadError(
                f"model {name} version {version}: artifacts could not be downloaded: {exc}"
            ) from exc
        model = modelstore.load(local / modelstore.MODEL_FILE, expected_sha256=expected)
        try:
            meta = ModelMeta.from_json((local / META_FILE).read_text())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise modelstore.ModelLoadError(
                f"model {name} version {version}: unreadable {META_FILE}: {exc}"
            ) from exc
    modelstore.sanity_check(model, len(meta.columns))
    return LoadedModel(name=name, version=version, model=model, meta=meta)


def move_alias(mlflow_client: MlflowClient, name: str, alias: str, version: str) -> str | None:
    """Point ``alias`` at ``version``; return the version it pointed at before (or ``None``).

    Used for promotion and for rollback. The version must exist; MLflow refuses otherwise.
    """
    previous = resolve_alias(mlflow_client, name, alias)
    mlflow_client.set_registered_model_alias(name, alias, version)
    return previous


def set_outcome(mlflow_client: MlflowClient, name: str, version: str, *, outcome: str, reason: str) -> None:
    """Record on the version what happened to it: ``outcome`` (Promoted, Rejected,
    RolledBack or Failed) and a ``reason``."""
    mlflow_client.set_model_version_tag(name, version, TAGS["outcome"], outcome)
    mlflow_client.set_model_version_tag(name, version, TAGS["reason"], reason[:5000])


def version_tags(mlflow_client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """The tags of one model version."""
    return dict(mlflow_client.get_model_version(name, version).tags or {})
