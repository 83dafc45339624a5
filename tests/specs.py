"""EdgeModel specs shared by the pydantic tests and the API-server tests.

Each invalid case is a change to a valid spec, and the field path that both pydantic
and the API server must name when they refuse it. Using the same cases on both sides is
how the tests prove that the CRD and the pydantic models agree.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

VALID_SPEC: dict[str, Any] = {
    "sensors": {
        "topics": ["plant/+/telemetry"],
        "features": ["temperature", "humidity"],
        "target": "temperature",
    },
    "drift": {"threshold": 1.5},
}


@dataclasses.dataclass(frozen=True)
class Invalid:
    name: str
    path: str
    """The field the error must name, as the API server prints it."""
    value: Any
    """The new value at ``path`` (relative to ``spec``); ``DELETE`` removes the field."""
    extra: tuple[tuple[str, Any], ...] = ()
    """Further (path, value) changes that set up the case."""

    def spec(self) -> dict[str, Any]:
        spec = copy.deepcopy(VALID_SPEC)
        for path, value in ((self.path, self.value), *self.extra):
            _set(spec, path.removeprefix("spec."), value)
        return spec


DELETE = object()


def _set(obj: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        obj = obj.setdefault(key, {})
    if value is DELETE:
        obj.pop(leaf, None)
    else:
        obj[leaf] = value


INVALID: list[Invalid] = [
    Invalid("no-topics", "spec.sensors.topics", []),
    Invalid("missing-topics", "spec.sensors.topics", DELETE),
    Invalid("hash-not-last", "spec.sensors.topics", ["plant/#/temp"]),
    Invalid("plus-inside-level", "spec.sensors.topics", ["plant/line+/temp"]),
    Invalid("hash-inside-level", "spec.sensors.topics", ["plant/line1#"]),
    Invalid("no-features", "spec.sensors.features", []),
    Invalid("duplicate-features", "spec.sensors.features", ["temperature", "temperature"]),
    Invalid("bad-feature-name", "spec.sensors.features", ["temp erature"]),
    Invalid("missing-target", "spec.sensors.target", DELETE),
    Invalid("horizon-zero", "spec.sensors.horizon", 0),
    Invalid("threshold-zero", "spec.drift.threshold", 0),
    Invalid("threshold-negative", "spec.drift.threshold", -1.0),
    Invalid("threshold-not-a-number", "spec.drift.threshold", "high"),
    Invalid("window-too-small", "spec.drift.window", 5),
    Invalid("min-above-max", "spec.scaling.minReplicas", 5, (("scaling.maxReplicas", 2),)),
    Invalid("min-zero", "spec.scaling.minReplicas", 0),
    Invalid("cpu-target-over-100", "spec.scaling.targetCPUUtilizationPercentage", 150),
    Invalid("unknown-algorithm", "spec.model.algorithm", "xgboost"),
    Invalid("negative-cooldown", "spec.retraining.cooldownSeconds", -5),
    Invalid("schedule-not-cron", "spec.retraining.schedule", "every night"),
    Invalid("port-without-host", "spec.broker.port", 1883),
    Invalid("unknown-field", "spec.sensors.topic", "plant/x"),
]
