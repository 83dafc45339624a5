"""Trainer workloads: retraining, bootstrap and rollback Jobs, and the scheduled CronJob.

Every Job has a deterministic name, ``backoffLimit``, ``ttlSecondsAfterFinished`` and an
``activeDeadlineSeconds``. A pod failure policy ends the Job at once when the trainer
exits with ``REJECTED`` or ``USAGE``: a rejected challenger is a verdict, not a failure
worth retrying. The trainer reports its :class:`edgemodel.contracts.TrainingResult` in
the termination message.

Pure functions; no I/O here.
"""

from __future__ import annotations

from typing import Any, Literal

from edgemodel import contracts
from edgemodel_operator import names
from edgemodel_operator.render import common, inference, tracking
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = ["JobKind", "job", "schedule"]

COMPONENT = "trainer"
JobKind = Literal["retrain", "bootstrap", "rollback", "scheduled"]


def trainer_config(
    em: EdgeModel, settings: Settings, *, kind: JobKind, window_since: float | None = None
) -> contracts.TrainerConfig:
    uri = inference.tracking_uri(em, settings)
    s = em.spec
    return contracts.TrainerConfig(
        model_name=em.model_name,
        tracking_uri=uri or "",
        algorithm=s.model.algorithm,
        **inference.feature_fields(em),
        alias=s.model.alias,
        promotion_margin=s.retraining.promotion_margin,
        training_window=s.retraining.training_window,
        data=s.model.bootstrap_data if kind == "bootstrap" else None,
        edgemodel=em.key,
        # A drift retrain waits for the window the drifted replica uploads; a bootstrap
        # without data waits for the first window of a replica serving no model yet.
        window_since=window_since if kind == "retrain" else None,
        window_wait_seconds=settings.window_wait_seconds
        if kind == "retrain" or (kind == "bootstrap" and s.model.bootstrap_data is None)
        else 0.0,
    )


def _pod_template(em: EdgeModel, settings: Settings, args: list[str], kind: JobKind) -> dict[str, Any]:
    labels = {**names.labels(em.name, COMPONENT), names.LABEL_JOB_KIND: kind}
    return {
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": common.pod_security(),
            **common.placement(em),
            "containers": [
                {
                    "name": "trainer",
                    "image": em.spec.runtime.image or settings.image,
                    "imagePullPolicy": settings.image_pull_policy,
                    "command": ["edgemodel-trainer"],
                    "args": args,
                    "env": [
                        {"name": "EDGEMODEL_TERMINATION_LOG", "value": contracts.TERMINATION_LOG},
                        *tracking.env(em),
                    ],
                    "terminationMessagePath": contracts.TERMINATION_LOG,
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "512Mi"},
                        "limits": {"memory": "2Gi"},
                    },
                    "securityContext": common.container_security(),
                    "volumeMounts": [{"name": "tmp", "mountPath": common.SCRATCH}, *tracking.mounts(em)],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}}, *tracking.volumes(em)],
        },
    }


def _job_spec(em: EdgeModel, settings: Settings, args: list[str], kind: JobKind) -> dict[str, Any]:
    return {
        "backoffLimit": settings.job_backoff_limit,
        "ttlSecondsAfterFinished": settings.job_ttl_seconds,
        "activeDeadlineSeconds": settings.job_active_deadline_seconds,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": "trainer",
                        "operator": "In",
                        "values": sorted([int(contracts.ExitCode.REJECTED), int(contracts.ExitCode.USAGE)]),
                    },
                }
            ]
        },
        "template": _pod_template(em, settings, args, kind),
    }


def job(
    em: EdgeModel,
    settings: Settings,
    *,
    kind: JobKind,
    number: int,
    reason: str,
    rollback_to: str | None = None,
    window_since: float | None = None,
) -> dict[str, Any]:
    """One Job. ``number`` makes the name; ``reason`` is recorded as an annotation."""
    if kind == "rollback":
        assert rollback_to is not None
        args = contracts.RollbackConfig(
            model_name=em.model_name,
            tracking_uri=inference.tracking_uri(em, settings) or "",
            alias=em.spec.model.alias,
            to_version=rollback_to,
        ).to_argv()
    else:
        args = trainer_config(em, settings, kind=kind, window_since=window_since).to_argv()
    meta = common.metadata(em, names.job(em.name, kind, number), COMPONENT)
    meta["labels"][names.LABEL_JOB_KIND] = kind
    meta["annotations"] = {names.ANNOTATION_TRIGGER: reason}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": _job_spec(em, settings, args, kind),
    }


def schedule(em: EdgeModel, settings: Settings) -> list[dict[str, Any]]:
    """The CronJob for ``spec.retraining.schedule``, or nothing."""
    cron = em.spec.retraining.schedule
    if cron is None:
        return []
    args = trainer_config(em, settings, kind="scheduled").to_argv()
    meta = common.metadata(em, names.schedule(em.name), COMPONENT)
    meta["labels"][names.LABEL_JOB_KIND] = "scheduled"
    job_meta = {"labels": {**names.labels(em.name, COMPONENT), names.LABEL_JOB_KIND: "scheduled"}}
    return [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {
                "schedule": cron,
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 600,
                "suspend": em.spec.suspend,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"metadata": job_meta, "spec": _job_spec(em, settings, args, "scheduled")},
            },
        }
    ]
