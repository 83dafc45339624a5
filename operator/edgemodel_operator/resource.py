"""One EdgeModel as the operator sees it: identity, parsed spec and current status.

Pure data and parsing; no I/O here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic

from edgemodel import api

__all__ = ["EdgeModel", "InvalidSpecError"]


class InvalidSpecError(ValueError):
    """The stored spec does not parse; retrying will not help until it changes."""


@dataclasses.dataclass(frozen=True)
class EdgeModel:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: api.EdgeModelSpec
    status: api.EdgeModelStatus
    annotations: Mapping[str, str]

    @property
    def model_name(self) -> str:
        return self.spec.model_name(self.name)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> EdgeModel:
        """Parse an EdgeModel object as the API server returns it."""
        meta = body.get("metadata") or {}
        try:
            spec = api.EdgeModelSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as exc:
            raise InvalidSpecError(str(exc)) from exc
        try:
            status = api.EdgeModelStatus.model_validate(body.get("status") or {})
        except pydantic.ValidationError:
            # A status written by something else that we cannot read is rebuilt from scratch.
            status = api.EdgeModelStatus()
        return cls(
            name=str(meta["name"]),
            namespace=str(meta["namespace"]),
            uid=str(meta["uid"]),
            generation=int(meta.get("generation") or 0),
            spec=spec,
            status=status,
            annotations=dict(meta.get("annotations") or {}),
        )
