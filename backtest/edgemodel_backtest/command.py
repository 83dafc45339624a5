"""``edgemodel backtest``: the command-line shell around the replay (entry point in ``edgemodel.commands``).

Reads the manifest and the history, runs :func:`edgemodel_backtest.replay.run`, prints
the table and writes ``--json`` and ``--report``. Bad input (an invalid spec, a history
missing a column, no valid reading) is one clear message on stderr and exit code 2;
bad rows are counted, skipped and named.

I/O: the files named on the command line, stdout and stderr.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import json
import multiprocessing
import pathlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pydantic
import yaml

from edgemodel import api

if TYPE_CHECKING:
    from edgemodel_backtest import replay

__all__ = ["backtest", "main"]

Runner = Callable[[argparse.Namespace], int]
DEFAULT_PROCESSES = 1
"""One process unless ``--processes`` says otherwise: ``python -m bench backtest`` measured two
processes slower than one on 100,000 readings on 2 cores (12.4 s against 11.3 s wall when
quiet, 55.3 s against 30.2 s when loaded; BENCHMARKS.md section 6), the pool's start and its
copies costing more than the four replays in parallel save."""


class InputError(Exception):
    """Input the backtest cannot use; the message says what and where."""


def _manifest(path: pathlib.Path, name: str | None) -> tuple[str, api.EdgeModelSpec]:
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the manifest: {exc}") from exc
    found = [
        d for d in docs
        if isinstance(d, dict) and d.get("kind") == api.KIND
        and (name is None or (d.get("metadata") or {}).get("name") == name)
    ]  # fmt: skip
    if not found:
        raise InputError(f"{path}: no EdgeModel{f' named {name}' if name else ''} in the manifest")
    doc = found[0]
    em_name = str((doc.get("metadata") or {}).get("name") or "backtest")
    try:
        return em_name, api.EdgeModelSpec.model_validate(doc.get("spec") or {})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise InputError(f"{path}: EdgeModel {em_name}: {problems}") from exc


def _rows(path: pathlib.Path) -> tuple[list[str], Iterator[Mapping[str, str | None]]]:
    """The header and the rows of a CSV file (or of a Parquet file, as text)."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pandas as pd  # noqa: PLC0415 - only for Parquet

        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError, ImportError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from exc
        columns = [str(c) for c in frame.columns]
        return columns, (
            {c: (None if v is None else str(v)) for c, v in zip(columns, row, strict=True)}
            for row in frame.itertuples(index=False, name=None)
        )
    handle = path.open(newline="", encoding="utf-8", errors="replace")
    reader = csv.DictReader(handle)
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns

    def rows() -> Iterator[Mapping[str, str | None]]:
        with handle:
            yield from reader

    return columns, rows()


def _history(path: pathlib.Path, spec: api.EdgeModelSpec) -> Any:
    from edgemodel_backtest import history, stream  # noqa: PLC0415 - the replay's imports are heavy

    columns, rows = _rows(path)
    try:
        return history.parse(rows, stream.feature_spec(spec), columns=columns)
    except history.HistoryError as exc:
        raise InputError(f"{path}: {exc}") from exc


def _bootstrap_path(spec: api.EdgeModelSpec, manifest: pathlib.Path) -> pathlib.Path | None:
    source = spec.model.bootstrap_data
    if source is None:
        return None
    if "://" in source:
        raise InputError(
            f"spec.model.bootstrapData is a URL ({source}); the backtest reads local files only: "
            "download it, or remove bootstrapData to train version 1 on the first part of --data"
        )
    for candidate in (pathlib.Path(source), manifest.parent / source):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"spec.model.bootstrapData {source} is not a file here (nor next to {manifest}); "
        "remove it to train version 1 on the first part of --data"
    )


