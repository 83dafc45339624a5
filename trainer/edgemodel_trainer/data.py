"""Training windows as tables: read them, check them, keep the most recent readings.

A window is a table with the columns ``device``, ``ts`` and then payload fields, as the
runtime logs it (:data:`edgemodel.contracts.WINDOW_ARTIFACT`) or as a user supplies it
with ``--data`` (CSV or Parquet). ``ts`` is epoch seconds or an ISO 8601 timestamp.

:func:`read_file` does file I/O; everything else is pure.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pandas as pd

from edgemodel import features

__all__ = ["DataError", "most_recent", "normalise", "read_csv", "read_file", "readings", "since_change"]

DEVICE = "device"
TIMESTAMP = "ts"
DEFAULT_DEVICE = "default"
MIN_ROWS_AFTER_CHANGE = 60
"""Fewest readings after a marked change for the trainer to train on those alone."""


class DataError(ValueError):
    """A training window that cannot be used: unreadable, or missing what the spec needs."""


def read_file(path: str | pathlib.Path) -> pd.DataFrame:
    """Read a CSV or Parquet window (by suffix; anything else is read as CSV)."""
    location = pathlib.Path(path)
    if not location.is_file():
        raise DataError(f"training data {location} does not exist")
    try:
        if location.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(location)
        return read_csv(location)
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"training data {location} could not be read: {exc}") from exc


def read_csv(path: str | pathlib.Path) -> pd.DataFrame:
    """Read a CSV window; device ids stay strings (``007`` is not ``7``)."""
    return pd.read_csv(path, dtype={DEVICE: str})


def normalise(table: pd.DataFrame, spec: features.FeatureSpec) -> pd.DataFrame:
    """The columns ``device``, ``ts`` (float seconds) and the spec's fields (float), in time order.

    A missing ``device`` column means one device. Rows with a missing or non-numeric
    value in any needed field are dropped, and so are repeats of a ``(device, ts)`` pair
    (the first copy stays). The sort is stable, so readings that share a timestamp keep
    their file order.
    """
    if TIMESTAMP not in table.columns:
        raise DataError(f"training data has no {TIMESTAMP!r} column; columns: {list(table.columns)}")
    missing = [f for f in spec.fields if f not in table.columns]
    if missing:
        raise DataError(f"training data lacks fields {missing}; columns: {list(table.columns)}")
    out = pd.DataFrame(index=table.index)
    out[DEVICE] = table[DEVICE].astype(str) if DEVICE in table.columns else DEFAULT_DEVICE
    out[TIMESTAMP] = _seconds(table[TIMESTAMP])
    for field in spec.fields:
        out[field] = pd.to_numeric(table[field], errors="coerce").astype("float64")
    out = out.dropna(subset=[TIMESTAMP, *spec.fields])
    out = out[~out[list(spec.fields)].isin([float("inf"), float("-inf")]).any(axis=1)]
    out = out.drop_duplicates(subset=[DEVICE, TIMESTAMP], keep="first")
    return out.sort_values(TIMESTAMP, kind="stable").reset_index(drop=True)


def _seconds(column: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return numeric.astype("float64")
    parsed = pd.to_datetime(column, errors="coerce", utc=True)
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) / pd.Timedelta(seconds=1)).astype("float64")


def most_recent(table: pd.DataFrame, count: int) -> pd.DataFrame:
    """The last ``count`` readings of a table :func:`normalise` returned (across devices)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    return table.tail(count).reset_index(drop=True)


def readings(
    table: pd.DataFrame, spec: features.FeatureSpec
) -> Iterator[tuple[str, float, dict[str, float]]]:
    """``(device, ts, reading)`` triples for :func:`edgemodel.features.build_training_frame`."""
    fields = list(spec.fields)
    for device, ts, *values in table[[DEVICE, TIMESTAMP, *fields]].itertuples(index=False, name=None):
        yield str(device), float(ts), dict(zip(fields, (float(v) for v in values), strict=True))


def since_change(
    table: pd.DataFrame, change_ts: float, *, min_rows: int = MIN_ROWS_AFTER_CHANGE
) -> tuple[pd.DataFrame, bool]:
    """The readings at or after ``change_ts`` when there are at least ``min_rows``; else the whole table.

    Returns the table and whether it was cut: a window that marks where the plant changed
    trains the challenger on the changed plant alone, once enough of it was seen.

    >>> t = pd.DataFrame({"ts": [1.0, 2.0, 3.0], "v": [0.0, 0.0, 1.0]})
    >>> cut, kept = since_change(t, 2.0, min_rows=2); (cut["ts"].tolist(), kept)
    ([2.0, 3.0], True)
    >>> since_change(t, 3.0, min_rows=2)[1]
    False
    """
    after = table[pd.to_numeric(table[TIMESTAMP], errors="coerce") >= change_ts]
    if len(after) >= min_rows:
        return after.reset_index(drop=True), True
    return table, False
