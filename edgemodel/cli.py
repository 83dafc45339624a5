"""``edgemodel``: the user-facing command line.

- ``edgemodel demo``: run the whole self-healing loop for real on this machine.
- ``edgemodel crd``: print the EdgeModel CustomResourceDefinition.
- ``edgemodel validate FILE``: check EdgeModel manifests against the API before applying them.

More subcommands come from other installed distributions through the entry-point group
``edgemodel.commands``: each entry point is a function that takes the subcommand's parser,
adds its arguments and returns the function that runs it. The development distribution
(``edgemodel-dev``, ``devtools/`` in a clone) adds ``demo`` this way, so this shipped module
never imports development code.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import pathlib
import sys
from collections.abc import Callable

import pydantic
import yaml

from edgemodel import __version__, api, crd

__all__ = ["COMMANDS_GROUP", "main"]

COMMANDS_GROUP = "edgemodel.commands"
"""Entry-point group of the extra subcommands (``edgemodel demo`` from ``edgemodel-dev``)."""

Runner = Callable[[argparse.Namespace], int]

_DEMO_MISSING = (
    "edgemodel demo is a development tool, in the edgemodel-dev distribution (devtools/ in a clone).\n"
    "From a clone of the repository run `make demo`, or install it with `pip install -e ./devtools`."
)


def _validate(paths: list[str]) -> int:
    failures = 0
    for path in paths:
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
            if not doc or doc.get("kind") != api.KIND:
                continue
            name = (doc.get("metadata") or {}).get("name", "?")
            try:
                api.EdgeModelSpec.model_validate(doc.get("spec") or {})
            except pydantic.ValidationError as exc:
                failures += 1
                for err in exc.errors():
                    field = ".".join(["spec", *(str(p) for p in err["loc"])])
                    print(f"{path}: EdgeModel {name}: {field}: {err['msg']}")
            else:
                print(f"{path}: EdgeModel {name}: valid")
    return 1 if failures else 0


def _plugins() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)


def _missing_demo(args: argparse.Namespace) -> int:
    print(_DEMO_MISSING, file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgemodel", description="EdgeModel: self-healing ML at the edge")
    parser.add_argument("--version", action="version", version=f"edgemodel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("crd", help="print the EdgeModel CRD")
    validate = commands.add_parser("validate", help="check EdgeModel manifests against the API")
    validate.add_argument("files", nargs="+")
    runners: dict[str, Runner] = {}
    for entry in _plugins():
        configure = entry.load()
        summary = (configure.__doc__ or entry.name).strip().splitlines()[0].rstrip(".")
        runners[entry.name] = configure(
            commands.add_parser(entry.name, help=summary[:1].lower() + summary[1:])
        )
    if "demo" not in runners:
        commands.add_parser("demo", help="the development demo (needs edgemodel-dev)", add_help=False)
        runners["demo"] = _missing_demo
    # Without edgemodel-dev, `edgemodel demo --keep` still gets the message, not a usage error.
    args, extra = parser.parse_known_args(argv)
    if extra and runners.get(args.command) is not _missing_demo:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "crd":
        sys.stdout.write(crd.crd_yaml())
        return 0
    if args.command == "validate":
        return _validate(args.files)
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
