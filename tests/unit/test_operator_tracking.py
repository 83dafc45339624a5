"""Issue 12, item 5: MLflow credentials reach Pods only from a Secret, and model names are per namespace.

Pure, no I/O: the renderers and the trust check on plain objects.
"""

from __future__ import annotations

import json

import pytest

from edgemodel import api, contracts
from edgemodel_operator import names, render, trust
from edgemodel_operator.render import jobs, tracking
from edgemodel_operator.resource import EdgeModel
from edgemodel_operator.settings import Settings

SETTINGS = Settings(mlflow_tracking_uri="https://mlflow.example:5000")
SPEC = {
    "sensors": {"topics": ["plant/+/t"], "features": ["temperature"], "target": "temperature"},
    "drift": {"threshold": 1.0},
}
SECRET = "mlflow-creds"


def _em(model: dict | None = None, *, name: str = "line1", namespace: str = "plant") -> EdgeModel:
    spec = {**SPEC, "model": model or {}}
    return EdgeModel.from_body(
        {"metadata": {"name": name, "namespace": namespace, "uid": "u", "generation": 1}, "spec": spec}
    )


def _secret(labels: dict | None = None, keys: tuple[str, ...] = ("MLFLOW_TRACKING_TOKEN",)) -> dict:
    return {"metadata": {"name": SECRET, "labels": labels or {}}, "data": dict.fromkeys(keys, "eA==")}


def _containers(objs: list[dict]) -> list[dict]:
    out = []
    for obj in objs:
        spec = obj.get("spec") or {}
        template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template")
        if template:
            out.extend(template["spec"]["containers"])
    return out


def _pod_specs(objs: list[dict]) -> list[dict]:
    out = []
    for obj in objs:
        spec = obj.get("spec") or {}
        template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get("template")
        if template:
            out.append(template["spec"])
    return out


def _everything(em: EdgeModel) -> list[dict]:
    return [
        *render.desired(em, SETTINGS, generated_password="pw"),
        jobs.job(em, SETTINGS, kind="bootstrap", number=1, reason="Bootstrap"),
        jobs.job(em, SETTINGS, kind="rollback", number=2, reason="RollbackDue", rollback_to="1"),
    ]


# ---------------------------------------------------------------- the registered model name


def test_default_model_name_is_namespaced():
    assert _em(name="line1", namespace="plant").model_name == "plant-line1"
    assert _em(name="line1", namespace="plant").model_name != _em(name="line1", namespace="lab").model_name


def test_explicit_model_name_is_kept():
    assert _em({"name": "line1"}, namespace="plant").model_name == "line1"


def test_a_long_default_name_is_shortened_uniquely_and_still_valid():
    a = _em(name="x" * 200 + "a").model_name
    b = _em(name="x" * 200 + "b").model_name
    assert a != b
    for name in (a, b):
        assert len(name) <= api.MAX_MODEL_NAME
        api.ModelSpec(name=name)  # the pattern an explicit name must match


def test_runtime_and_trainer_get_the_namespaced_name():
    em = _em(name="line1", namespace="plant")
    objs = _everything(em)
    config = json.loads(
        next(o for o in objs if o["kind"] == "ConfigMap" and "runtime.json" in o["data"])["data"][
            "runtime.json"
        ]
    )
    assert config["modelName"] == "plant-line1"
    for job in objs[-2:]:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--model-name") + 1] == "plant-line1"


# ---------------------------------------------------------------- credentials in Pods


def test_without_a_tracking_secret_nothing_is_added():
    objs = _everything(_em(name="line1"))
    for container in _containers(objs):
        assert not {e["name"] for e in container.get("env") or []} & set(names.TRACKING_KEYS)
        assert contracts.TRACKING_CA_ENV not in {e["name"] for e in container.get("env") or []}
    for pod in _pod_specs(objs):
        assert all("secret" not in v for v in pod.get("volumes") or [])


