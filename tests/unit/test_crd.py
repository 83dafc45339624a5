"""The CRD in crds/ is exactly what the pydantic models generate, and it is well formed."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from edgemodel import api, crd

CRD_FILE = pathlib.Path(__file__).resolve().parents[2] / "crds" / "edgemodel.yaml"


def test_committed_crd_matches_the_pydantic_models():
    assert CRD_FILE.read_text() == crd.crd_yaml(), (
        "crds/edgemodel.yaml is stale: run `python -m edgemodel.crd > crds/edgemodel.yaml`"
    )


@pytest.fixture(scope="module")
def version():
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert doc["spec"]["group"] == api.GROUP
    assert doc["spec"]["names"]["shortNames"] == [api.SHORT_NAME]
    assert doc["spec"]["scope"] == "Namespaced"
    (v,) = doc["spec"]["versions"]
    return v


def test_status_subresource(version):
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version):
    names = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert names == ["Ready", "Drift", "Threshold", "Model", "Replicas", "Age"]


def _walk(schema: dict, dotted: str) -> dict:
    node = schema
    for raw in dotted.strip(".").split("."):
        part = re.sub(r"\[.*\]$", "", raw)
        if node.get("type") == "array":
            node = node["items"]
        node = node["properties"][part]
    return node


def test_printer_columns_point_at_real_fields(version):
    root = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata"):
            continue
        path = re.sub(r"\[\?\(@\.type==\"(\w+)\"\)\]", "", path)
        node = _walk(root, path)
        expected = {"number": "number", "integer": "integer", "string": "string"}[column["type"]]
        assert node["type"] == expected, column


def test_wire_names_of_pydantic_fields_exist_in_the_schema(version):
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for section, model in [
        ("sensors", api.SensorsSpec),
        ("drift", api.DriftSpec),
        ("scaling", api.ScalingSpec),
        ("retraining", api.RetrainingSpec),
        ("model", api.ModelSpec),
        ("broker", api.BrokerSpec),
    ]:
        aliases = {f.alias for f in model.model_fields.values()}
        assert aliases == set(spec_schema["properties"][section]["properties"]), section


def test_cel_rules_are_present(version):
    text = yaml.safe_dump(version)
    assert "self.minReplicas <= self.maxReplicas" in text
    assert "t.matches(" in text


def test_schema_is_structural(version):
    """No unions, refs or bare objects without properties: the API server would refuse them."""

    def check(node, where):
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, where
        if node.get("type") == "object":
            assert (
                "properties" in node
                or "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
            ), where
        for name, sub in node.get("properties", {}).items():
            check(sub, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            check(node["items"], f"{where}[]")
        if isinstance(node.get("additionalProperties"), dict):
            check(node["additionalProperties"], f"{where}{{}}")

    root = dict(version["schema"]["openAPIV3Schema"])
    root["properties"] = {k: v for k, v in root["properties"].items() if k != "metadata"}
    check(root, "")
