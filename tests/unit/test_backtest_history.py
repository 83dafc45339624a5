"""The backtest's history: rows checked with the runtime's payload rules, replayed in time order."""

from __future__ import annotations

import pytest

from edgemodel import features
from edgemodel_backtest import history

SPEC = features.FeatureSpec(features=("temp", "hum"), target="temp", lags=1)
COLUMNS = ["device", "ts", "temp", "hum"]


def row(device: str | None, ts: str, temp: str = "20.0", hum: str = "40.0") -> dict[str, str | None]:
    out: dict[str, str | None] = {"ts": ts, "temp": temp, "hum": hum}
    if device is not None:
        out["device"] = device
    return out


def test_several_devices_unsorted_rows_are_replayed_in_time_order_per_device_and_across():
    rows = [row("b", "3"), row("a", "2"), row("a", "1"), row("b", "1"), row("a", "3"), row("c", "2")]
    h = history.parse(rows, SPEC, columns=COLUMNS)
    assert [r.ts for r in h.readings] == sorted(r.ts for r in h.readings)
    assert h.devices == ("a", "b", "c")
    # a@1 after a@2, and b@1 after b@3: two rows came before an earlier one of their device.
    assert h.unsorted == 2
    assert h.skipped == 0 and h.message() == "read 6 rows: all valid"
    # Readings that share a timestamp keep their file order (a stable sort).
    at_one = [r.device for r in h.readings if r.ts == 1.0]
    assert at_one == ["a", "b"]


def test_bad_rows_are_counted_by_the_runtimes_reason_and_skipped_with_their_line():
    rows = [
        row("a", "1"),
        row("a", "2", temp="warm"),  # line 3: not a number
        row("a", "3", temp="nan"),  # line 4: not finite
        row("a", ""),  # line 5: no timestamp
        row("a", "yesterday"),  # line 6: not a time
        row("a", "4", hum=""),  # line 7: a missing field
        row("a/b", "5"),  # line 8: a device id that would add a topic level
        row("a", "1", temp="21.0"),  # line 9: a second reading at ts 1
        row("a", "2.5e13"),  # line 10: milliseconds, not seconds
        row("a", "6"),
    ]
    h = history.parse(rows, SPEC, columns=COLUMNS)
    assert [r.ts for r in h.readings] == [1.0, 6.0]
    assert h.rows == 10 and h.skipped == 8
    assert h.bad == {
        "wrong_type": 1,
        "not_finite": 1,
        "bad_timestamp": 3,
        "missing_field": 1,
        "bad_device": 1,
        "duplicate": 1,
    }
    assert h.examples[0] == "line 3: wrong_type: field 'temp' must be a number, not str"
    assert h.examples[1].startswith("line 4: not_finite:")
    message = h.message()
    assert "skipped 8 bad rows" in message and "3 bad_timestamp" in message and "line 3" in message


def test_iso_timestamps_and_a_history_without_a_device_column():
    rows = [
        {"ts": "2026-01-01T00:00:00Z", "temp": "1", "hum": "2"},
        {"ts": "2026-01-01T01:00:00+01:00", "temp": "1", "hum": "2"},  # the same instant: a repeat
        {"ts": "2026-01-01T00:00:10", "temp": "1", "hum": "2"},  # naive: UTC
    ]
    h = history.parse(rows, SPEC, columns=["ts", "temp", "hum"])
    assert h.devices == (history.DEFAULT_DEVICE,)
    assert [r.ts for r in h.readings] == [1767225600.0, 1767225610.0]
    assert h.bad == {"duplicate": 1}


def test_gaps_are_counted_per_device():
    steady = [row("a", str(t)) for t in range(0, 100, 10)]
    gapped = [row("b", str(t)) for t in (*range(0, 50, 10), *range(500, 550, 10))]
    h = history.parse(steady + gapped, SPEC, columns=COLUMNS)
    assert h.gaps == 1
    assert len(h.readings) == len(steady) + len(gapped)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["device", "temp", "hum"], "no 'ts' column"),
        (["device", "ts", "temp"], "lacks the fields ['hum']"),
    ],
)
def test_a_history_missing_a_column_is_refused_naming_it(columns: list[str], message: str):
    with pytest.raises(history.HistoryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        history.parse([], SPEC, columns=columns)


def test_a_history_with_no_valid_row_is_refused_with_the_first_problem():
    with pytest.raises(history.HistoryError, match=r"no valid reading.*line 2: wrong_type"):
        history.parse([row("a", "1", temp="x"), row("a", "2", temp="y")], SPEC, columns=COLUMNS)
