"""MLflow credentials for the runtime and trainer containers (issue 12, item 5).

``spec.model.trackingSecretRef`` names a Secret (labelled ``edgeml.dev/use=tracking``, see
:mod:`edgemodel_operator.trust`). Its credentials reach a container only as environment
variables taken from the Secret by the kubelet (``secretKeyRef``), with the names MLflow's
client reads itself: ``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``,
``MLFLOW_TRACKING_TOKEN``. Each key is optional, so a Secret may hold a token or a username
and password. Its optional ``ca.crt`` is mounted as a file, and ``EDGEMODEL_TRACKING_CA_FILE``
names it; the runtime and the trainer point ``MLFLOW_TRACKING_SERVER_CERT_PATH`` at it when
the file is there. No value is ever in a ConfigMap, an argument or an annotation: what is
rendered here names the Secret and its keys only.

Pure functions; no I/O here.
"""

from __future__ import annotations

from typing import Any

from edgemodel import contracts
from edgemodel_operator import names
from edgemodel_operator.resource import EdgeModel

__all__ = ["CA_ENV", "CA_FILE", "CA_KEY", "env", "mounts", "volumes"]

CA_KEY = "ca.crt"
"""The tracking Secret's key holding a CA bundle (PEM) to trust for an https tracking URI."""
CA_DIR = "/etc/edgemodel/tracking"
CA_FILE = f"{CA_DIR}/{CA_KEY}"
CA_ENV = contracts.TRACKING_CA_ENV
"""Names the mounted CA bundle; the processes use it only if the file exists."""
VOLUME = "tracking-ca"


def env(em: EdgeModel) -> list[dict[str, Any]]:
    """The credential variables, each a ``secretKeyRef`` to an optional key; empty without a Secret."""
    ref = em.spec.model.tracking_secret_ref
    if ref is None:
        return []
    return [
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key, "optional": True}}}
            for key in names.TRACKING_KEYS
        ),
        {"name": CA_ENV, "value": CA_FILE},
    ]


def volumes(em: EdgeModel) -> list[dict[str, Any]]:
    """The Secret's ``ca.crt`` alone, as an optional volume (absent key: an empty folder)."""
    ref = em.spec.model.tracking_secret_ref
    if ref is None:
        return []
    return [
        {
            "name": VOLUME,
            "secret": {
                "secretName": ref.name,
                "optional": True,
                "items": [{"key": CA_KEY, "path": CA_KEY}],
            },
        }
    ]


def mounts(em: EdgeModel) -> list[dict[str, Any]]:
    if em.spec.model.tracking_secret_ref is None:
        return []
    return [{"name": VOLUME, "mountPath": CA_DIR, "readOnly": True}]
