"""The managed broker's rendering (issue 12, item 6): limits, ACL, two users, rotation, storage."""

from __future__ import annotations

import base64
import copy
import doctest

import pydantic
import pytest

from edgemodel import api
from edgemodel_operator import names, render, trust
from edgemodel_operator.render import broker, inference
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings
from tests import specs

SETTINGS = Settings()
CREDENTIALS = broker.managed_credentials({}, fresh=("rt-pw", "dev-pw"))


def _em(**broker_spec: object) -> EdgeModel:
    spec = copy.deepcopy(specs.VALID_SPEC)
    spec["broker"] = broker_spec
    spec["scaling"] = {"minReplicas": 1, "maxReplicas": 4}
    return EdgeModel.from_body({"metadata": {"name": "em", "namespace": "ns", "uid": "u"}, "spec": spec})


def _objects(em: EdgeModel, version: str = "") -> dict[str, dict]:
    objs = broker.objects(
        em, SETTINGS, generated_password=None, credentials=CREDENTIALS, credentials_version=version
    )
    return {o["kind"]: o for o in objs}


def _conf_value(conf: str, key: str) -> int:
    [line] = [x for x in conf.splitlines() if x.startswith(f"{key} ")]
    return int(line.split()[1])


@pytest.mark.parametrize("sessions", [1, 3, 10, 1000])
@pytest.mark.parametrize("memory", [64 * 2**20, 256 * 2**20, 2**30])
def test_every_full_queue_together_fits_in_half_the_brokers_heap(memory, sessions):
    bounds = broker.limits(memory, sessions)
    assert bounds.memory_limit < memory
    per_session = bounds.max_queued_bytes + bounds.max_queued_messages * broker.MESSAGE_BOOKKEEPING
    assert sessions * per_session <= bounds.memory_limit // 2 + sessions * broker.MESSAGE_BOOKKEEPING
    assert bounds.max_queued_messages >= 1
    assert bounds.max_packet_size > bounds.message_size_limit


def test_limits_refuse_nonsense():
    with pytest.raises(ValueError, match="positive"):
        broker.limits(0, 3)
    with pytest.raises(ValueError, match="positive"):
        broker.limits(2**20, 0)


def test_the_config_carries_the_limits_derived_from_the_rendered_memory_limit_and_max_replicas():
    objs = _objects(_em())
    conf = objs["ConfigMap"]["data"]["mosquitto.conf"]
    [container] = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == "256Mi" and broker.MEMORY_LIMIT == 256 * 2**20
    bounds = broker.limits(broker.MEMORY_LIMIT, 4)  # maxReplicas: 4
    assert _conf_value(conf, "message_size_limit") == 256 * 1024
    assert _conf_value(conf, "max_packet_size") == bounds.max_packet_size
    assert _conf_value(conf, "memory_limit") == bounds.memory_limit
    assert _conf_value(conf, "max_queued_bytes") == bounds.max_queued_bytes
    assert _conf_value(conf, "max_queued_messages") == bounds.max_queued_messages
    assert "allow_anonymous false" in conf
    assert f"acl_file {broker.ACL_FILE}" in conf
    # More replicas, smaller queues each.
    more = _objects(
        EdgeModel.from_body(
            {
                "metadata": {"name": "em", "namespace": "ns", "uid": "u"},
                "spec": {**specs.VALID_SPEC, "scaling": {"maxReplicas": 8}},
            }
        )
    )["ConfigMap"]["data"]["mosquitto.conf"]
    assert _conf_value(more, "max_queued_bytes") < _conf_value(conf, "max_queued_bytes")


def test_the_acl_lets_devices_write_sensor_topics_only_and_the_runtime_read_them_and_write_predictions():
    data = _objects(_em())["ConfigMap"]["data"]
    assert data[broker.DEVICE_ACL_KEY] == "topic write plant/+/telemetry\n"
    assert data[broker.RUNTIME_ACL_KEY] == (
        "topic read plant/+/telemetry\ntopic readwrite edgemodel/ns/em/predictions/+\n"
    )


