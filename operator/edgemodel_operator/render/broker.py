"""The managed Mosquitto broker: credentials Secret, ConfigMap, Deployment and Service.

Hardened (issue 12, item 6):

- **Authentication** is on and anonymous access is off. The password file is built at Pod
  start by an init container from the credentials Secret, so no hash is stored anywhere.
  No password is in any process's argv: the init container's shell writes
  ``username:password`` to the file with its ``printf`` builtin (no new process), and
  ``mosquitto_passwd -U`` hashes the file in place, with only the file's path as argument.
- **Two users, and an ACL** (:func:`acl`). The runtime's user (Secret keys ``username`` /
  ``password``) may read the sensor topics and write predictions; the devices' user
  (``device-username`` / ``device-password``) may only write the sensor topics. The ACL file
  is put together by the init container too, because a user-given Secret names the users.
- **Limits** (:func:`limits`): a payload size limit and a per-session queue bound that fit
  inside the container's memory limit.
- **Rotation:** the Pod template carries ``credentials_version`` (the live Secret's uid and
  resourceVersion, read by the operator at its I/O edge), so a changed Secret restarts the
  broker, which rebuilds its password file.

Pure functions; no I/O here.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

from edgemodel import api
from edgemodel_operator import names
from edgemodel_operator.render import common
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

__all__ = [
    "DEVICE_PASSWORD_KEY",
    "DEVICE_USERNAME_KEY",
    "MQTT_PORT",
    "Limits",
    "acl",
    "address",
    "config",
    "credentials_secret",
    "limits",
    "managed_credentials",
    "objects",
    "port",
    "predictions_filter",
    "predictions_topic",
    "runtime_tls",
    "secret",
]

MQTT_PORT = 1883
TLS_PORT = 8883
TLS_DIR = "/mosquitto/tls"
RUNTIME_CA_DIR = "/etc/edgemodel/broker-tls"
TLS_KEYS = ("tls.crt", "tls.key", "ca.crt")
BROKER_UID = 1883
COMPONENT = "broker"

RUNTIME_USERNAME = "edgemodel"
DEVICE_USERNAME = "device"
DEVICE_USERNAME_KEY = "device-username"
DEVICE_PASSWORD_KEY = "device-password"  # noqa: S105 - a key name  # nosec B105

MEMORY_LIMIT = 256 * 1024 * 1024
"""The broker container's memory limit, in bytes."""
MEMORY_LIMIT_QUANTITY = "256Mi"
"""The same, as the container's ``resources.limits.memory``."""
ANNOTATION_CREDENTIALS_VERSION = "edgeml.dev/credentials-version"
"""Pod-template annotation: a hash of the credentials Secret's uid and resourceVersion."""
MESSAGE_SIZE_LIMIT = 256 * 1024
"""Largest payload the broker accepts. Sensor readings are small JSON objects (about 100 bytes)."""
PACKET_OVERHEAD = 64 * 1024
"""What a PUBLISH packet may carry beyond its payload: a topic of at most 65535 bytes, the
fixed header and MQTT 5 properties. A larger packet disconnects its client."""
MESSAGE_BOOKKEEPING = 256
"""Bytes Mosquitto spends per queued message beyond its payload (its message and queue
entries and the topic copy of a short topic): an estimate on the safe side for readings."""

AUTH_FILE = "/mosquitto/auth/passwd"
ACL_FILE = "/mosquitto/auth/acl"
CONFIG_DIR = "/mosquitto/config"
RUNTIME_ACL_KEY = "acl-runtime"
DEVICE_ACL_KEY = "acl-device"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Mosquitto's memory-related settings for one broker."""

    memory_limit: int
    """Mosquitto's own heap limit (``memory_limit``): it refuses a message rather than be
    killed by the kernel at the container's limit."""
    max_queued_bytes: int
    """Payload bytes queued per session (``max_queued_bytes``)."""
    max_queued_messages: int
    """Messages queued per session (``max_queued_messages``)."""
    message_size_limit: int = MESSAGE_SIZE_LIMIT
    max_packet_size: int = MESSAGE_SIZE_LIMIT + PACKET_OVERHEAD


