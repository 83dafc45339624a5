"""``edgemodel``: the user-facing command line.

- ``edgemodel demo``: run the whole self-healing loop for real on this machine.
- ``edgemodel crd``: print the EdgeModel CustomResourceDefinition.
- ``edgemodel validate FILE``: check EdgeModel manifests against the API before applying them.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import pydantic
import yaml

from edgemodel import __version__, api, crd

__all__ = ["main"]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgemodel", description="EdgeModel: self-healing ML at the edge")
    parser.add_argument("--version", action="version", version=f"edgemodel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the whole self-healing loop for real on this machine")
    demo.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=pathlib.Path(".demo"),
        help="where logs, kubeconfig and data go (default: .demo)",
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep everything running after the summary, to explore with kubectl",
    )
    demo.add_argument("--drift", choices=["abrupt", "gradual"], default="abrupt", help="the drift to inject")
    demo.add_argument("--json", type=pathlib.Path, default=None, help="also write the timeline as JSON here")
    commands.add_parser("crd", help="print the EdgeModel CRD")
    validate = commands.add_parser("validate", help="check EdgeModel manifests against the API")
    validate.add_argument("files", nargs="+")
    args = parser.parse_args(argv)

    if args.command == "crd":
        sys.stdout.write(crd.crd_yaml())
        return 0
    if args.command == "validate":
        return _validate(args.files)
    # The demo pulls in MLflow, kubernetes and the harness; import it only when asked for.
    from edgemodel import demo as demo_module  # noqa: PLC0415

    return demo_module.main(workdir=args.workdir, keep=args.keep, drift=args.drift, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
