"""Settings: file < environment < flags, camelCase or snake_case, clear errors."""

from __future__ import annotations

import json
import logging

import pytest

from edgemodel import contracts
from edgemodel_runtime import config, main

BASE = contracts.RuntimeConfig(
    topics=["plant/+/sensors"],
    features=["temp", "humidity"],
    target="temp",
    drift_threshold=1.5,
    model_name="m",
)


def load(argv: list[str], env: dict[str, str]) -> config.Settings:
    return config.load(main.parser().parse_args(argv), env)


def test_operator_config_file_is_read_as_is(tmp_path):
    path = tmp_path / "runtime.json"
    path.write_text(BASE.to_json())
    s = load(
        [],
        {config.ENV_CONFIG: str(path), "POD_NAME": "rt-0", "MQTT_USERNAME": "u", "MQTT_PASSWORD": "s3cr3t"},
    )
    assert s.config == BASE
    assert (s.pod_name, s.mqtt_username, s.mqtt_password) == ("rt-0", "u", "s3cr3t")
    assert s.client_id == "edgemodel-rt-0"
    assert "s3cr3t" not in repr(s)


def test_precedence_file_then_env_then_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**json.loads(BASE.to_json()), "brokerPort": 1, "httpPort": 1, "lags": 1}))
    s = load(
        ["--config", str(path), "--http-port", "3", "--topics", "a/+,b/#"],
        {"EDGEMODEL_BROKER_PORT": "2", "EDGEMODEL_HTTP_PORT": "2", "EDGEMODEL_HTTP_BIND": "127.0.0.1"},
    )
    assert (s.config.broker_port, s.config.http_port, s.config.lags) == (2, 3, 1)
    assert s.config.topics == ["a/+", "b/#"]
    assert s.options.http_bind == "127.0.0.1"


def test_standalone_from_flags_only():
    s = load(
        [
            "--topics",
            "t/+",
            "--features",
            "a,b",
            "--target",
            "a",
            "--drift-threshold",
            "2",
            "--model-name",
            "m",
        ],
        {},
    )
    assert s.config.features == ["a", "b"] and s.config.edgemodel is None
    assert not s.reports_to_kubernetes
    assert s.spec.columns == ("a", "b", "a_lag1", "a_lag2", "a_lag3")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "topics"),
        (["--topics", "t", "--features", "a", "--target", "a", "--model-name", "m"], "drift_threshold"),
        (
            [
                "--topics",
                "t",
                "--features",
                "a",
                "--target",
                "a",
                "--model-name",
                "m",
                "--drift-threshold",
                "x",
            ],
            "drift",
        ),
        (
            [
                "--topics",
                "t",
                "--features",
                "a",
                "--target",
                "a",
                "--model-name",
                "m",
                "--drift-threshold",
                "1",
                "--partition-count",
                "3",
            ],
            "partition",
        ),
    ],
)
def test_invalid_settings_are_refused_with_the_field_named(argv, message):
    with pytest.raises(config.ConfigError, match=message):
        load(argv, {})


def test_partition_index_from_pod_ordinal():
    argv = [
        "--topics",
        "t",
        "--features",
        "a",
        "--target",
        "a",
        "--model-name",
        "m",
        "--drift-threshold",
        "1",
    ]
    s = load([*argv, "--partition-count", "3"], {"POD_NAME": "edge-rt-2"})
    assert (s.partition.count, s.partition.index) == (3, 2)


def test_edgemodel_reference_and_reporting_need_a_pod_name():
    s = config.Settings(config=BASE.model_copy(update={"edgemodel": "ns1/em"}), pod_name="rt-0")
    assert s.edgemodel_ref() == ("ns1", "em") and s.reports_to_kubernetes
    assert not config.Settings(config=BASE.model_copy(update={"edgemodel": "ns1/em"})).reports_to_kubernetes


def test_cli_refuses_bad_config_with_exit_code_2(capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        assert main.main(["--topics", "t"]) == 2
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert "Refused the configuration" in capsys.readouterr().err


STANDALONE = [
    "--topics",
    "t",
    "--features",
    "a",
    "--target",
    "a",
    "--model-name",
    "m",
    "--drift-threshold",
    "1",
]


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (
            ["--drift-threshold", "0"],
            {},
            "setting drift_threshold (EDGEMODEL_DRIFT_THRESHOLD, --drift-threshold)",
        ),
        ([], {"EDGEMODEL_BATCH_MAX_SIZE": "0"}, "setting batch_max_size (EDGEMODEL_BATCH_MAX_SIZE"),
        ([], {"EDGEMODEL_REPORT_INTERVAL_SECONDS": "-1"}, "setting report_interval_seconds"),
        (
            ["--queue-capacity", "0"],
            {},
            "setting queue_capacity (EDGEMODEL_QUEUE_CAPACITY, --queue-capacity)",
        ),
        (["--broker-port", "70000"], {}, "setting broker_port"),
    ],
)
def test_a_value_out_of_range_fails_naming_the_setting(argv, env, named):
    with pytest.raises(config.ConfigError) as err:
        load([*STANDALONE, *argv], env)
    assert named in str(err.value)


def test_an_empty_variable_counts_as_unset_and_yaml_files_are_read(tmp_path):
    path = tmp_path / "runtime.yaml"
    path.write_text("topics: [a/+]\nfeatures: [a]\ntarget: a\nmodelName: m\ndriftThreshold: 2\nhttpPort: 9\n")
    s = load(["--config", str(path)], {"EDGEMODEL_HTTP_PORT": "", "EDGEMODEL_DRIFT_THRESHOLD": "3"})
    assert (s.config.http_port, s.config.drift_threshold, s.config.topics) == (9, 3.0, ["a/+"])
