"""Operator settings: flags > environment > file > defaults; a bad setting fails naming it."""

from __future__ import annotations

import json

import pytest

from edgemodel_operator.settings import Settings, SettingsError


def test_defaults_and_explicit_settings_read_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMODEL_RESYNC_SECONDS", "1")
    assert Settings().resync_seconds == 60.0
    assert Settings(resync_seconds=5).resync_seconds == 5.0
    assert Settings.from_env({}) == Settings()


def test_precedence_flags_then_environment_then_file_then_defaults(tmp_path) -> None:
    path = tmp_path / "operator.json"
    path.write_text(json.dumps({"resyncSeconds": 1, "history_limit": 4, "job_ttl_seconds": 7}))
    env = {
        "EDGEMODEL_SETTINGS_FILE": str(path),
        "EDGEMODEL_RESYNC_SECONDS": "2",
        "EDGEMODEL_HISTORY_LIMIT": "5",
    }
    s = Settings.load(flags={"resync_seconds": 3, "history_limit": None}, env=env)
    assert (s.resync_seconds, s.history_limit, s.job_ttl_seconds, s.reconcile_workers) == (3.0, 5, 7, 8)
    assert Settings.from_env(env).resync_seconds == 2.0
    assert Settings.load(file=path).resync_seconds == 1.0


def test_environment_names_stay_and_pod_identity_is_the_default() -> None:
    env = {
        "EDGEMODEL_IMAGE": "registry.local/edgemodel:1",
        "EDGEMODEL_LEADER_ELECTION": "false",
        "EDGEMODEL_MLFLOW_TRACKING_URI": "",
        "EDGEMODEL_NAMESPACE": "a,b",
        "POD_NAME": "edgemodel-operator-0",
        "POD_NAMESPACE": "edgemodel-system",
    }
    s = Settings.from_env(env)
    assert (s.image, s.leader_election, s.mlflow_tracking_uri, s.namespace) == (
        "registry.local/edgemodel:1",
        False,
        None,
        "a,b",
    )
    assert (s.identity, s.lease_namespace) == ("edgemodel-operator-0", "edgemodel-system")
    assert Settings.from_env({**env, "EDGEMODEL_IDENTITY": "me"}).identity == "me"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"EDGEMODEL_RESYNC_SECONDS": "0"},
            "setting resync_seconds (EDGEMODEL_RESYNC_SECONDS, --resync-seconds)",
        ),
        ({"EDGEMODEL_RECONCILE_WORKERS": "many"}, "setting reconcile_workers (EDGEMODEL_RECONCILE_WORKERS"),
        ({"EDGEMODEL_METRICS_PORT": "70000"}, "setting metrics_port"),
        ({"EDGEMODEL_IMAGE_PULL_POLICY": "Sometimes"}, "setting image_pull_policy"),
        ({"EDGEMODEL_LEADER_ELECTION": "perhaps"}, "setting leader_election"),
    ],
)
def test_a_bad_setting_fails_at_start_naming_it(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert named in str(err.value)


def test_a_missing_settings_file_is_named(tmp_path) -> None:
    with pytest.raises(SettingsError, match=r"operator\.yaml"):
        Settings.from_env({"EDGEMODEL_SETTINGS_FILE": str(tmp_path / "operator.yaml")})


def test_the_operator_refuses_a_bad_setting_at_start_naming_it(monkeypatch, caplog):
    from edgemodel_operator import main  # noqa: PLC0415 - the console script's module

    monkeypatch.setenv("EDGEMODEL_RESYNC_SECONDS", "-5")
    with caplog.at_level("ERROR"):
        assert main.main([]) == 2
    assert "resync_seconds (EDGEMODEL_RESYNC_SECONDS" in caplog.text
