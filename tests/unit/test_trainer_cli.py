"""The trainer's command line: it accepts exactly what the operator renders. No network."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgemodel import api, contracts
from edgemodel_trainer import main

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


def parse(argv: list[str]) -> contracts.TrainerConfig:
    return main.parse_train(main.build_parser().parse_args(argv))


@given(
    model_name=NAMES,
    algorithm=st.sampled_from(api.ALGORITHMS),
    features=st.lists(NAMES, min_size=1, max_size=4),
    target=NAMES,
    horizon=st.integers(1, 10),
    lags=st.integers(0, 10),
    alias=NAMES,
    margin=st.floats(0.0, 0.99),
    window=st.integers(1, 100_000),
    data=st.none() | st.just("/data/window.parquet"),
    edgemodel=st.none() | st.just("ns/name"),
    since=st.none() | st.floats(0, 2e9),
    wait=st.floats(0, 600),
)
def test_train_flags_round_trip_through_to_argv(
    model_name: str, algorithm: api.Algorithm, features: list[str], target: str, horizon: int,
    lags: int, alias: str, margin: float, window: int, data: str | None, edgemodel: str | None,
    since: float | None, wait: float,
) -> None:  # fmt: skip
    config = contracts.TrainerConfig(
        model_name=model_name, tracking_uri="http://mlflow:5000", algorithm=algorithm,
        features=features, target=target, horizon=horizon, lags=lags, alias=alias,
        promotion_margin=margin, training_window=window, data=data, edgemodel=edgemodel,
        window_since=since, window_wait_seconds=wait,
    )  # fmt: skip
    argv = config.to_argv()
    assert argv[0] == "train"
    assert parse(argv) == config


def test_defaults_match_the_contract() -> None:
    config = parse(
        ["train", "--model-name", "m", "--tracking-uri", "u", "--features", "a,b", "--target", "a"]
    )
    assert config == contracts.TrainerConfig(
        model_name="m", tracking_uri="u", features=["a", "b"], target="a"
    )


def test_rollback_flags() -> None:
    args = main.build_parser().parse_args(
        ["rollback", "--model-name", "m", "--tracking-uri", "u", "--alias", "prod", "--to-version", "3"]
    )
    config = main.parse_rollback(args)
    assert args.command == "rollback"
    assert (config.alias, config.to_version, config.reason) == ("prod", "3", "RolledBack")


def test_rollback_flags_round_trip_through_to_argv() -> None:
    config = contracts.RollbackConfig(
        model_name="m", tracking_uri="u", alias="prod", to_version="3", reason="Bad"
    )
    argv = config.to_argv()
    assert argv[0] == "rollback"
    assert main.parse_rollback(main.build_parser().parse_args(argv)) == config


def test_the_flags_are_the_contracts_fields() -> None:
    for command in (contracts.TrainerConfig, contracts.RollbackConfig):
        parser = main.build_parser()
        sub = parser._subparsers._group_actions[0].choices[command.COMMAND]  # type: ignore[union-attr]
        dests = {a.dest for a in sub._actions} - {"help", "termination_log"}
        assert dests == set(command.model_fields), command
    assert contracts.TrainerConfig.flags()["window_wait_seconds"] == "--window-wait"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["fly"],
        ["train", "--model-name", "m"],
        ["train", "--model-name", "m", "--tracking-uri", "u", "--features", "a", "--target", "a",
         "--algorithm", "svm"],
        ["train", "--model-name", "m", "--tracking-uri", "u", "--features", "a", "--target", "a",
         "--promotion-margin", "1.5"],
        ["train", "--model-name", "m", "--tracking-uri", "u", "--features", ",", "--target", "a"],
        ["train", "--model-name", "m", "--tracking-uri", "u", "--features", "a", "--target", "a",
         "--lags", "-1"],
        ["rollback", "--model-name", "m", "--tracking-uri", "u"],
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_with_a_failed_result(
    argv: list[str], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(main.TERMINATION_LOG_ENV, str(log))
    assert main.main(argv) == contracts.ExitCode.USAGE
    result = contracts.TrainingResult.from_termination_message(log.read_text())
    assert result.outcome == "Failed"
    assert result.reason.startswith("InvalidArguments")


def test_termination_log_flag_wins_over_the_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(main.TERMINATION_LOG_ENV, str(tmp_path / "env"))
    code = main.main(["rollback", "--model-name", "m", "--tracking-uri", "u", "--termination-log",
                      str(tmp_path / "flag")])  # fmt: skip
    assert code == contracts.ExitCode.USAGE
    assert json.loads((tmp_path / "flag").read_text())["modelName"] == "m"
    assert not (tmp_path / "env").exists()


def test_an_unwritable_termination_log_is_tolerated(tmp_path: pathlib.Path) -> None:
    result = contracts.TrainingResult(outcome="Failed", reason="X", model_name="m")
    assert main.write_termination_log(result, str(tmp_path / "no" / "such" / "dir" / "log")) is False
    assert main.write_termination_log(result, str(tmp_path / "log")) is True


def test_every_outcome_has_an_exit_code() -> None:
    assert set(main.EXIT_CODES) == {"Promoted", "Rejected", "RolledBack", "Failed"}
    assert main.EXIT_CODES["Rejected"] == 3