def limits(container_memory: int, sessions: int) -> Limits:
    """The queue bounds that fit ``sessions`` queuing sessions into ``container_memory`` bytes.

    How: Mosquitto's heap may use 7/8 of the container's limit (the rest is the process,
    its libraries and the kernel's socket buffers). Half of that heap is for the queues
    of offline or slow sessions, the other half for connections, in-flight messages and
    the persistence snapshot. Only the runtime's user may subscribe (the ACL), so the
    sessions that queue are the runtime replicas: at most ``scaling.maxReplicas``. Each
    session's share is split again between payload bytes (``max_queued_bytes``) and
    bookkeeping (``max_queued_messages`` times :data:`MESSAGE_BOOKKEEPING`), so a full queue
    costs at most its share, whatever the size of the messages in it. With 256 MiB and 3
    replicas: 18.7 MiB of payload or 76,458 readings per session.

    >>> limits(256 * 1024 * 1024, 3).max_queued_messages
    76458
    """
    if container_memory <= 0 or sessions <= 0:
        raise ValueError("container_memory and sessions must be positive")
    heap = container_memory * 7 // 8
    share = heap // 2 // sessions
    return Limits(
        memory_limit=heap,
        max_queued_bytes=share // 2,
        max_queued_messages=max(1, share // 2 // MESSAGE_BOOKKEEPING),
    )


def _acl_topics(access: str, topics: list[str]) -> str:
    # A filter with a control character matches no topic Mosquitto accepts, and a line break
    # would add an ACL line: such a filter is left out (it would grant nothing anyway).
    lines = [f"topic {access} {t}" for t in topics if t.isprintable()]
    return "".join(f"{line}\n" for line in lines)


def predictions_topic(em: EdgeModel) -> str:
    """The topic template the runtime publishes predictions to; ``{device}`` is the device id."""
    return em.spec.sensors.output_topic or f"edgemodel/{em.namespace}/{em.name}/predictions/{{device}}"


def predictions_filter(em: EdgeModel) -> str:
    """The topic filter of every prediction topic: each level holding ``{device}`` is a ``+``."""
    return "/".join("+" if "{device}" in level else level for level in predictions_topic(em).split("/"))


def acl(em: EdgeModel) -> dict[str, str]:
    """The ACL sections, without their ``user`` line (the init container adds it from the Secret).

    The runtime reads the sensor topics and writes (and reads back) predictions; the devices
    write the sensor topics. Nothing else is granted, ``$SYS`` included.
    """
    predictions = predictions_filter(em)
    return {
        RUNTIME_ACL_KEY: _acl_topics("read", list(em.spec.sensors.topics))
        + _acl_topics("readwrite", [predictions]),
        DEVICE_ACL_KEY: _acl_topics("write", list(em.spec.sensors.topics)),
    }


def port(em: EdgeModel) -> int:
    """The managed broker's one listener: 8883 with TLS (``tlsSecretRef``), else 1883."""
    return TLS_PORT if em.spec.broker.tls_secret_ref is not None else MQTT_PORT


def _listener(em: EdgeModel) -> str:
    if em.spec.broker.tls_secret_ref is None:
        return f"listener {MQTT_PORT}\n"
    # TLS only: no plain listener, so no password crosses the network in clear text.
    return (
        f"listener {TLS_PORT}\n"
        f"certfile {TLS_DIR}/tls.crt\n"
        f"keyfile {TLS_DIR}/tls.key\n"
        f"cafile {TLS_DIR}/ca.crt\n"
        "tls_version tlsv1.2\n"
    )


def config(em: EdgeModel) -> str:
    """``mosquitto.conf``: the listener, authentication, the ACL file, persistence and the limits."""
    bounds = limits(MEMORY_LIMIT, em.spec.scaling.max_replicas)
    return f"""\
# Rendered by edgemodel-operator. Authentication on, no anonymous access, an ACL per user.
per_listener_settings false
{_listener(em)}allow_anonymous false
password_file {AUTH_FILE}
acl_file {ACL_FILE}
persistence true
persistence_location /mosquitto/data/
autosave_interval 30
# Limits: see edgemodel_operator.render.broker.limits.
message_size_limit {bounds.message_size_limit}
max_packet_size {bounds.max_packet_size}
memory_limit {bounds.memory_limit}
max_queued_bytes {bounds.max_queued_bytes}
max_queued_messages {bounds.max_queued_messages}
log_dest stdout
log_type error
log_type warning
log_type notice
"""


PASSWORDS_SCRIPT = f"""\
set -eu
umask 077
nl="
"
device="${{MQTT_DEVICE_USERNAME:-}}"
device_password="${{MQTT_DEVICE_PASSWORD:-}}"
case "$MQTT_USERNAME" in *:*|"") echo "the broker username is empty or holds a colon" >&2; exit 1;; esac
case "$MQTT_USERNAME$MQTT_PASSWORD" in
  *"$nl"*) echo "the broker credentials hold a line break" >&2; exit 1;; esac
if [ -n "$device" ]; then
  case "$device" in *:*) echo "the devices' username holds a colon" >&2; exit 1;; esac
  case "$device$device_password" in
    *"$nl"*) echo "the devices' credentials hold a line break" >&2; exit 1;; esac
  if [ "$device" = "$MQTT_USERNAME" ]; then echo "the devices' username is the runtime's" >&2; exit 1; fi
  if [ -z "$device_password" ]; then echo "the devices' password is empty" >&2; exit 1; fi
fi
printf '%s:%s\\n' "$MQTT_USERNAME" "$MQTT_PASSWORD" > {AUTH_FILE}
printf 'user %s\\n' "$MQTT_USERNAME" > {ACL_FILE}
cat {CONFIG_DIR}/{RUNTIME_ACL_KEY} >> {ACL_FILE}
if [ -n "$device" ]; then
  printf '%s:%s\\n' "$device" "$device_password" >> {AUTH_FILE}
  printf 'user %s\\n' "$device" >> {ACL_FILE}
  cat {CONFIG_DIR}/{DEVICE_ACL_KEY} >> {ACL_FILE}
fi
mosquitto_passwd -U {AUTH_FILE}
chmod 0600 {AUTH_FILE} {ACL_FILE}
"""
"""The init container's script: the passwords reach the file through the shell's ``printf``
builtin and stay out of every argv; ``mosquitto_passwd -U`` replaces them with their hashes.
It writes the ACL file's ``user`` lines from the Secret's usernames, each followed by its
section from the ConfigMap. The devices' user is optional (a user-given Secret may lack it)."""


def address(em: EdgeModel) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of the broker the runtime connects to."""
    broker = em.spec.broker
    if broker.managed:
        return f"{names.broker(em.name)}.{em.namespace}.svc", port(em), broker.tls_secret_ref is not None
    assert broker.host is not None
    tls = bool(broker.tls)
    return broker.host, broker.port or (8883 if tls else MQTT_PORT), tls


def runtime_tls(em: EdgeModel) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(env, volumes, mounts)`` that let the runtime trust the managed broker's TLS listener:
    the ``ca.crt`` of ``tlsSecretRef`` alone (never the key), and ``EDGEMODEL_BROKER_CA_FILE``."""
    tls = em.spec.broker.tls_secret_ref
    if not em.spec.broker.managed or tls is None:
        return [], [], []
    return (
        [{"name": "EDGEMODEL_BROKER_CA_FILE", "value": f"{RUNTIME_CA_DIR}/ca.crt"}],
        [
            {
                "name": "broker-tls",
                "secret": {"secretName": tls.name, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
            }
        ],
        [{"name": "broker-tls", "mountPath": RUNTIME_CA_DIR, "readOnly": True}],
    )


def credentials_secret(em: EdgeModel) -> str | None:
    """Name of the Secret holding ``username``/``password``, or None for an open external broker."""
    if em.spec.broker.credentials_secret is not None:
        return em.spec.broker.credentials_secret.name
    if em.spec.broker.managed:
        return names.broker_credentials(em.name)
    return None


def managed_credentials(live: Mapping[str, str], *, fresh: tuple[str, str]) -> dict[str, str]:
    """The generated Secret's data: what the live Secret holds wins, missing keys are filled.

    ``live`` is the live Secret's decoded data (empty when there is none); ``fresh`` two
    random passwords from the caller, for the runtime and the devices. A password someone
    rotated in the Secret is kept, never reverted; a Secret from before the devices' user
    gains that user.
    """
    defaults = {
        "username": RUNTIME_USERNAME,
        "password": fresh[0],
        DEVICE_USERNAME_KEY: DEVICE_USERNAME,
        DEVICE_PASSWORD_KEY: fresh[1],
    }
    return {key: live.get(key) or value for key, value in defaults.items()}


def _claim(em: EdgeModel, persistence: api.BrokerPersistence) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": persistence.size}},
    }
    if persistence.storage_class_name is not None:
        spec["storageClassName"] = persistence.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": common.metadata(em, names.broker_data(em.name), COMPONENT),
        "spec": spec,
    }


