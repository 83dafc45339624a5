"""``edgemodel-runtime``: run the runtime until SIGTERM or SIGINT.

Settings come from ``--config`` / ``EDGEMODEL_RUNTIME_CONFIG``, ``EDGEMODEL_*`` variables
and flags (see :mod:`edgemodel_runtime.config`); ``--help`` lists every flag.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import MutableMapping, Sequence

from edgemodel import contracts
from edgemodel_runtime import app, config, logs

__all__ = ["main"]

log = logging.getLogger("edgemodel_runtime")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgemodel-runtime",
        description="Serve a scikit-learn model on an MQTT stream, measure drift and report it.",
    )
    config.add_arguments(p)
    return p


def trust_tracking_ca(env: MutableMapping[str, str]) -> None:
    """Trust the tracking Secret's CA bundle for MLflow, when the operator mounted one."""
    path = env.get(contracts.TRACKING_CA_ENV)
    if path and os.path.isfile(path):
        env.setdefault("MLFLOW_TRACKING_SERVER_CERT_PATH", path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.log_level or os.environ.get("EDGEMODEL_LOG_LEVEL", "INFO"))
    trust_tracking_ca(os.environ)
    try:
        settings = config.load(args, os.environ)
    except config.ConfigError as exc:
        log.error("Refused the configuration: %s", exc)
        return 2
    logs.setup(settings.options.log_level)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        log.info("Received signal %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runtime = app.App(settings).start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
