"""What the operator will do on an EdgeModel author's behalf: no confused deputy (issue 12, item 4).

Whoever may create an EdgeModel may name an image and a Secret in its spec; the operator
then runs that image and mounts that Secret with its own, broader rights. So it acts only
on images from its allow-list and on Secrets that opted in with a label:

- **Images.** ``spec.runtime.image`` (the runtime and trainer image) must come from the
  repository of the operator's own ``image`` setting, or from one in
  ``allowed_image_repositories``. An entry ending in ``/`` allows every repository under it.
  The repository is compared as written: no registry or ``library/`` is filled in.
- **Secrets.** ``spec.broker.credentialsSecret`` must carry the label
  ``edgeml.dev/use=broker``, and ``spec.model.trackingSecretRef`` the label
  ``edgeml.dev/use=tracking`` (issue 12, item 5). The tracking Secret must also hold
  ``MLFLOW_TRACKING_TOKEN``, or both ``MLFLOW_TRACKING_USERNAME`` and
  ``MLFLOW_TRACKING_PASSWORD``: only the key names are looked at, never the values.

Pure functions; no I/O here: the caller reads the Secret.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from edgemodel_operator import names
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = [
    "BROKER_TLS_KEYS",
    "IMAGE_NOT_ALLOWED",
    "SECRET_INVALID",
    "SECRET_NOT_OPTED_IN",
    "USE_BROKER",
    "USE_LABEL",
    "USE_TRACKING",
    "Refusal",
    "broker_tls_secret_refusal",
    "image_allowed",
    "image_refusal",
    "repository",
    "secret_refusal",
    "tracking_secret_refusal",
]

USE_LABEL = "edgeml.dev/use"
"""The label a Secret carries to opt in to a use by the operator."""
USE_BROKER = "broker"
USE_TRACKING = "tracking"
IMAGE_NOT_ALLOWED = "ImageNotAllowed"
SECRET_NOT_OPTED_IN = "SecretNotOptedIn"  # noqa: S105 - a condition reason  # nosec B105
SECRET_INVALID = "SecretInvalid"  # noqa: S105 - a condition reason  # nosec B105


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why the operator will not act on an EdgeModel: a condition reason and its message."""

    reason: str
    message: str


def repository(image: str) -> str:
    """The repository of an image reference: without its digest and tag.

    >>> repository("registry.example:5000/team/edgemodel:1.2@sha256:abc")
    'registry.example:5000/team/edgemodel'
    >>> repository("edgemodel")
    'edgemodel'
    """
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def image_allowed(image: str, settings: Settings) -> bool:
    """Whether ``image`` comes from the operator's own repository or an allowed one.

    >>> s = Settings(image="ghcr.io/edgemodel/edgemodel:0.1", allowed_image_repositories=("reg.example/ml/",))
    >>> [image_allowed(i, s) for i in (
    ...     "ghcr.io/edgemodel/edgemodel:0.2.0", "ghcr.io/edgemodel/edgemodel-evil:1",
    ...     "reg.example/ml/runtime@sha256:ab", "reg.example/mlx/runtime:1")]
    [True, False, True, False]
    """
    repo = repository(image)
    for allowed in (repository(settings.image), *settings.allowed_image_repositories):
        if allowed.endswith("/"):
            if repo.startswith(allowed) and len(repo) > len(allowed):
                return True
        elif repo == allowed:
            return True
    return False


def image_refusal(em: EdgeModel, settings: Settings) -> Refusal | None:
    image = em.spec.runtime.image
    if image is None or image_allowed(image, settings):
        return None
    allowed = ", ".join([repository(settings.image), *settings.allowed_image_repositories])
    return Refusal(
        IMAGE_NOT_ALLOWED,
        f"spec.runtime.image {image} is not from an allowed repository ({allowed}); the operator "
        "runs no runtime or trainer with it. Use an allowed image, or ask the operator's admin to "
        "add its repository (the chart's allowedImageRepositories)",
    )


def _opt_in_refusal(field: str, name: str, secret: Mapping[str, Any] | None, use: str) -> Refusal | None:
    if secret is None:
        return Refusal(
            SECRET_NOT_OPTED_IN,
            f"Secret {name} ({field}) does not exist; create it with the label {USE_LABEL}={use}",
        )
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(USE_LABEL) != use:
        return Refusal(
            SECRET_NOT_OPTED_IN,
            f"Secret {name} ({field}) lacks the label {USE_LABEL}={use}; "
            "the operator mounts only Secrets that opt in. Label it: "
            f"kubectl label secret {name} {USE_LABEL}={use}",
        )
    return None


def secret_refusal(em: EdgeModel, secret: Mapping[str, Any] | None) -> Refusal | None:
    """Why ``spec.broker.credentialsSecret`` may not be used; ``secret`` is what the API server holds."""
    ref = em.spec.broker.credentials_secret
    if ref is None:
        return None
    return _opt_in_refusal("spec.broker.credentialsSecret", ref.name, secret, USE_BROKER)


BROKER_TLS_KEYS = ("tls.crt", "tls.key", "ca.crt")
"""What ``spec.broker.tlsSecretRef`` must hold: a kubernetes.io/tls Secret and its CA."""


def broker_tls_secret_refusal(em: EdgeModel, secret: Mapping[str, Any] | None) -> Refusal | None:
    """Why ``spec.broker.tlsSecretRef`` may not be used: it opts in like the credentials
    (``edgeml.dev/use=broker``) and holds the certificate, its key and the CA. Key names only."""
    ref = em.spec.broker.tls_secret_ref
    if ref is None or not em.spec.broker.managed:
        return None
    field = "spec.broker.tlsSecretRef"
    refusal = _opt_in_refusal(field, ref.name, secret, USE_BROKER)
    if refusal is not None or secret is None:
        return refusal
    keys = set(secret.get("data") or {})
    missing = [k for k in BROKER_TLS_KEYS if k not in keys]
    if not missing:
        return None
    return Refusal(
        SECRET_INVALID,
        f"Secret {ref.name} ({field}) lacks {', '.join(missing)}; it has the keys "
        f"[{', '.join(sorted(keys))}]. Give it the broker's certificate (tls.crt, tls.key) and the CA "
        "that signed it (ca.crt)",
    )


def tracking_secret_refusal(em: EdgeModel, secret: Mapping[str, Any] | None) -> Refusal | None:
    """Why ``spec.model.trackingSecretRef`` may not be used; ``secret`` is what the API server holds.

    Only the label and the key names are read: no value goes into a message.
    """
    ref = em.spec.model.tracking_secret_ref
    if ref is None:
        return None
    field = "spec.model.trackingSecretRef"
    refusal = _opt_in_refusal(field, ref.name, secret, USE_TRACKING)
    if refusal is not None or secret is None:
        return refusal
    keys = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
    username, password, token = names.TRACKING_KEYS
    if token in keys or {username, password} <= keys:
        return None
    return Refusal(
        SECRET_INVALID,
        f"Secret {ref.name} ({field}) holds neither {token} nor both {username} and {password}; "
        f"it has the keys [{', '.join(sorted(keys))}]. Add the credentials MLflow expects",
    )