def _run(args: argparse.Namespace) -> int:
    from edgemodel_backtest import loop, replay, report, table  # noqa: PLC0415

    started = time.perf_counter()
    name, spec = _manifest(args.filename, args.name)
    hist = _history(args.data, spec)
    print(f"{args.data}: {hist.message()}", file=sys.stderr)
    if hist.unsorted:
        print(f"{args.data}: {hist.unsorted} rows were out of time order; replayed in order", file=sys.stderr)
    bootstrap = None
    source = ""
    boot_path = _bootstrap_path(spec, args.filename)
    if boot_path is not None:
        boot = _history(boot_path, spec)
        print(f"{boot_path}: {boot.message()}", file=sys.stderr)
        bootstrap, source = boot.readings, str(boot_path)
    options = replay.Options(
        warmup=args.warmup,
        period=args.period,
        timing=loop.Timing(job_seconds=args.job_seconds),
    )
    processes = args.processes or DEFAULT_PROCESSES
    try:
        with contextlib.ExitStack() as stack:
            mapper: Any = map
            if processes > 1:
                # Forked before this process has done any numerical work, so no BLAS thread
                # pool is copied half-way; the pool's workers end with the with-block.
                pool = stack.enter_context(
                    concurrent.futures.ProcessPoolExecutor(
                        processes, mp_context=multiprocessing.get_context("fork")
                    )
                )
                mapper = pool.map
            result = replay.run(
                spec,
                hist,
                name=name,
                bootstrap=bootstrap,
                bootstrap_source=source,
                options=options,
                mapper=mapper,
            )
    except (loop.BootstrapError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    seconds = time.perf_counter() - started
    v1 = result.version1_holdout_rmse
    print(
        f"EdgeModel {name}: {result.replayed} readings of {len(hist.devices)} "
        f"device{'' if len(hist.devices) == 1 else 's'} replayed from "
        f"{table.when(result.start)} to {table.when(result.end)} UTC; version 1 trained on "
        f"{result.bootstrap_readings} readings ({result.bootstrap_source}), holdout RMSE "
        f"{'n/a' if v1 is None else f'{v1:.3f}'}; threshold {spec.drift.threshold:g}, "
        f"window {spec.drift.window}, detector {spec.drift.detector}{_tuning(result)}\n"
    )
    sys.stdout.write(table.render(result.systems))
    print(f"\nreplayed in {seconds:.1f} s", file=sys.stderr)
    if args.json is not None:
        payload = result.to_json() | {
            "wallSeconds": seconds,
            "timing": {
                "jobSeconds": options.timing.job_seconds,
                "modelPollSeconds": options.timing.model_poll_seconds,
            },
            "periodSeconds": options.period,
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.report is not None:
        page = report.render(
            result.systems,
            title=f"Backtest of EdgeModel {name}",
            subtitle=(
                f"{result.replayed} readings of {args.data.name}, {table.when(result.start)} to "
                f"{table.when(result.end)} UTC; threshold {spec.drift.threshold:g} over {spec.drift.window} "
                f"outcomes; detector {spec.drift.detector}; algorithm {spec.model.algorithm}"
            ),
            notes=[
                f"Version 1 was trained on {result.bootstrap_readings} readings ({result.bootstrap_source}); "
                "every system starts from it and is scored on the same later readings.",
                f"Skipped rows: {hist.skipped} ({hist.message()}).",
                f"A retraining Job takes {options.timing.job_seconds:g} s of the data's time; a new version "
                f"serves {options.timing.model_poll_seconds:g} s after its Job.",
                "Generated by edgemodel backtest.",
            ],
        )
        args.report.write_text(page, encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    return 0


def _tuning(result: replay.Result) -> str:
    """Version 1's Page-Hinkley tuning, as the runtime serves it (`` (calibrated for version 1: ...)``)."""
    tunings = result.system("loop").tunings
    if result.spec.drift.detector != "page_hinkley" or not tunings:
        return ""
    version, t = tunings[0]
    return f" ({t.source} for version {version}: delta {t.delta:.3g}, threshold {t.threshold:.3g})"


def backtest(parser: argparse.ArgumentParser) -> Runner:
    """Replay a history through the self-healing loop and three baselines, on the data's own clock."""
    parser.add_argument("-f", "--filename", type=pathlib.Path, required=True, help="the EdgeModel manifest")
    parser.add_argument(
        "--data", type=pathlib.Path, required=True,
        help="the history: CSV (or Parquet) with ts, the sensor fields, and optionally device",
    )  # fmt: skip
    parser.add_argument("--report", type=pathlib.Path, default=None, help="write one HTML page here")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--name", default=None, help="the EdgeModel to use when the manifest holds several")
    parser.add_argument(
        "--warmup", type=float, default=0.2,
        help="without spec.model.bootstrapData: the share of the history that trains version 1 (default 0.2)",
    )  # fmt: skip
    parser.add_argument(
        "--period", type=float, default=86400.0,
        help="seconds between the periodic baseline's retrains (default 86400: daily)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=None,
        help=f"replay the systems in this many processes (default {DEFAULT_PROCESSES})",
    )  # fmt: skip
    parser.add_argument(
        "--job-seconds", type=float, default=60.0,
        help="how long a retraining Job takes, in the data's seconds (default 60)",
    )  # fmt: skip

    def run(args: argparse.Namespace) -> int:
        try:
            return _run(args)
        except InputError as exc:
            print(f"edgemodel backtest: error: {exc}", file=sys.stderr)
            return 2

    return run


def main(argv: list[str] | None = None) -> int:
    """``python -m edgemodel_backtest.command``: the same as ``edgemodel backtest``."""
    parser = argparse.ArgumentParser(prog="edgemodel backtest", description=backtest.__doc__)
    return backtest(parser)(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