def test_credentials_reach_runtime_and_trainer_only_by_secret_key_ref():
    em = _em({"trackingSecretRef": {"name": SECRET}})
    objs = _everything(em)
    runtime_and_trainers = [c for c in _containers(objs) if c["name"] in ("runtime", "trainer")]
    assert {c["name"] for c in runtime_and_trainers} == {"runtime", "trainer"}
    for container in runtime_and_trainers:
        env = {e["name"]: e for e in container["env"]}
        for key in names.TRACKING_KEYS:
            assert env[key]["valueFrom"] == {"secretKeyRef": {"name": SECRET, "key": key, "optional": True}}
            assert "value" not in env[key]
        assert env[contracts.TRACKING_CA_ENV]["value"] == tracking.CA_FILE
        assert {"name": tracking.VOLUME, "mountPath": tracking.CA_DIR, "readOnly": True} in container[
            "volumeMounts"
        ]
    for pod in _pod_specs(objs):
        if pod["containers"][0]["name"] in ("runtime", "trainer"):
            (volume,) = [v for v in pod["volumes"] if v["name"] == tracking.VOLUME]
            assert volume["secret"] == {
                "secretName": SECRET,
                "optional": True,
                "items": [{"key": tracking.CA_KEY, "path": tracking.CA_KEY}],
            }
    # The broker gets none of it.
    broker = next(o for o in objs if o["kind"] == "Deployment")
    assert SECRET not in json.dumps(broker)


def test_the_secret_name_rolls_the_runtime_pods():
    def config_hash(em: EdgeModel) -> str:
        (sts,) = [
            o for o in render.desired(em, SETTINGS, generated_password="pw") if o["kind"] == "StatefulSet"
        ]
        return sts["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_CONFIG_HASH]

    assert config_hash(_em()) != config_hash(_em({"trackingSecretRef": {"name": SECRET}}))
    assert config_hash(_em({"trackingSecretRef": {"name": "a"}})) != config_hash(
        _em({"trackingSecretRef": {"name": "b"}})
    )


def test_no_configmap_or_argument_names_a_credential_variable():
    objs = _everything(_em({"trackingSecretRef": {"name": SECRET}}))
    for obj in objs:
        if obj["kind"] == "ConfigMap":
            assert "MLFLOW_TRACKING" not in json.dumps(obj)
    for container in _containers(objs):
        assert "MLFLOW_TRACKING" not in json.dumps([container.get("command"), container.get("args")])


# ---------------------------------------------------------------- the opt-in label and the keys


def test_an_unlabelled_or_missing_tracking_secret_is_refused():
    em = _em({"trackingSecretRef": {"name": SECRET}})
    missing = trust.tracking_secret_refusal(em, None)
    assert missing is not None and missing.reason == trust.SECRET_NOT_OPTED_IN and SECRET in missing.message
    unlabelled = trust.tracking_secret_refusal(em, _secret())
    assert unlabelled is not None and unlabelled.reason == trust.SECRET_NOT_OPTED_IN
    assert "edgeml.dev/use=tracking" in unlabelled.message
    # The broker's label is not the tracking label.
    wrong_use = trust.tracking_secret_refusal(em, _secret({trust.USE_LABEL: trust.USE_BROKER}))
    assert wrong_use is not None and wrong_use.reason == trust.SECRET_NOT_OPTED_IN


@pytest.mark.parametrize(
    ("keys", "ok"),
    [
        (("MLFLOW_TRACKING_TOKEN",), True),
        (("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"), True),
        (("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "ca.crt"), True),
        (("MLFLOW_TRACKING_USERNAME",), False),
        (("ca.crt",), False),
        ((), False),
    ],
)
def test_a_labelled_secret_needs_a_token_or_a_username_and_password(keys, ok):
    em = _em({"trackingSecretRef": {"name": SECRET}})
    secret = _secret({trust.USE_LABEL: trust.USE_TRACKING}, keys)
    refusal = trust.tracking_secret_refusal(em, secret)
    if ok:
        assert refusal is None
    else:
        assert refusal is not None and refusal.reason == trust.SECRET_INVALID
        assert "eA==" not in refusal.message  # key names only, never a value


def test_no_tracking_secret_needs_no_check():
    assert trust.tracking_secret_refusal(_em(), None) is None


# ---------------------------------------------------------------- the CA bundle in the processes


@pytest.mark.parametrize("main", ["edgemodel_runtime.main", "edgemodel_trainer.main"])
def test_processes_trust_the_mounted_ca_only_when_it_is_there(main, tmp_path):
    module = __import__(main, fromlist=["trust_tracking_ca"])
    ca = tmp_path / "ca.crt"
    env = {contracts.TRACKING_CA_ENV: str(ca)}
    module.trust_tracking_ca(env)
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" not in env  # the Secret holds no ca.crt
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    module.trust_tracking_ca(env)
    assert env["MLFLOW_TRACKING_SERVER_CERT_PATH"] == str(ca)
    own = {contracts.TRACKING_CA_ENV: str(ca), "MLFLOW_TRACKING_SERVER_CERT_PATH": "/etc/mine.pem"}
    module.trust_tracking_ca(own)
    assert own["MLFLOW_TRACKING_SERVER_CERT_PATH"] == "/etc/mine.pem"
