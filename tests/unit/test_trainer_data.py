"""Training windows as tables: normalising, de-duplicating, keeping the most recent."""

from __future__ import annotations

import pathlib

import pandas as pd
import pytest

from edgemodel import features
from edgemodel_trainer import data

SPEC = features.FeatureSpec(features=("temp", "hum"), target="temp", lags=1)


def test_normalise_sorts_by_time_and_keeps_only_needed_columns() -> None:
    table = pd.DataFrame(
        {"device": ["b", "a", "a"], "ts": [3, 1, 2], "temp": [3.0, 1.0, 2.0], "hum": [0, 0, 0], "x": 1}
    )
    out = data.normalise(table, SPEC)
    assert list(out.columns) == ["device", "ts", "temp", "hum"]
    assert out["ts"].tolist() == [1.0, 2.0, 3.0]
    assert out["device"].tolist() == ["a", "a", "b"]


def test_normalise_drops_bad_rows_and_repeats() -> None:
    table = pd.DataFrame(
        {
            "device": ["a"] * 5,
            "ts": [1, 2, 2, 3, 4],
            "temp": [1.0, 2.0, 99.0, "oops", float("inf")],
            "hum": [0.0] * 5,
        }
    )
    out = data.normalise(table, SPEC)
    assert out["temp"].tolist() == [1.0, 2.0]  # first copy of ts=2 stays


def test_iso_timestamps_become_epoch_seconds_and_device_defaults() -> None:
    table = pd.DataFrame(
        {"ts": ["2024-01-01T00:00:01Z", "2024-01-01T00:00:00Z"], "temp": [1.0, 2.0], "hum": [0.0, 0.0]}
    )
    out = data.normalise(table, SPEC)
    assert out["ts"].tolist() == [1704067200.0, 1704067201.0]
    assert set(out["device"]) == {data.DEFAULT_DEVICE}


@pytest.mark.parametrize(
    ("columns", "match"), [(["device", "temp", "hum"], "'ts'"), (["device", "ts", "temp"], "hum")]
)
def test_missing_columns_are_named(columns: list[str], match: str) -> None:
    with pytest.raises(data.DataError, match=match):
        data.normalise(pd.DataFrame({c: [1.0] for c in columns}), SPEC)


def test_most_recent_takes_the_tail_across_devices() -> None:
    table = data.normalise(
        pd.DataFrame({"device": ["a", "b"] * 5, "ts": range(10), "temp": range(10), "hum": 0.0}), SPEC
    )
    assert data.most_recent(table, 3)["ts"].tolist() == [7.0, 8.0, 9.0]
    assert len(data.most_recent(table, 100)) == 10


def test_readings_feed_the_shared_feature_builder() -> None:
    table = data.normalise(
        pd.DataFrame({"device": "a", "ts": range(4), "temp": [1.0, 2.0, 3.0, 4.0], "hum": 5.0}), SPEC
    )
    frame = features.build_training_frame(SPEC, data.readings(table, SPEC))
    assert frame.columns == ("temp", "hum", "temp_lag1")
    assert frame.x.tolist() == [[2.0, 5.0, 1.0], [3.0, 5.0, 2.0]]
    assert frame.y.tolist() == [3.0, 4.0]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_file_reads_csv_and_parquet(tmp_path: pathlib.Path, suffix: str) -> None:
    table = pd.DataFrame({"device": ["a"], "ts": [1.0], "temp": [2.0], "hum": [3.0]})
    path = tmp_path / f"w{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path)
    assert data.read_file(path).to_dict("list") == table.to_dict("list")


def test_read_file_names_a_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(data.DataError, match="does not exist"):
        data.read_file(tmp_path / "nope.csv")


def test_device_ids_stay_strings(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("device,ts,temp,hum\n007,1,1.0,0\n7,1,2.0,0\n")
    out = data.normalise(data.read_file(path), SPEC)
    assert sorted(out["device"]) == ["007", "7"]
