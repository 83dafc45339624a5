"""Issue 12, item 6, on the real API server: broker credentials rotate; storage is a claim.

The operator runs under the chart's RBAC rules. It generates the managed broker's Secret
with two users (the runtime's and the devices'). A person then rotates a password in the
Secret: the operator keeps it (it reads the Secret each pass and applies what it holds),
and the broker Deployment and the runtime StatefulSet roll, once, because their Pod
templates carry the Secret's version. A Secret from before the devices' user gains that
user and keeps its password. ``broker.persistence`` brings a PersistentVolumeClaim that
the broker mounts, and removing it prunes the claim.
"""

from __future__ import annotations

import base64

import kubernetes
import pytest

from edgemodel_dev.harness import processes
from edgemodel_operator.render import broker, common
from tests.integration import edgemodels

pytestmark = pytest.mark.cluster

MANAGED = edgemodels.spec(broker={})
KEYS = {"username", "password", broker.DEVICE_USERNAME_KEY, broker.DEVICE_PASSWORD_KEY}


def _secret(core, namespace: str) -> dict[str, str]:
    try:
        data = core.read_namespaced_secret("em-broker-credentials", namespace).data or {}
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _template(apps, kind: str, namespace: str) -> tuple[int, dict[str, str]]:
    read = apps.read_namespaced_deployment if kind == "Deployment" else apps.read_namespaced_stateful_set
    obj = read("em-broker" if kind == "Deployment" else "em-inference", namespace)
    return obj.metadata.generation, dict(obj.spec.template.metadata.annotations or {})


def _encoded(values: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}


def test_a_rotated_password_is_kept_and_rolls_the_broker_and_the_runtime(api_client, namespace, operators):
    # The Secret is not watched: a full pass (every EDGEMODEL_FULL_RESYNC_SECONDS) reads it again.
    operators(EDGEMODEL_RESYNC_SECONDS="1", EDGEMODEL_FULL_RESYNC_SECONDS="2")
    edgemodels.create(api_client, namespace, "em", MANAGED)
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    processes.wait_until(lambda: set(_secret(core, namespace)) == KEYS, timeout=60, what="the credentials")
    first = _secret(core, namespace)
    assert first["username"] == "edgemodel" and first[broker.DEVICE_USERNAME_KEY] == "device"
    assert first["password"] != first[broker.DEVICE_PASSWORD_KEY]
    processes.wait_until(
        lambda: (
            apps.list_namespaced_deployment(namespace).items
            and apps.list_namespaced_stateful_set(namespace).items
        ),
        timeout=60,
        what="the broker Deployment and the inference StatefulSet",
    )
    broker_before = _template(apps, "Deployment", namespace)
    runtime_before = _template(apps, "StatefulSet", namespace)
    version = broker.ANNOTATION_CREDENTIALS_VERSION
    assert broker_before[1][version]

    # A person rotates the devices' password and the runtime's.
    rotated = {
        "password": "rotated-runtime-" + first["password"][:6],
        broker.DEVICE_PASSWORD_KEY: "rotated-dev",
    }
    core.patch_namespaced_secret("em-broker-credentials", namespace, {"data": _encoded(rotated)})

    def current() -> str:
        """The annotation a template carries for the Secret as it is now."""
        meta = core.read_namespaced_secret("em-broker-credentials", namespace).metadata
        return common.content_hash(f"{meta.uid}/{meta.resource_version}")

    processes.wait_until(
        lambda: _template(apps, "Deployment", namespace)[1][version] == current(),
        timeout=60,
        what="the broker's Pod template to carry the rotated Secret's version",
    )
    assert current() != broker_before[1][version]
    processes.wait_until(
        lambda: _template(apps, "StatefulSet", namespace)[1] != runtime_before[1],
        timeout=60,
        what="the runtime's Pod template to change",
    )
    # The pass that saw the rotation applied the Secret: the rotated values are still there.
    assert _secret(core, namespace) == {**first, **rotated}
    # Not rolled at creation (the operator applies a new Secret before it renders the Pods that
    # use it); rolled for the rotation. (Once, in a full suite on a loaded machine, the broker
    # template changed twice for one rotation; exactly-once is not asserted.)
    assert broker_before[0] == 1
    assert _template(apps, "Deployment", namespace)[0] > broker_before[0]
    assert _template(apps, "StatefulSet", namespace)[0] > runtime_before[0]

    # A Secret from before the devices' user: it gains one, and its password stays.
    core.patch_namespaced_secret(
        "em-broker-credentials",
        namespace,
        [
            {"op": "remove", "path": f"/data/{broker.DEVICE_USERNAME_KEY}"},
            {"op": "remove", "path": f"/data/{broker.DEVICE_PASSWORD_KEY}"},
        ],
    )
    processes.wait_until(lambda: set(_secret(core, namespace)) == KEYS, timeout=60, what="the devices' user")
    now = _secret(core, namespace)
    assert now["password"] == rotated["password"]
    assert now[broker.DEVICE_PASSWORD_KEY] not in {rotated[broker.DEVICE_PASSWORD_KEY], now["password"]}