def secret(em: EdgeModel, data: Mapping[str, str], resource_version: str | None) -> dict[str, Any]:
    """The generated credentials Secret with ``data`` (see :func:`managed_credentials`)."""
    metadata = common.metadata(em, names.broker_credentials(em.name), COMPONENT)
    if resource_version:
        # Apply only over the Secret that was read: a rotation between the read and this apply
        # makes the apply conflict (and the next pass read the rotated values), never revert it.
        metadata = {**metadata, "resourceVersion": resource_version}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "data": {
            k: base64.b64encode(v.encode(errors="surrogateescape")).decode() for k, v in sorted(data.items())
        },
    }


def objects(
    em: EdgeModel,
    settings: Settings,
    *,
    generated_password: str | None,
    credentials: Mapping[str, str] | None = None,
    credentials_version: str = "",
) -> list[dict[str, Any]]:
    """Every object of the managed broker; empty for an external broker.

    For a generated Secret, ``credentials`` is its data (:func:`managed_credentials`); or,
    older form, ``generated_password`` alone is the runtime's password (no devices' user).
    Both are unused when the user gave a Secret. ``credentials_version`` identifies the
    Secret's content as the API server holds it (``<uid>/<resourceVersion>``, empty before
    it exists): it goes into the Pod template, so a rotated Secret restarts the broker.
    """
    if not em.spec.broker.managed:
        return []
    out: list[dict[str, Any]] = []
    secret_name = credentials_secret(em)
    assert secret_name is not None
    if em.spec.broker.credentials_secret is None:
        if credentials is None:
            assert generated_password is not None
            credentials = {"username": RUNTIME_USERNAME, "password": generated_password}
        version = credentials_version.partition("/")[2] or None
        out.append(secret(em, credentials, version))
    name = names.broker(em.name)
    config_name = names.broker_config(em.name)
    conf = config(em)
    sections = acl(em)
    out.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": common.metadata(em, config_name, COMPONENT),
            "data": {"mosquitto.conf": conf, **sections},
        }
    )
    persistence = em.spec.broker.persistence
    if persistence is not None:
        out.append(_claim(em, persistence))
    selector = names.selector(em.name, COMPONENT)

    def env(variable: str, key: str, *, optional: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": secret_name, "key": key}
        if optional:
            ref["optional"] = True
        return {"name": variable, "valueFrom": {"secretKeyRef": ref}}

    secret_env = [
        env("MQTT_USERNAME", "username"),
        env("MQTT_PASSWORD", "password"),
        # A user-given Secret may have no devices' user; the generated one always has.
        env("MQTT_DEVICE_USERNAME", DEVICE_USERNAME_KEY, optional=True),
        env("MQTT_DEVICE_PASSWORD", DEVICE_PASSWORD_KEY, optional=True),
    ]
    data_volume: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": names.broker_data(em.name)}}
        if persistence is not None
        else {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}
    )
    tls = em.spec.broker.tls_secret_ref
    tls_volumes: list[dict[str, Any]] = []
    tls_mounts: list[dict[str, Any]] = []
    if tls is not None:
        # Readable by the broker's group (fsGroup), by no one else; the kubelet refreshes the
        # files when the Secret changes, and Mosquitto reads them again when it restarts.
        tls_volumes = [
            {
                "name": "tls",
                "secret": {
                    "secretName": tls.name,
                    "items": [{"key": k, "path": k} for k in TLS_KEYS],
                    "defaultMode": 0o440,
                },
            }
        ]
        tls_mounts = [{"name": "tls", "mountPath": TLS_DIR, "readOnly": True}]
    out.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": common.metadata(em, name, COMPONENT),
            "spec": {
                "replicas": 1,
                # Recreate: the old Pod lets go of the data volume (ReadWriteOnce) first.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": names.labels(em.name, COMPONENT),
                        "annotations": {
                            names.ANNOTATION_CONFIG_HASH: common.content_hash(
                                conf, sections, secret_name, PASSWORDS_SCRIPT, tls_volumes
                            ),
                            ANNOTATION_CREDENTIALS_VERSION: common.content_hash(credentials_version),
                        },
                    },
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": common.pod_security(BROKER_UID),
                        **common.placement(em),
                        "initContainers": [
                            {
                                "name": "passwords",
                                "image": settings.broker_image,
                                "imagePullPolicy": settings.image_pull_policy,
                                "command": ["sh", "-c", PASSWORDS_SCRIPT],
                                "env": secret_env,
                                "securityContext": common.container_security(),
                                "volumeMounts": [
                                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                    {"name": "auth", "mountPath": "/mosquitto/auth"},
                                    # mosquitto_passwd -U works through tmpfile(), in /tmp.
                                    {"name": "tmp", "mountPath": common.SCRATCH},
                                ],
                            }
                        ],
                        "containers": [
                            {
                                "name": "mosquitto",
                                "image": settings.broker_image,
                                "imagePullPolicy": settings.image_pull_policy,
                                "command": ["mosquitto", "-c", f"{CONFIG_DIR}/mosquitto.conf"],
                                "ports": [{"name": "mqtt", "containerPort": port(em)}],
                                "readinessProbe": {"tcpSocket": {"port": "mqtt"}, "periodSeconds": 5},
                                "livenessProbe": {"tcpSocket": {"port": "mqtt"}, "periodSeconds": 10},
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "32Mi"},
                                    "limits": {"memory": MEMORY_LIMIT_QUANTITY},
                                },
                                "securityContext": common.container_security(),
                                "volumeMounts": [
                                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                    {"name": "auth", "mountPath": "/mosquitto/auth", "readOnly": True},
                                    {"name": "data", "mountPath": "/mosquitto/data"},
                                    *tls_mounts,
                                ],
                            }
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": config_name}},
                            {"name": "auth", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                            data_volume,
                            *tls_volumes,
                        ],
                    },
                },
            },
        }
    )
    out.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": common.metadata(em, name, COMPONENT),
            "spec": {
                "selector": selector,
                "ports": [{"name": "mqtt", "port": port(em), "targetPort": "mqtt", "protocol": "TCP"}],
            },
        }
    )
    return out
