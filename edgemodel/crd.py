"""Generate the EdgeModel CustomResourceDefinition from the pydantic models in :mod:`edgemodel.api`.

The CRD YAML committed in ``crds/`` is the output of :func:`render_crd`; a test fails when
the two differ, so the API server and pydantic can never disagree on the schema. Regenerate
with ``python -m edgemodel.crd > crds/edgemodel.yaml``.

Pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a *structural* OpenAPI v3
schema. The translation here inlines ``$ref``, turns ``Optional[X]`` into a non-required
``X``, rewrites numeric ``exclusiveMinimum`` into the OpenAPI boolean form, and keeps
``x-kubernetes-*`` extensions as they are.

Pure data manipulation; no I/O here except in ``main``.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pydantic
import yaml

from edgemodel import api

__all__ = ["PRINTER_COLUMNS", "crd_yaml", "openapi_schema", "render_crd"]

_KEEP = {
    "type",
    "description",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "enum",
    "format",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "nullable",
}

# `kubectl get edgemodels`: health at a glance.
PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the inference stack is serving a model",
    },
    {
        "name": "Drift",
        "type": "number",
        "jsonPath": ".status.drift.rmse",
        "description": "Rolling RMSE of the worst replica with a full window",
    },
    {
        "name": "Threshold",
        "type": "number",
        "jsonPath": ".spec.drift.threshold",
        "description": "RMSE above which the model counts as drifted",
    },
    {
        "name": "Model",
        "type": "string",
        "jsonPath": ".status.model.version",
        "description": "Registered model version serving now",
    },
    {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".status.replicas",
        "description": "Ready inference replicas",
    },
    {
        "name": "Drifted",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Drifted")].status',
        "priority": 1,
        "description": "Whether drift is detected",
    },
    {
        "name": "Retraining",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Retraining")].status',
        "priority": 1,
        "description": "Whether a retraining Job is running",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "priority": 1,
        "description": "Why the EdgeModel is or is not Ready",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every ``$ref`` into ``node``."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            target.update(rest)
            return _resolve(target, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def _strip_optional(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` becomes ``X``; outer description and extensions win."""
    options = node.get("anyOf")
    if not options:
        return node
    real = [o for o in options if o.get("type") != "null"]
    if len(real) != 1:
        raise ValueError(f"cannot express a union in a structural schema: {node}")
    merged = dict(real[0])
    for key, value in node.items():
        if key != "anyOf":
            merged[key] = value
    return merged


def _convert(node: dict[str, Any]) -> dict[str, Any]:
    node = _strip_optional(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEEP:
            continue
        elif key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _convert(value)
        elif key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "default":
            if value is None:
                continue
            # Object defaults are pydantic's own, with unset optionals left out: CEL rules
            # on the object are checked against the default as written.
            out[key] = _drop_none(value)
        elif key == "required":
            out[key] = sorted(value)
        else:
            out[key] = value
    if "properties" in out:
        out.setdefault("type", "object")
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, as the CRD carries it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(_resolve(raw, defs))


def _status_schema() -> dict[str, Any]:
    schema = openapi_schema(api.EdgeModelStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def render_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition object."""
    spec_schema = openapi_schema(api.EdgeModelSpec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/part-of": "edgemodel"},
        },
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": [api.SHORT_NAME],
                "categories": ["edgeml", "all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "EdgeModel keeps a machine-learning model at the "
                            "edge healthy: it serves predictions from MQTT sensor readings, "
                            "watches drift and retrains.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML text committed in ``crds/``."""
    header = "# Generated by `python -m edgemodel.crd` from edgemodel/api.py. Do not edit.\n"
    return header + yaml.safe_dump(render_crd(), sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(crd_yaml())


if __name__ == "__main__":
    main()
