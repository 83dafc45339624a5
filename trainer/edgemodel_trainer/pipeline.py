"""The trainer's two jobs, train and roll back, wired from the pure modules and the I/O ones.

Both return a :class:`edgemodel.contracts.TrainingResult` and never raise for an error in
the work itself: a failure becomes outcome ``Failed``. The alias is moved as the last
step of a successful run only, so a failed run never replaces the serving model.

I/O: MLflow (through :mod:`edgemodel.registry` and :mod:`.tracking`) and the data file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import pathlib
import time
from collections.abc import Iterator

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edgemodel import contracts, features, modelstore, registry
from edgemodel_trainer import calibration, data, gate, tracking, train

__all__ = ["Settings", "rollback", "run_training"]

logger = logging.getLogger(__name__)

DATASET_DIGEST_TAG = "edgemodel.dataset_digest"
CHAMPION_RMSE_TAG = "edgemodel.champion_rmse"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Trainer choices the operator does not render into the Job."""

    holdout_fraction: float = train.HOLDOUT_FRACTION
    """Share of rows, the most recent, on which challenger and champion are judged."""
    seed: int = 0
    """Random seed of the tree ensembles, so a rerun on the same data gives the same model."""
    max_window_runs: int = tracking.MAX_WINDOW_RUNS
    """At most this many training-window runs are read when no ``--data`` is given."""


@dataclasses.dataclass
class _Progress:
    """What a run got as far as, for reporting a failure."""

    run_id: str | None = None
    version: str | None = None
    champion_version: str | None = None
    dataset_digest: str | None = None
    samples: int | None = None


@contextlib.contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = time.monotonic() - started


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, train.NotEnoughDataError):
        return "NotEnoughData"
    if isinstance(exc, data.DataError):
        return "InvalidData"
    if isinstance(exc, LookupError):
        return "NoTrainingData"
    if isinstance(exc, modelstore.ModelLoadError):
        return "ModelRefused"
    if isinstance(exc, MlflowException):
        return "MlflowError"
    return "TrainingFailed"


def spec_of(config: contracts.TrainerConfig) -> features.FeatureSpec:
    return features.FeatureSpec(
        features=tuple(config.features), target=config.target, horizon=config.horizon, lags=config.lags
    )


def run_training(
    config: contracts.TrainerConfig,
    *,
    settings: Settings = Settings(),
    mlflow_client: MlflowClient | None = None,
) -> contracts.TrainingResult:
    """Train a challenger, judge it against the champion, register it, and promote it if it won."""
    started = time.monotonic()
    client = mlflow_client or registry.client(config.tracking_uri)
    progress = _Progress()
    try:
        return _train(config, settings, client, progress, started)
    except Exception as exc:  # every failure must become a Failed result
        logger.exception("Failed training model %s", config.model_name)
        reason = f"{_failure_reason(exc)}: {type(exc).__name__}: {exc}"
        _record_failure(client, config.model_name, progress, reason)
        return contracts.TrainingResult(
            outcome="Failed",
            reason=reason,
            model_name=config.model_name,
            version=progress.version,
            champion_version=progress.champion_version,
            samples=progress.samples,
            algorithm=config.algorithm,
            run_id=progress.run_id,
            dataset_digest=progress.dataset_digest,
            duration_seconds=time.monotonic() - started,
        )


def _record_failure(client: MlflowClient, model_name: str, progress: _Progress, reason: str) -> None:
    """Best effort: mark the run and any registered version as failed; the alias is not touched."""
    with contextlib.suppress(Exception):
        if progress.version is not None:
            registry.set_outcome(client, model_name, progress.version, outcome="Failed", reason=reason)
    with contextlib.suppress(Exception):
        if progress.run_id is not None:
            tracking.set_tags(
                client,
                progress.run_id,
                {tracking.RUN_TAGS["outcome"]: "Failed", tracking.RUN_TAGS["reason"]: reason[:5000]},
            )
            tracking.finish_run(client, progress.run_id, failed=True)