def test_a_custom_output_topic_becomes_a_filter_and_a_topic_with_a_line_break_grants_nothing():
    spec = copy.deepcopy(specs.VALID_SPEC)
    spec["sensors"]["topics"] = ["site/+/vibration", "bad\ntopic readwrite all/of/it"]
    spec["sensors"]["outputTopic"] = "site/predictions/{device}/vibration"
    em = EdgeModel.from_body({"metadata": {"name": "em", "namespace": "ns", "uid": "u"}, "spec": spec})
    sections = broker.acl(em)
    assert sections[broker.DEVICE_ACL_KEY] == "topic write site/+/vibration\n"
    assert sections[broker.RUNTIME_ACL_KEY] == (
        "topic read site/+/vibration\ntopic readwrite site/predictions/+/vibration\n"
    )
    assert inference.output_topic(em) == "site/predictions/{device}/vibration"


def test_the_generated_secret_has_two_users_and_the_init_container_reads_both():
    objs = _objects(_em(), version="uid-9/42")
    secret = objs["Secret"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "username": "edgemodel",
        "password": "rt-pw",
        "device-username": "device",
        "device-password": "dev-pw",
    }
    # Applied over the Secret that was read: a rotation in between conflicts, never reverts.
    assert secret["metadata"]["resourceVersion"] == "42"
    [init] = objs["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in init["env"]}
    assert refs["MQTT_DEVICE_USERNAME"] == {
        "name": "em-broker-credentials",
        "key": "device-username",
        "optional": True,
    }
    assert refs["MQTT_PASSWORD"] == {"name": "em-broker-credentials", "key": "password"}
    assert all("value" not in e for e in init["env"])


def test_managed_credentials_keep_what_the_secret_holds_and_fill_what_it_lacks():
    old = {"username": "edgemodel", "password": "rotated-by-a-person"}
    filled = broker.managed_credentials(old, fresh=("new-a", "new-b"))
    assert filled == {
        "username": "edgemodel",
        "password": "rotated-by-a-person",
        "device-username": "device",
        "device-password": "new-b",
    }
    assert broker.managed_credentials(filled, fresh=("x", "y")) == filled


def test_a_changed_credentials_version_rolls_the_broker_and_the_runtime_and_nothing_else():
    em = _em()
    before = render.desired(
        em, SETTINGS, generated_password=None, credentials=CREDENTIALS, credentials_version="u/1"
    )
    after = render.desired(
        em, SETTINGS, generated_password=None, credentials=CREDENTIALS, credentials_version="u/2"
    )

    def template_annotations(objs: list[dict], kind: str) -> dict:
        [obj] = [o for o in objs if o["kind"] == kind]
        return obj["spec"]["template"]["metadata"]["annotations"]

    for kind in ("Deployment", "StatefulSet"):
        assert template_annotations(before, kind) != template_annotations(after, kind), kind
    # The version says nothing about the password: it is a hash of the Secret's uid and version.
    annotations = template_annotations(after, "Deployment")
    assert annotations[broker.ANNOTATION_CREDENTIALS_VERSION] == render.common.content_hash("u/2")


def test_without_a_version_the_runtime_template_is_as_before():
    em = _em()
    plain = inference.objects(em, SETTINGS)
    assert inference.objects(em, SETTINGS, credentials_version="") == plain


def test_persistence_renders_a_claim_and_mounts_it_and_the_default_stays_empty_dir():
    default = _objects(_em())
    assert "PersistentVolumeClaim" not in default
    [data] = [v for v in default["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert "emptyDir" in data

    objs = _objects(_em(persistence={"size": "5Gi", "storageClassName": "local-path"}))
    claim = objs["PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == names.broker_data("em") == "em-broker-data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "local-path",
    }
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "u"
    [data] = [v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "em-broker-data"}}
    assert objs["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    # Defaults: 1Gi on the cluster's default StorageClass.
    claim = _objects(_em(persistence={}))["PersistentVolumeClaim"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]


@pytest.mark.parametrize(
    "broker_spec",
    [
        {"host": "mqtt.example", "persistence": {}},
        {"persistence": {"size": "lots"}},
        {"persistence": {"storageClassName": ""}},
    ],
    ids=["with-an-external-broker", "bad-size", "empty-class"],
)
def test_bad_persistence_is_refused(broker_spec):
    with pytest.raises(pydantic.ValidationError):
        api.BrokerSpec.model_validate(broker_spec)


def test_doctests():
    assert doctest.testmod(broker).failed == 0


def test_tls_replaces_the_plain_listener_and_the_runtime_trusts_the_ca_only():
    em = _em(tlsSecretRef={"name": "broker-tls"})
    objs = _objects(em)
    conf = objs["ConfigMap"]["data"]["mosquitto.conf"]
    assert "listener 8883\n" in conf and "listener 1883" not in conf
    for line in (
        "certfile /mosquitto/tls/tls.crt",
        "keyfile /mosquitto/tls/tls.key",
        "cafile /mosquitto/tls/ca.crt",
    ):
        assert line in conf
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    [tls] = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == "broker-tls" and tls["secret"]["defaultMode"] == 0o440
    [container] = pod["containers"]
    assert container["ports"] == [{"name": "mqtt", "containerPort": 8883}]
    assert {"name": "tls", "mountPath": "/mosquitto/tls", "readOnly": True} in container["volumeMounts"]
    assert objs["Service"]["spec"]["ports"][0]["port"] == 8883
    assert broker.address(em) == ("em-broker.ns.svc", 8883, True)
    assert inference.runtime_config(em, SETTINGS).broker_tls is True

    [statefulset] = [o for o in inference.objects(em, SETTINGS) if o["kind"] == "StatefulSet"]
    runtime = statefulset["spec"]["template"]["spec"]
    env = {e["name"]: e for e in runtime["containers"][0]["env"]}
    assert env["EDGEMODEL_BROKER_CA_FILE"]["value"] == "/etc/edgemodel/broker-tls/ca.crt"
    [ca] = [v for v in runtime["volumes"] if v["name"] == "broker-tls"]
    assert ca["secret"] == {"secretName": "broker-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}

    [policy] = [
        o
        for o in render.desired(em, SETTINGS, generated_password="pw")
        if o["metadata"]["name"] == "em-broker" and o["kind"] == "NetworkPolicy"
    ]
    assert [p["port"] for p in policy["spec"]["ingress"][0]["ports"]] == [8883]


def test_without_tls_nothing_of_it_is_rendered():
    em = _em()
    assert broker.runtime_tls(em) == ([], [], [])
    assert broker.address(em) == ("em-broker.ns.svc", 1883, False)
    assert "tls" not in {v["name"] for v in _objects(em)["Deployment"]["spec"]["template"]["spec"]["volumes"]}


def test_tls_secret_ref_is_for_the_managed_broker_only():
    with pytest.raises(pydantic.ValidationError, match="tlsSecretRef is for the managed broker"):
        api.BrokerSpec.model_validate({"host": "mqtt.example", "tlsSecretRef": {"name": "x"}})


@pytest.mark.parametrize(
    ("secret", "reason", "says"),
    [
        (None, trust.SECRET_NOT_OPTED_IN, "does not exist"),
        (
            {"metadata": {"labels": {}}, "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""}},
            trust.SECRET_NOT_OPTED_IN,
            "edgeml.dev/use=broker",
        ),
        (
            {"metadata": {"labels": {trust.USE_LABEL: "tracking"}}, "data": {}},
            trust.SECRET_NOT_OPTED_IN,
            "lacks the label",
        ),
        (
            {"metadata": {"labels": {trust.USE_LABEL: "broker"}}, "data": {"tls.crt": "", "tls.key": ""}},
            trust.SECRET_INVALID,
            "lacks ca.crt",
        ),
        (
            {
                "metadata": {"labels": {trust.USE_LABEL: "broker"}},
                "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""},
            },
            None,
            "",
        ),
    ],
    ids=["missing", "unlabelled", "labelled-for-tracking", "no-ca", "ok"],
)
def test_the_tls_secret_must_opt_in_and_hold_the_certificate_key_and_ca(secret, reason, says):
    refusal = trust.broker_tls_secret_refusal(_em(tlsSecretRef={"name": "broker-tls"}), secret)
    if reason is None:
        assert refusal is None
    else:
        assert refusal is not None and refusal.reason == reason and says in refusal.message
