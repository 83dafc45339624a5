"""``edgemodel-trainer``: the command line the operator's Jobs run.

``train`` takes exactly the flags :meth:`edgemodel.contracts.TrainerConfig.to_argv`
renders; ``rollback`` takes the flags of the operator's rollback Job. Both write a
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
from collections.abc import Sequence
from typing import NoReturn

import pydantic

from edgemodel import api, contracts
from edgemodel_trainer import pipeline

__all__ = ["EXIT_CODES", "build_parser", "main", "parse_train", "write_termination_log"]

logger = logging.getLogger("edgemodel_trainer")

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


def _margin(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgemodel-trainer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train, judge, register and maybe promote a model")
    train.add_argument("--model-name", required=True, help="MLflow registered model name")
    train.add_argument("--tracking-uri", required=True, help="MLflow tracking server URI")
    train.add_argument("--algorithm", choices=api.ALGORITHMS, default="ridge")
    train.add_argument("--features", required=True, help="comma-separated input fields")
    train.add_argument("--target", required=True, help="the field to predict")
    train.add_argument("--horizon", type=_positive, default=1, help="readings ahead to predict")
    train.add_argument("--lags", type=int, default=3, help="past target values used as inputs")
    train.add_argument("--alias", default="champion", help="the alias that serves")
    train.add_argument(
        "--promotion-margin", type=_margin, default=0.02,
        help="relative RMSE improvement a challenger needs over the champion",
    )  # fmt: skip
    train.add_argument("--training-window", type=_positive, default=2000, help="most recent readings used")
    train.add_argument("--data", help="CSV or Parquet window; default: the newest windows in MLflow")
    train.add_argument("--edgemodel", help="<namespace>/<name> whose training windows to read")
    train.add_argument("--window-since", type=float, default=None,
                       help="use only training windows uploaded at or after this epoch time")  # fmt: skip
    train.add_argument("--window-wait", type=float, default=0.0,
                       help="seconds to wait for a training window newer than --window-since")  # fmt: skip
    train.add_argument("--termination-log", default=None, help=f"default: ${TERMINATION_LOG_ENV} or "
                       f"{contracts.TERMINATION_LOG}")  # fmt: skip

    rollback = commands.add_parser("rollback", help="point the alias back at an earlier version")
    rollback.add_argument("--model-name", required=True)
    rollback.add_argument("--tracking-uri", required=True)
    rollback.add_argument("--alias", default="champion")
    rollback.add_argument("--to-version", required=True, help="the version to serve again")
    rollback.add_argument("--reason", default="RolledBack", help="recorded on the version left behind")
    rollback.add_argument("--termination-log", default=None)
    return parser


def parse_train(args: argparse.Namespace) -> contracts.TrainerConfig:
    """The :class:`TrainerConfig` the ``train`` flags describe (the inverse of ``to_argv``)."""
    try:
        config = contracts.TrainerConfig(
            model_name=args.model_name,
            tracking_uri=args.tracking_uri,
            algorithm=args.algorithm,
            features=[f.strip() for f in args.features.split(",") if f.strip()],
            target=args.target,
            horizon=args.horizon,
            lags=args.lags,
            alias=args.alias,
            promotion_margin=args.promotion_margin,
            training_window=args.training_window,
            data=args.data,
            edgemodel=args.edgemodel,
            window_since=args.window_since,
            window_wait_seconds=args.window_wait,
        )
        pipeline.spec_of(config)  # refuses empty features, horizon < 1, lags < 0
    except (pydantic.ValidationError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    return config


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


def main(argv: Sequence[str] | None = None) -> int:
    # stdout carries the result JSON only; MLflow would print run links there.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(raw)
        config = parse_train(args) if args.command == "train" else None
    except UsageError as exc:
        logger.error("Refused the command line: %s", exc)
        model_name = raw[raw.index("--model-name") + 1] if "--model-name" in raw[:-1] else ""
        failed = contracts.TrainingResult(outcome="Failed", reason=f"InvalidArguments: {exc}",
                                          model_name=model_name)  # fmt: skip
        termination = raw[raw.index("--termination-log") + 1] if "--termination-log" in raw[:-1] else None
        return _finish(failed, termination, contracts.ExitCode.USAGE)

    if config is not None:
        result = pipeline.run_training(config)
    else:
        result = pipeline.rollback(
            model_name=args.model_name,
            tracking_uri=args.tracking_uri,
            alias=args.alias,
            to_version=args.to_version,
            reason=args.reason,
        )
    logger.info("Finished with outcome %s: %s", result.outcome, result.reason)
    return _finish(result, args.termination_log, EXIT_CODES[result.outcome])


if __name__ == "__main__":
    sys.exit(main())
