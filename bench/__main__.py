"""``python -m bench {all,runtime,drift,heal,operator,backtest,footprint} [--quick] [--out DIR]``."""

from __future__ import annotations

import argparse
import importlib
import logging
import pathlib
import signal
import sys
import time
import traceback

from bench import common

BENCHMARKS = {
    "runtime": "bench.runtime_bench",
    "drift": "bench.drift_bench",
    "heal": "bench.heal_bench",
    "operator": "bench.operator_bench",
    "backtest": "bench.backtest_bench",
    "footprint": "bench.footprint_bench",
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("which", nargs="+", choices=["all", *BENCHMARKS])
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    p.add_argument("--out", type=pathlib.Path, default=common.RESULTS, help="where results are written")
    p.add_argument("--sizes", default=None, help="operator: comma-separated EdgeModel counts")
    p.add_argument(
        "--shards",
        type=int,
        default=1,
        help="operator: above 1, compare one operator with this many sharded ones (bench/operator_shards.py)",
    )
    args = p.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every benchmark's finally stops the processes it started.
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    names = list(BENCHMARKS) if "all" in args.which else args.which
    failed = []
    for name in names:
        t = time.monotonic()
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        try:
            kwargs: dict[str, object] = (
                {"sizes": [int(s) for s in args.sizes.split(",")]}
                if (args.sizes and name == "operator")
                else {}
            )
            if name == "operator" and args.shards > 1:
                module = importlib.import_module("bench.operator_shards")
                kwargs["shards"] = args.shards
            result = module.run(args.out, quick=args.quick, **kwargs)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            result = common.Result(
                name,
                f"{name} benchmark",
                "The benchmark failed:\n\n```\n" + traceback.format_exc()[-3000:] + "\n```\n",
                {},
                status="failed",
            )
        path = common.write_result(result, args.out, quick=args.quick)
        print(f"   {result.status}: wrote {path} in {time.monotonic() - t:.0f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
