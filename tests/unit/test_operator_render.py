"""The pure renderers: a parsed EdgeModel in, Kubernetes objects out."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from edgemodel import api, contracts
from edgemodel_operator import names, render
from edgemodel_operator.render import broker, inference, jobs
from edgemodel_operator.resource import EdgeModel, InvalidSpecError
from edgemodel_operator.settings import Settings

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
SETTINGS = Settings(
    mlflow_tracking_uri="http://mlflow.mlflow.svc:5000", image="registry.example/edgemodel:1.0"
)


def _em(spec: dict, name: str = "line1", **status) -> EdgeModel:
    return EdgeModel.from_body(
        {
            "metadata": {"name": name, "namespace": "plant", "uid": "uid-1", "generation": 1},
            "spec": spec,
            "status": status,
        }
    )


def _example(file: str) -> dict:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d and d["kind"] == api.KIND]
    return docs[0]["spec"]


def _by_kind(objs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_managed_broker_example_renders_every_child():
    objs = _by_kind(render.desired(_em(_example("edgemodel.yaml")), SETTINGS, generated_password="s3cret"))
    assert set(objs) == {
        ("Secret", "line1-broker-credentials"),
        ("ConfigMap", "line1-broker-config"),
        ("Deployment", "line1-broker"),
        ("Service", "line1-broker"),
        ("ConfigMap", "line1-runtime-config"),
        ("ServiceAccount", "line1-runtime"),
        ("Role", "line1-runtime"),
        ("RoleBinding", "line1-runtime"),
        ("StatefulSet", "line1-inference"),
        ("Service", "line1-inference"),
        ("HorizontalPodAutoscaler", "line1-inference"),
        ("NetworkPolicy", "line1-broker"),
        ("NetworkPolicy", "line1-inference"),
    }
    for obj in objs.values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == names.MANAGED_BY


def test_inference_statefulset_leaves_replicas_to_the_hpa_and_is_hardened():
    objs = _by_kind(render.desired(_em(_example("edgemodel.yaml")), SETTINGS, generated_password="x"))
    dep = objs[("StatefulSet", "line1-inference")]
    assert "replicas" not in dep["spec"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == SETTINGS.image
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["MQTT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "line1-broker-credentials",
        "key": "password",
    }
    hpa = objs[("HorizontalPodAutoscaler", "line1-inference")]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_runtime_config_carries_the_spec_and_no_credentials():
    em = _em(_example("edgemodel.yaml"))
    objs = _by_kind(render.desired(em, SETTINGS, generated_password="pw-not-in-config"))
    text = objs[("ConfigMap", "line1-runtime-config")]["data"]["runtime.json"]
    config = contracts.RuntimeConfig.model_validate(json.loads(text))
    assert config.topics == ["plant/line1/+/telemetry"]
    assert config.features == ["temperature", "humidity"]
    assert config.broker_host == "line1-broker.plant.svc"
    assert config.mlflow_tracking_uri == SETTINGS.mlflow_tracking_uri
    assert config.output_topic == "edgemodel/plant/line1/predictions/{device}"
    assert "pw-not-in-config" not in text


def test_a_spec_change_changes_the_pod_template_hash():
    spec = _example("edgemodel.yaml")
    before = _by_kind(render.desired(_em(spec), SETTINGS, generated_password="x"))[
        ("StatefulSet", "line1-inference")
    ]
    spec = {**spec, "sensors": {**spec["sensors"], "topics": ["plant/line2/+/telemetry"]}}
    after = _by_kind(render.desired(_em(spec), SETTINGS, generated_password="x"))[
        ("StatefulSet", "line1-inference")
    ]
    key = names.ANNOTATION_CONFIG_HASH
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )


def test_external_broker_renders_no_broker_and_uses_the_users_secret():
    em = _em(_example("edgemodel-external-broker.yaml"))
    objs = _by_kind(render.desired(em, SETTINGS, generated_password=None))
    assert not [k for k in objs if "broker" in k[1]]
    assert broker.address(em) == ("mqtt.site.internal", 8883, True)
    dep = objs[("StatefulSet", "line1-inference")]
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/edge": ""}
    assert pod["tolerations"][0]["key"] == "edgeml.dev/edge"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MQTT_USERNAME"]["valueFrom"]["secretKeyRef"]["name"] == "site-broker-credentials"
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}


def test_scheduled_example_renders_a_cronjob():
    em = _em(_example("edgemodel-scheduled.yaml"))
    objs = _by_kind(render.desired(em, SETTINGS, generated_password="x"))
    cron = objs[("CronJob", "line1-scheduled-retrain")]
    assert cron["spec"]["schedule"] == "0 2 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["train", "--model-name"] and "boiler-pressure-forecaster" in args


def test_retraining_job_is_deterministic_and_bounded():
    em = _em(_example("edgemodel.yaml"))
    job = jobs.job(em, SETTINGS, kind="retrain", number=3, reason="DriftDetected")
    assert job == jobs.job(em, SETTINGS, kind="retrain", number=3, reason="DriftDetected")
    assert job["metadata"]["name"] == "line1-retrain-3"
    spec = job["spec"]
    assert spec["backoffLimit"] == SETTINGS.job_backoff_limit
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.job_ttl_seconds
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [2, 3]
    args = spec["template"]["spec"]["containers"][0]["args"]
    assert (
        args
        == contracts.TrainerConfig(
            model_name="plant-line1",
            tracking_uri=SETTINGS.mlflow_tracking_uri,
            features=["temperature", "humidity"],
            target="temperature",
            edgemodel="plant/line1",
            window_wait_seconds=SETTINGS.window_wait_seconds,
        ).to_argv()
    )
    since = jobs.job(
        em, SETTINGS, kind="retrain", number=3, reason="DriftDetected", window_since=1700000000.0
    )
    args = since["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--window-since") + 1] == "1700000000.0"


def test_rollback_job_points_the_alias_back():
    job = jobs.job(
        _em(_example("edgemodel.yaml")),
        SETTINGS,
        kind="rollback",
        number=4,
        reason="RollbackDue",
        rollback_to="3",
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "rollback" and args[args.index("--to-version") + 1] == "3"


def test_long_names_fit_label_limits():
    name = "a" * 60
    assert len(names.job(name, "retrain", 12345)) <= 63
    assert names.job(name, "retrain", 1) != names.job(name, "retrain", 2)
    assert len(names.inference(name)) <= 63


def test_invalid_stored_spec_is_a_permanent_error():
    with pytest.raises(InvalidSpecError):
        _em({"sensors": {"topics": []}})


def test_tracking_uri_prefers_the_spec():
    spec = _example("edgemodel.yaml")
    spec = {**spec, "model": {**spec["model"], "trackingUri": "http://mine:5000"}}
    assert inference.tracking_uri(_em(spec), SETTINGS) == "http://mine:5000"


def test_inference_has_a_startup_probe_long_enough_for_a_slow_start() -> None:
    """On a small node the runtime needs tens of seconds before it serves /healthz; the
    liveness probe must not count until it does (found on the e2e's real node)."""
    objs = _by_kind(render.desired(_em(_example("edgemodel.yaml")), SETTINGS, generated_password="x"))
    container = objs[("StatefulSet", "line1-inference")]["spec"]["template"]["spec"]["containers"][0]
    startup = container["startupProbe"]
    assert startup["httpGet"] == container["livenessProbe"]["httpGet"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
