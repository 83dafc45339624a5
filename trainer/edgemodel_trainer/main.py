"""``edgemodel-trainer``: the command line the operator's Jobs run.

``train`` and ``rollback`` take exactly the flags that
:class:`edgemodel.contracts.TrainerConfig` and :class:`edgemodel.contracts.RollbackConfig`
render: the parser is generated from the same model fields, and the values are parsed
back into those models, which check the ranges. Both write a
:class:`edgemodel.contracts.TrainingResult` as JSON to the termination log (and to
stdout) and exit with an :class:`edgemodel.contracts.ExitCode`.

I/O: argv, environment, the termination-log file, stdout; the work is in :mod:`.pipeline`.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
from collections.abc import MutableMapping, Sequence
from typing import NoReturn, TypeVar

import pydantic

from edgemodel import contracts
from edgemodel_trainer import pipeline

__all__ = ["EXIT_CODES", "build_parser", "main", "parse_rollback", "parse_train", "write_termination_log"]

logger = logging.getLogger("edgemodel_trainer")
_C = TypeVar("_C", bound=contracts.Command)

TERMINATION_LOG_ENV = "EDGEMODEL_TERMINATION_LOG"
EXIT_CODES: dict[str, contracts.ExitCode] = {
    "Promoted": contracts.ExitCode.PROMOTED,
    "RolledBack": contracts.ExitCode.PROMOTED,
    "Rejected": contracts.ExitCode.REJECTED,
    "Failed": contracts.ExitCode.FAILED,
}


class UsageError(Exception):
    """The command line could not be parsed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _default_termination_log() -> str:
    return os.environ.get(TERMINATION_LOG_ENV, contracts.TERMINATION_LOG)


def _add_flags(parser: argparse.ArgumentParser, command: type[contracts.Command]) -> None:
    """One flag per field of ``command``; values stay strings, the model converts and checks them."""
    for name, flag in command.flags().items():
        field = command.model_fields[name]
        default = "" if field.is_required() or field.default is None else f" (default: {field.default})"
        parser.add_argument(
            flag,
            dest=name,
            required=field.is_required(),
            default=None,
            help=(field.description or "").replace("%", "%%") + default,
        )
    parser.add_argument(
        "--termination-log",
        default=None,
        help=f"default: ${TERMINATION_LOG_ENV} or {contracts.TERMINATION_LOG}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgemodel-trainer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = commands.add_parser("train", help="train, judge, register and maybe promote a model")
    _add_flags(train, contracts.TrainerConfig)
    rollback = commands.add_parser("rollback", help="point the alias back at an earlier version")
    _add_flags(rollback, contracts.RollbackConfig)
    return parser


def _parse(command: type[_C], args: argparse.Namespace) -> _C:
    try:
        return command.from_flags(vars(args))
    except pydantic.ValidationError as exc:
        raise UsageError(str(exc)) from exc


def parse_train(args: argparse.Namespace) -> contracts.TrainerConfig:
    """The :class:`TrainerConfig` the ``train`` flags describe (the inverse of ``to_argv``)."""
    config = _parse(contracts.TrainerConfig, args)
    try:
        pipeline.spec_of(config)  # refuses empty features
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    return config


def parse_rollback(args: argparse.Namespace) -> contracts.RollbackConfig:
    """The :class:`RollbackConfig` the ``rollback`` flags describe (the inverse of ``to_argv``)."""
    return _parse(contracts.RollbackConfig, args)


def write_termination_log(result: contracts.TrainingResult, path: str) -> bool:
    """Write the result where the kubelet picks it up; outside a Pod the path may not be writable."""
    try:
        pathlib.Path(path).write_text(result.to_termination_message())
    except OSError as exc:
        logger.warning("Skipped writing the termination log %s: %s", path, exc)
        return False
    return True


def _finish(result: contracts.TrainingResult, path: str | None, code: contracts.ExitCode) -> int:
    print(result.to_json(), flush=True)
    write_termination_log(result, path or _default_termination_log())
    return int(code)


def trust_tracking_ca(env: MutableMapping[str, str]) -> None:
    """Trust the tracking Secret's CA bundle for MLflow, when the operator mounted one."""
    path = env.get(contracts.TRACKING_CA_ENV)
    if path and os.path.isfile(path):
        env.setdefault("MLFLOW_TRACKING_SERVER_CERT_PATH", path)


def main(argv: Sequence[str] | None = None) -> int:
    # stdout carries the result JSON only; MLflow would print run links there.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    trust_tracking_ca(os.environ)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(raw)
        config = parse_train(args) if args.command == "train" else parse_rollback(args)
    except UsageError as exc:
        logger.error("Refused the command line: %s", exc)
        model_name = raw[raw.index("--model-name") + 1] if "--model-name" in raw[:-1] else ""
        failed = contracts.TrainingResult(outcome="Failed", reason=f"InvalidArguments: {exc}",
                                          model_name=model_name)  # fmt: skip
        termination = raw[raw.index("--termination-log") + 1] if "--termination-log" in raw[:-1] else None
        return _finish(failed, termination, contracts.ExitCode.USAGE)

    if isinstance(config, contracts.TrainerConfig):
        result = pipeline.run_training(config)
    else:
        result = pipeline.rollback(**config.model_dump())
    logger.info("Finished with outcome %s: %s", result.outcome, result.reason)
    return _finish(result, args.termination_log, EXIT_CODES[result.outcome])


if __name__ == "__main__":
    sys.exit(main())
