"""The ``edgemodel`` subcommands of the development distribution (entry-point group ``edgemodel.commands``).

Each entry point is a function that adds its arguments to the subcommand's parser and
returns the function that runs it. This module stays light: the heavy imports happen
only when a command runs.
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Callable

__all__ = ["demo"]


def demo(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Run the whole self-healing loop for real on this machine."""
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=pathlib.Path(".demo"),
        help="where logs, kubeconfig and data go (default: .demo)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep everything running after the summary, to explore with kubectl",
    )
    parser.add_argument(
        "--drift", choices=["abrupt", "gradual"], default="abrupt", help="the drift to inject"
    )
    parser.add_argument(
        "--json", type=pathlib.Path, default=None, help="also write the timeline as JSON here"
    )

    def run(args: argparse.Namespace) -> int:
        # The demo pulls in MLflow, kubernetes and the harness; import it only when asked for.
        from edgemodel_dev import demo as demo_module  # noqa: PLC0415

        return demo_module.main(workdir=args.workdir, keep=args.keep, drift=args.drift, json_path=args.json)

    return run