def _train(
    config: contracts.TrainerConfig,
    settings: Settings,
    client: MlflowClient,
    progress: _Progress,
    started: float,
) -> contracts.TrainingResult:
    spec = spec_of(config)
    timings: dict[str, float] = {}
    name = config.model_name

    experiment_id = tracking.ensure_experiment(client, contracts.training_experiment(name))
    run_tags = {tracking.RUN_TAGS["kind"]: "training", tracking.RUN_TAGS["model_name"]: name}
    if config.edgemodel:
        run_tags[tracking.RUN_TAGS["edgemodel"]] = config.edgemodel
    progress.run_id = run_id = tracking.start_run(
        client, experiment_id, run_name=f"train-{config.algorithm}", tags=run_tags
    )
    logger.info("Started MLflow run %s in experiment %s", run_id, contracts.training_experiment(name))

    # Stage 1: the training window.
    with _stage(timings, "load_seconds"):
        if config.data is not None:
            raw = data.read_file(config.data)
            source: tracking.Source = tracking.file_source(config.data)
            dataset_name = pathlib.Path(config.data).name
        else:
            raw, window_runs = tracking.fetch_windows(
                client,
                name,
                needed=config.training_window,
                edgemodel=config.edgemodel,
                max_runs=settings.max_window_runs,
                since=config.window_since,
                wait_seconds=config.window_wait_seconds,
            )
            source = tracking.window_source(config.tracking_uri, window_runs[0])
            dataset_name = contracts.WINDOW_KIND
            tracking.set_tags(client, run_id, {tracking.RUN_TAGS["window_runs"]: ",".join(window_runs)})
        table = data.most_recent(data.normalise(raw, spec), config.training_window)
    if table.empty:
        raise data.DataError("the training window holds no usable reading")
    devices = int(table[data.DEVICE].nunique())
    logger.info(
        "Loaded %d readings of %d devices from %s in %.2f s",
        len(table), devices, config.data or "MLflow training windows", timings["load_seconds"],
    )  # fmt: skip

    # Stage 2: features, shared with the runtime.
    with _stage(timings, "features_seconds"):
        frame = features.build_training_frame(spec, data.readings(table, spec))
    progress.samples = len(frame)
    logger.info(
        "Built %d rows of %d features (%s) in %.2f s",
        len(frame), len(frame.columns), ",".join(frame.columns), timings["features_seconds"],
    )  # fmt: skip

    with _stage(timings, "dataset_seconds"):
        digest = tracking.log_dataset(
            client, run_id, table, name=dataset_name, source=source, target=config.target
        )
    progress.dataset_digest = digest
    gap = config.horizon * devices
    tracking.log_params(
        client,
        run_id,
        {
            "model_name": name,
            "algorithm": config.algorithm,
            "features": ",".join(config.features),
            "target": config.target,
            "horizon": config.horizon,
            "lags": config.lags,
            "alias": config.alias,
            "promotion_margin": config.promotion_margin,
            "training_window": config.training_window,
            "holdout_fraction": settings.holdout_fraction,
            "holdout_gap_rows": gap,
            "seed": settings.seed,
            "data": config.data or "mlflow-windows",
            "edgemodel": config.edgemodel,
            "dataset_digest": digest,
        },
    )
    logger.info("Logged dataset %s with digest %s", dataset_name, digest)

    # Stages 3 and 4: train on the older part, judge it and the champion on the most recent one.
    judged = gate.challenge(
        frame,
        spec=spec,
        algorithm=config.algorithm,
        margin=config.promotion_margin,
        gap=gap,
        champion=lambda holdout: _score_champion(client, config, spec, holdout),
        holdout_fraction=settings.holdout_fraction,
        seed=settings.seed,
        stage=lambda name: _stage(timings, name),
    )
    model, train_part, holdout, decision = judged.model, judged.train_part, judged.holdout, judged.decision
    challenger_rmse, train_rmse = judged.challenger_rmse, judged.train_rmse
    baseline_rmse = judged.baseline_rmse
    champion_version, champion_rmse = judged.champion.version, judged.champion.rmse
    progress.champion_version = champion_version
    logger.info(
        "Trained %s on %d rows in %.2f s; holding out the last %d rows",
        config.algorithm, len(train_part), timings["fit_seconds"], len(holdout),
    )  # fmt: skip
    logger.info(
        "Evaluated the challenger: holdout RMSE %.6g, training RMSE %.6g, last-value baseline %s",
        challenger_rmse, train_rmse, "n/a" if baseline_rmse is None else f"{baseline_rmse:.6g}",
    )  # fmt: skip
    logger.info("Decided to %s: %s: %s", "promote" if decision.promote else "reject", decision.reason,
                decision.message)  # fmt: skip

    tracking.log_metrics(
        client,
        run_id,
        {
            "holdout_rmse": challenger_rmse if math.isfinite(challenger_rmse) else None,
            "champion_holdout_rmse": champion_rmse
            if champion_rmse is not None and math.isfinite(champion_rmse)
            else None,
            "baseline_holdout_rmse": baseline_rmse,
            "train_rmse": train_rmse if math.isfinite(train_rmse) else None,
            "readings": float(len(table)),
            "devices": float(devices),
            "rows_train": float(len(train_part)),
            "rows_holdout": float(len(holdout)),
            **timings,
        },
    )

    # Stage 5: register (skops, and ONNX if it predicts the holdout alike), check the stored
    # artifact loads safely, then (maybe) promote.
    reason = f"{decision.reason}: {decision.message}"
    calibrated = calibration.on_holdout(model, holdout)  # the drift detector's, recorded with the version
    logger.info("Measured the detector calibration on the holdout: %s", calibrated)
    meta = registry.ModelMeta(
        columns=frame.columns,
        algorithm=config.algorithm,
        features=spec.features,
        target=spec.target,
        horizon=spec.horizon,
        lags=spec.lags,
        calibration=calibrated,
    )
    version_tags = {registry.TAGS["holdout_rmse"]: repr(challenger_rmse), DATASET_DIGEST_TAG: digest}
    if champion_rmse is not None:
        version_tags[CHAMPION_RMSE_TAG] = repr(champion_rmse)
    with _stage(timings, "register_seconds"):
        progress.version = version = registry.publish(
            client, name=name, run_id=run_id, model=model, meta=meta, tags=version_tags, onnx_rows=holdout.x
        )
        stored = registry.load_version(client, name, version)
        stored_rmse = train.evaluate(stored.model, holdout)
    if not np.isclose(stored_rmse, challenger_rmse, rtol=1e-9, atol=1e-12, equal_nan=True):
        raise modelstore.ModelLoadError(
            f"version {version} scores {stored_rmse} after a round trip, not {challenger_rmse}"
        )
    logger.info("Registered version %s of model %s in %.2f s", version, name, timings["register_seconds"])

    outcome: contracts.Outcome = "Promoted" if decision.promote else "Rejected"
    serving = champion_version
    with _stage(timings, "promote_seconds"):
        if decision.promote:
            current = registry.resolve_alias(client, name, config.alias)
            if current != champion_version:
                outcome, reason = (
                    "Rejected",
                    (
                        f"ChampionChanged: alias {config.alias} moved from {champion_version} to "
                        f"{current} while this challenger trained"
                    ),
                )
                serving = current
        registry.set_outcome(client, name, version, outcome=outcome, reason=reason)
        if outcome == "Promoted":
            registry.move_alias(client, name, config.alias, version)  # the last step that may fail
            serving = version
    if outcome == "Promoted":
        logger.info("Promoted version %s of model %s to alias %s", version, name, config.alias)
    else:
        logger.info("Rejected version %s of model %s; version %s keeps serving", version, name, serving)

    # After the alias moved, bookkeeping failures must not turn a success into a failure.
    with contextlib.suppress(Exception):
        tracking.log_metrics(
            client,
            run_id,
            {"register_seconds": timings["register_seconds"], "promote_seconds": timings["promote_seconds"]},
        )
        tracking.set_tags(
            client,
            run_id,
            {
                tracking.RUN_TAGS["outcome"]: outcome,
                tracking.RUN_TAGS["reason"]: reason[:5000],
                tracking.RUN_TAGS["version"]: version,
            },
        )
        tracking.finish_run(client, run_id, failed=False)
    return contracts.TrainingResult(
        outcome=outcome,
        reason=reason,
        model_name=name,
        version=version,
        champion_version=serving,
        holdout_rmse=challenger_rmse if math.isfinite(challenger_rmse) else None,
        champion_rmse=champion_rmse if champion_rmse is not None and math.isfinite(champion_rmse) else None,
        samples=len(frame),
        algorithm=config.algorithm,
        run_id=run_id,
        dataset_digest=digest,
        duration_seconds=time.monotonic() - started,
    )