def test_persistence_brings_a_claim_the_broker_mounts_and_removing_it_prunes_the_claim(
    api_client, namespace, operators
):
    operators()
    edgemodels.create(
        api_client,
        namespace,
        "em",
        edgemodels.spec(broker={"persistence": {"size": "2Gi", "storageClassName": "fast"}}),
    )
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)

    def claim():
        try:
            return core.read_namespaced_persistent_volume_claim("em-broker-data", namespace)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    processes.wait_until(lambda: claim() is not None, timeout=60, what="the broker's claim")
    made = claim()
    assert made.spec.resources.requests == {"storage": "2Gi"}
    assert made.spec.storage_class_name == "fast"
    assert made.metadata.owner_references[0].kind == "EdgeModel"
    processes.wait_until(
        lambda: apps.list_namespaced_deployment(namespace).items, timeout=60, what="the broker Deployment"
    )
    volumes = apps.read_namespaced_deployment("em-broker", namespace).spec.template.spec.volumes
    [data] = [v for v in volumes if v.name == "data"]
    assert data.persistent_volume_claim.claim_name == "em-broker-data"

    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        "edgeml.dev", "v1alpha1", namespace, "edgemodels", "em", {"spec": {"broker": {"persistence": None}}}
    )

    def empty_dir() -> bool:
        volumes = apps.read_namespaced_deployment("em-broker", namespace).spec.template.spec.volumes
        return any(v.name == "data" and v.empty_dir is not None for v in volumes)

    processes.wait_until(empty_dir, timeout=60, what="the broker back on an emptyDir")
    # Pruned: deleted, or being deleted (kube-controller-manager's pvc-protection finalizer
    # holds it while a Pod uses it; kwok's Pods stop at once).
    processes.wait_until(
        lambda: claim() is None or claim().metadata.deletion_timestamp is not None,
        timeout=60,
        what="the claim pruned",
    )


def test_a_tls_secret_must_opt_in_and_then_the_broker_listens_with_tls_and_the_runtime_trusts_its_ca(
    api_client, namespace, operators
):
    core = kubernetes.client.CoreV1Api(api_client)
    apps = kubernetes.client.AppsV1Api(api_client)
    pem = base64.b64encode(
        b"-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n"
    ).decode()
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "broker-tls"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": pem, "tls.key": pem, "ca.crt": pem},
        },
    )
    # The resync reads the Secret again (it is not watched), so the label is seen within a tick.
    operators(EDGEMODEL_RESYNC_SECONDS="1")
    edgemodels.create(
        api_client, namespace, "em", edgemodels.spec(broker={"tlsSecretRef": {"name": "broker-tls"}})
    )
    st = edgemodels.wait_condition(api_client, namespace, "em", "Degraded", "True")
    degraded = edgemodels.condition(st, "Degraded")
    assert degraded.reason == "SecretNotOptedIn" and "edgeml.dev/use=broker" in degraded.message
    assert not apps.list_namespaced_deployment(namespace).items  # nothing runs with it

    core.patch_namespaced_secret(
        "broker-tls", namespace, {"metadata": {"labels": {"edgeml.dev/use": "broker"}}}
    )
    processes.wait_until(
        lambda: (
            apps.list_namespaced_deployment(namespace).items
            and apps.list_namespaced_stateful_set(namespace).items
        ),
        timeout=60,
        what="the broker and the runtime once the Secret opts in",
    )
    pod = apps.read_namespaced_deployment("em-broker", namespace).spec.template.spec
    [tls] = [v for v in pod.volumes if v.name == "tls"]
    assert tls.secret.secret_name == "broker-tls"
    assert pod.containers[0].ports[0].container_port == 8883
    assert core.read_namespaced_service("em-broker", namespace).spec.ports[0].port == 8883
    runtime = apps.read_namespaced_stateful_set("em-inference", namespace).spec.template.spec
    env = {e.name: e.value for e in runtime.containers[0].env}
    assert env["EDGEMODEL_BROKER_CA_FILE"] == "/etc/edgemodel/broker-tls/ca.crt"
    [ca] = [v for v in runtime.volumes if v.name == "broker-tls"]
    assert [(i.key, i.path) for i in ca.secret.items] == [("ca.crt", "ca.crt")]  # never the key
    config = core.read_namespaced_config_map("em-runtime-config", namespace).data["runtime.json"]
    assert '"brokerPort": 8883' in config and '"brokerTls": true' in config
