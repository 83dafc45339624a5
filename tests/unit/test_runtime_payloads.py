"""Payload parsing: every refusal has a reason, nothing else ever escapes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemodel import features
from edgemodel_runtime import config, inference, payloads

SCHEMA = payloads.Schema(fields=("temp", "humidity"), topics=("plant/+/sensors", "other/#"))
WITH_FIELD = payloads.Schema(fields=("temp",), device_field="id", max_bytes=256)
RECEIVED = 1_800_000_000.0  # 2027: every fixed timestamp below is in its past


def parse(
    body: object, schema: payloads.Schema = SCHEMA, topic: str = "plant/d1/sensors"
) -> payloads.Reading:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return payloads.parse(raw, schema, topic=topic, received=RECEIVED)


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
    assert parse({"temp": 1, "humidity": 2}).ts == RECEIVED


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
            r = payloads.parse(body, schema, topic=topic, received=RECEIVED)
        except payloads.PayloadError as exc:
            assert exc.reason in payloads.REASONS
        else:
            assert set(r.values) == set(schema.fields)
            assert all(math.isfinite(v) for v in r.values.values())
            assert math.isfinite(r.ts) and r.device


# ------------------------------------------------------------------ issue 12, item 7


@pytest.mark.parametrize(
    ("ahead", "refused"),
    [
        (-86_400.0, False),
        (0.0, False),
        (payloads.MAX_FUTURE_SECONDS, False),
        (payloads.MAX_FUTURE_SECONDS + 1, True),
    ],
)
def test_a_timestamp_too_far_ahead_of_the_receive_time_is_refused(ahead, refused):
    body = {"temp": 1, "humidity": 2, "ts": RECEIVED + ahead}
    if not refused:
        assert parse(body).ts == RECEIVED + ahead
        return
    with pytest.raises(payloads.PayloadError) as info:
        parse(body)
    assert info.value.reason == "future_timestamp" and "future_timestamp" in payloads.REASONS


def test_the_future_skew_is_configurable():
    strict = payloads.Schema(fields=("temp", "humidity"), topics=SCHEMA.topics, max_future_seconds=5.0)
    body = json.dumps({"temp": 1, "humidity": 2, "ts": RECEIVED + 6}).encode()
    with pytest.raises(payloads.PayloadError, match="future_timestamp"):
        payloads.parse(body, strict, topic="plant/d1/sensors", received=RECEIVED)
    iso = json.dumps({"temp": 1, "humidity": 2, "ts": "2030-01-01T00:00:00Z"}).encode()
    with pytest.raises(payloads.PayloadError, match="future_timestamp"):
        payloads.parse(iso, SCHEMA, topic="plant/d1/sensors", received=RECEIVED)


def test_one_bad_clock_does_not_silence_the_device():
    """The future reading is refused, so the device's next correct readings stay in order."""
    readings = []
    for ts in (RECEIVED - 2, RECEIVED + 10 * 365 * 86_400, RECEIVED - 1, RECEIVED):
        try:
            readings.append(parse({"temp": 1, "humidity": 2, "ts": ts}))
        except payloads.PayloadError as exc:
            assert exc.reason == "future_timestamp"
    spec = features.FeatureSpec(features=("humidity",), target="temp", horizon=1, lags=0)
    plan = inference.Inference(spec).plan(readings, predicting=False)
    assert [r.ts for r in plan.accepted] == [RECEIVED - 2, RECEIVED - 1, RECEIVED]
    assert plan.rejected == []


@pytest.mark.parametrize("device", ["a/b", "plant/+/x", "#", "d+1", "d#1", "/"])
def test_a_device_id_that_would_inject_topic_levels_is_refused(device):
    with pytest.raises(payloads.PayloadError) as info:
        parse({"id": device, "temp": 1.0}, WITH_FIELD)
    assert info.value.reason == "bad_device"


def test_a_device_from_the_topic_is_one_level_or_the_routed_topic():
    assert parse({"temp": 1, "humidity": 2}, topic="plant/d-7/sensors").device == "d-7"
    # No '+' in the matching filter: the whole topic the broker routed is the id, levels and all.
    assert parse({"temp": 1, "humidity": 2}, topic="other/x/y").device == "other/x/y"


def test_the_runtime_reads_the_skew_from_its_environment():
    env = {
        "EDGEMODEL_TOPICS": "plant/+/sensors",
        "EDGEMODEL_FEATURES": "humidity",
        "EDGEMODEL_TARGET": "temp",
        "EDGEMODEL_BROKER_HOST": "127.0.0.1",
        "EDGEMODEL_DRIFT_THRESHOLD": "1",
        "EDGEMODEL_MODEL_NAME": "m",
        "EDGEMODEL_MAX_FUTURE_SKEW_SECONDS": "7.5",
    }
    assert config.load(None, env).schema.max_future_seconds == 7.5
    del env["EDGEMODEL_MAX_FUTURE_SKEW_SECONDS"]
    assert config.load(None, env).schema.max_future_seconds == payloads.MAX_FUTURE_SECONDS
