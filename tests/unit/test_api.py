"""The pydantic API: valid examples parse, invalid specs are refused naming the field."""

from __future__ import annotations

import pathlib

import pydantic
import pytest
import yaml

from edgemodel import api
from tests import specs

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _edgemodels_in_examples() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == api.KIND:
                found.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return found


EXAMPLE_DOCS = _edgemodels_in_examples()


def test_examples_exist():
    names = {name.split(":")[0] for name, _ in EXAMPLE_DOCS}
    assert {"edgemodel.yaml", "edgemodel-external-broker.yaml", "edgemodel-scheduled.yaml"} <= names


@pytest.mark.parametrize(("name", "doc"), EXAMPLE_DOCS, ids=[n for n, _ in EXAMPLE_DOCS])
def test_example_parses(name, doc):
    assert doc["apiVersion"] == api.API_VERSION
    api.EdgeModelSpec.model_validate(doc["spec"])


def test_valid_spec_gets_documented_defaults():
    spec = api.EdgeModelSpec.model_validate(specs.VALID_SPEC)
    assert spec.sensors.horizon == 1
    assert spec.drift.window == 100
    assert spec.scaling.target_cpu_utilization_percentage == 70
    assert spec.retraining.cooldown_seconds == 300
    assert spec.model.algorithm == "ridge"
    assert spec.broker.managed
    assert spec.model_name("line1", "plant") == "plant-line1"


def _error_paths(exc: pydantic.ValidationError) -> list[str]:
    return [".".join(["spec", *(str(p) for p in err["loc"])]) for err in exc.errors()]


@pytest.mark.parametrize("case", specs.INVALID, ids=[c.name for c in specs.INVALID])
def test_invalid_spec_refused_naming_the_field(case):
    with pytest.raises(pydantic.ValidationError) as info:
        api.EdgeModelSpec.model_validate(case.spec())
    paths = _error_paths(info.value)
    # A model-level rule (min <= max) is reported on its object; the field is in the message.
    assert any(
        case.path == p
        or p.startswith(case.path + ".")  # an item of the list
        or (case.path.startswith(p + ".") and p != "spec")  # a rule on the enclosing object
        for p in paths
    ), paths
    if case.path not in paths:
        assert case.path.rsplit(".", 1)[1] in str(info.value)


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("plant/line1/temp", True),
        ("plant/+/temp", True),
        ("plant/#", True),
        ("#", True),
        ("+", True),
        ("+/+/#", True),
        ("/leading/slash", True),
        ("plant//empty-level", True),
        ("plant/#/temp", False),
        ("plant/line+/temp", False),
        ("plant/li#ne", False),
        ("#/plant", False),
        ("", False),
    ],
)
def test_topic_filter_rule(topic, ok):
    assert api.is_valid_topic_filter(topic) is ok


def test_status_round_trips_on_the_wire():
    status = api.EdgeModelStatus.model_validate(
        {
            "observedGeneration": 3,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Serving",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "replicaDrift": {
                "pod-a": {
                    "rmse": 0.5,
                    "samples": 100,
                    "detected": False,
                    "reportTime": "2026-01-01T00:00:00Z",
                }
            },
            "futureField": "ignored",
        }
    )
    wire = status.to_wire()
    assert wire["replicaDrift"]["pod-a"]["rmse"] == 0.5
    assert wire["conditions"][0]["lastTransitionTime"].startswith("2026-01-01T00:00:00")
    assert "futureField" not in wire
