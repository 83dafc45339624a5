"""``edgemodel-operator``: run the operator (the same handlers also run under ``kopf run``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf

from edgemodel.settingsources import SettingsError
from edgemodel_operator import handlers
from edgemodel_operator.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["configure_logging", "main"]


def configure_logging(level: str) -> None:
    """One JSON object per line on stderr, with kopf's own JSON log format.

    kopf's formatter (python-json-logger) escapes quotes and newlines, adds ``extra``
    fields, the exception and, for kopf's per-object logs, the object's reference.
    """
    kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
    logging.getLogger().setLevel(level.upper())
    # kopf reports every handler run at INFO; the operator's own log says what changed.
    logging.getLogger("kopf").setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgemodel-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        default=os.environ.get("EDGEMODEL_NAMESPACE"),
        help="watch only this namespace, or these comma-separated namespaces (default: all)",
    )
    parser.add_argument("--log-level", default=os.environ.get("EDGEMODEL_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = Settings.load(
            flags={"namespace": args.namespace} if args.namespace else None, env=os.environ
        )
    except SettingsError as exc:
        log.error("Refused the settings: %s", exc)
        return 2
    namespaces = handlers.watched_namespaces(settings.namespace)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.bind_address}:{settings.health_port}/healthz",
        memo=kopf.Memo({handlers.MEMO_SETTINGS: settings}),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
