"""Small, deterministic sensor streams for tests: a plant floor with a few temperature sensors."""

from __future__ import annotations

import csv
import math
import pathlib
import random


def plant_readings(
    *, devices: int = 3, n: int = 300, seed: int = 7, offset: float = 0.0, start_ts: float = 1_700_000_000.0
) -> list[dict[str, float | str]]:
    """Readings with columns device, ts, temperature, humidity; ``offset`` shifts the plant."""
    rng = random.Random(seed)
    rows: list[dict[str, float | str]] = []
    for d in range(devices):
        temp = 20.0 + d
        for i in range(n):
            humidity = 40.0 + 10.0 * math.sin(i / 15.0 + d)
            temp = 0.8 * temp + 0.2 * (20.0 + d + 0.05 * humidity) + rng.gauss(0, 0.2)
            rows.append(
                {
                    "device": f"sensor-{d}",
                    "ts": start_ts + i,
                    "temperature": round(temp + offset, 4),
                    "humidity": round(humidity, 4),
                }
            )
    return rows


def write_csv(path: pathlib.Path, rows: list[dict[str, float | str]]) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
