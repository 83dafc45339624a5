"""Pieces every renderer uses: object metadata, content hashes, hardened containers.

Pure functions; no I/O here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from edgemodel_operator import names
from edgemodel_operator.resource import EdgeModel

__all__ = ["container_security", "content_hash", "metadata", "placement", "pod_security"]

RUNTIME_UID = 10001
# Where containers get a writable scratch emptyDir, since their root file system is read-only.
SCRATCH = "/tmp"  # noqa: S108 - an emptyDir mount point, not a temp file  # nosec B108


def metadata(em: EdgeModel, name: str, component: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": em.namespace,
        "labels": names.labels(em.name, component),
        "ownerReferences": [em.owner_reference()],
    }
    meta.update(extra)
    return meta


def content_hash(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts, to roll Pods when their config changes."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def pod_security(uid: int = RUNTIME_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def placement(em: EdgeModel) -> dict[str, Any]:
    """nodeSelector and tolerations passed through for edge nodes."""
    out: dict[str, Any] = {}
    if em.spec.placement.node_selector:
        out["nodeSelector"] = dict(em.spec.placement.node_selector)
    if em.spec.placement.tolerations:
        out["tolerations"] = [t.to_wire() for t in em.spec.placement.tolerations]
    return out


def resources(em: EdgeModel, default: dict[str, dict[str, str]]) -> dict[str, Any]:
    res = em.spec.runtime.resources
    if res is None:
        return default
    out: dict[str, Any] = {}
    if res.requests is not None:
        out["requests"] = res.requests.to_wire()
    if res.limits is not None:
        out["limits"] = res.limits.to_wire()
    return out