def _score_champion(
    client: MlflowClient,
    config: contracts.TrainerConfig,
    spec: features.FeatureSpec,
    holdout: features.TrainingFrame,
) -> gate.ChampionScore:
    """Load the champion the alias points at and score it on ``holdout`` (:func:`gate.score`).

    A champion whose artifact is refused cannot be compared; the challenger then only has
    to be usable itself. A failure to reach MLflow is not such a case: it propagates, and
    the run fails.
    """
    version = registry.resolve_alias(client, config.model_name, config.alias)
    if version is None:
        logger.info("Found no version at alias %s of model %s", config.alias, config.model_name)
        return gate.NO_CHAMPION
    try:
        champion = registry.load_version(client, config.model_name, version)
    except modelstore.ModelLoadError as exc:
        if isinstance(exc.__cause__, MlflowException):
            raise
        logger.warning("Refused champion version %s: %s", version, exc)
        return gate.ChampionScore(version, None, "ChampionUnusable")
    meta = champion.meta
    try:
        trained_for = features.FeatureSpec(
            features=tuple(meta.features), target=meta.target, horizon=meta.horizon, lags=meta.lags
        )
    except ValueError:
        logger.warning("Found champion version %s trained for another feature spec: %s", version, meta)
        return gate.ChampionScore(version, None, "ChampionIncompatible")
    judged = gate.score(champion.model, version=version, trained_for=trained_for, spec=spec, holdout=holdout)
    if judged.rmse is None:
        logger.warning("Could not compare champion version %s (%s): %s", version, judged.reason, meta)
    else:
        logger.info("Evaluated champion version %s: holdout RMSE %.6g", version, judged.rmse)
    return judged


