"""Payload parsing: every refusal has a reason, nothing else ever escapes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemodel_runtime import payloads

SCHEMA = payloads.Schema(fields=("temp", "humidity"), topics=("plant/+/sensors", "other/#"))
WITH_FIELD = payloads.Schema(fields=("temp",), device_field="id", max_bytes=256)


def parse(
    body: object, schema: payloads.Schema = SCHEMA, topic: str = "plant/d1/sensors"
) -> payloads.Reading:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return payloads.parse(raw, schema, topic=topic, received=123.0)


def test_valid_reading_from_topic():
    r = parse({"temp": 21, "humidity": 40.5, "ts": 1_700_000_000})
    assert r == payloads.Reading("d1", 1_700_000_000.0, {"temp": 21.0, "humidity": 40.5})


def test_device_field_wins_and_extra_fields_are_ignored():
    r = parse({"id": 42, "temp": 1.0, "colour": "red"}, WITH_FIELD)
    assert r.device == "42" and r.values == {"temp": 1.0}


def test_device_is_whole_topic_without_plus():
    assert parse({"temp": 1, "humidity": 2}, topic="other/x/y").device == "other/x/y"


def test_iso_timestamp_naive_is_utc_and_absent_is_received_time():
    assert parse({"temp": 1, "humidity": 2, "ts": "2024-01-01T00:00:00"}).ts == 1_704_067_200.0
    assert parse({"temp": 1, "humidity": 2, "ts": "2024-01-01T01:00:00+01:00"}).ts == 1_704_067_200.0
    assert parse({"temp": 1, "humidity": 2}).ts == 123.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not_utf8"),
        (b"{not json", "not_json"),
        (b"", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'"temp"', "not_object"),
        (b'{"temp": NaN, "humidity": 1}', "not_finite"),
        (b'{"temp": Infinity, "humidity": 1}', "not_finite"),
        (b'{"temp": 1e999, "humidity": 1}', "not_finite"),
        (b'{"temp": 1' + b"0" * 400 + b', "humidity": 1}', "not_finite"),
        ({"temp": 1}, "missing_field"),
        ({"temp": "1", "humidity": 1}, "wrong_type"),
        ({"temp": True, "humidity": 1}, "wrong_type"),
        ({"temp": None, "humidity": 1}, "wrong_type"),
        ({"temp": [1], "humidity": 1}, "wrong_type"),
        ({"temp": 1, "humidity": 1, "ts": "yesterday"}, "bad_timestamp"),
        ({"temp": 1, "humidity": 1, "ts": 1_700_000_000_000}, "bad_timestamp"),
        ({"temp": 1, "humidity": 1, "ts": -1}, "bad_timestamp"),
        ({"temp": 1, "humidity": 1, "ts": True}, "bad_timestamp"),
        (b"[" * 100_000 + b"]" * 100_000, "too_large"),
    ],
)
def test_refusals_have_reasons(body, reason):
    with pytest.raises(payloads.PayloadError) as info:
        parse(body)
    assert info.value.reason == reason
    assert reason in payloads.REASONS


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"temp": 1}, "missing_field"),
        ({"id": "", "temp": 1}, "bad_device"),
        ({"id": "a+b", "temp": 1}, "bad_device"),
        ({"id": "x" * 200, "temp": 1}, "bad_device"),
        ({"id": {"a": 1}, "temp": 1}, "bad_device"),
        ({"id": "a\nb", "temp": 1}, "bad_device"),
        ({"id": "a", "temp": 1, "pad": "x" * 300}, "too_large"),
    ],
)
def test_device_field_refusals(body, reason):
    with pytest.raises(payloads.PayloadError) as info:
        parse(body, WITH_FIELD)
    assert info.value.reason == reason


def test_deeply_nested_json_is_refused_not_crashed():
    schema = payloads.Schema(fields=("temp",), max_bytes=10_000_000)
    with pytest.raises(payloads.PayloadError) as info:
        payloads.parse(b"[" * 1_000_000 + b"]" * 1_000_000, schema, topic="t", received=0.0)
    assert info.value.reason in ("not_json", "not_object")


@pytest.mark.parametrize(
    ("topic_filter", "topic", "match"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "x/y", True),
        ("a/+", "a/b/c", False),
        ("a/b", "a/b", True),
        ("+/+", "/x", True),
    ],
)
def test_topic_matches(topic_filter, topic, match):
    assert payloads.topic_matches(topic_filter, topic) is match


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "temp": json_values | st.floats(allow_nan=True, allow_infinity=True),
        "humidity": json_values | st.floats(allow_nan=True, allow_infinity=True),
        "ts": json_values | st.floats(min_value=-1e12, max_value=1e12) | st.datetimes().map(str),
        "id": json_values | st.text(max_size=150),
    },
)


def _encode(obj: object) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


payload_bytes = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    json_values.map(_encode),
    near_valid.map(_encode),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=payload_bytes, topic=st.sampled_from(["plant/d1/sensors", "other/x", "unmatched"]))
def test_fuzzed_payloads_are_parsed_or_refused_with_a_reason(body, topic):
    for schema in (SCHEMA, WITH_FIELD):
        try:
            r = payloads.parse(body, schema, topic=topic, received=1.0)
        except payloads.PayloadError as exc:
            assert exc.reason in payloads.REASONS
        else:
            assert set(r.values) == set(schema.fields)
            assert all(math.isfinite(v) for v in r.values.values())
            assert math.isfinite(r.ts) and r.device