def rollback(
    *, model_name: str, tracking_uri: str, alias: str, to_version: str, reason: str = "RolledBack",
    mlflow_client: MlflowClient | None = None,
) -> contracts.TrainingResult:  # fmt: skip
    """Point ``alias`` back at ``to_version`` and mark the version it leaves as rolled back.

    The target is loaded first with the same safety checks as serving uses, so a rollback
    never points the alias at an artifact the runtime would refuse. Rerunning is safe:
    when the alias already points at ``to_version``, nothing changes.
    """
    started = time.monotonic()
    client = mlflow_client or registry.client(tracking_uri)
    current: str | None = None
    try:
        current = registry.resolve_alias(client, model_name, alias)
        registry.load_version(client, model_name, to_version)
        if current == to_version:
            logger.info("Found alias %s of model %s already at version %s", alias, model_name, to_version)
            bad = None
        else:
            bad = current
            if bad is not None:
                registry.set_outcome(client, model_name, bad, outcome="RolledBack", reason=reason)
            registry.move_alias(client, model_name, alias, to_version)
            logger.info(
                "Rolled back alias %s of model %s from version %s to version %s",
                alias, model_name, bad, to_version,
            )  # fmt: skip
        return contracts.TrainingResult(
            outcome="RolledBack",
            reason=reason,
            model_name=model_name,
            version=bad,
            champion_version=to_version,
            duration_seconds=time.monotonic() - started,
        )
    except Exception as exc:  # every failure must become a Failed result
        logger.exception("Failed rolling back model %s to version %s", model_name, to_version)
        return contracts.TrainingResult(
            outcome="Failed",
            reason=f"RollbackFailed: {type(exc).__name__}: {exc}",
            model_name=model_name,
            version=current,
            champion_version=current,
            duration_seconds=time.monotonic() - started,
        )
