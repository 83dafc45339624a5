"""A burst of 1,200 malformed payloads over a real broker: the runtime stays up and counts each one.

Hypothesis generates the payloads (see also the parser's property test in
tests/unit/test_runtime_payloads.py); the expected reason of each is what the parser says
for it, so every message must land in exactly one counter.
"""

from __future__ import annotations

import collections
import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemodel_dev import testing
from edgemodel_runtime import app, inference, payloads

pytestmark = [pytest.mark.mqtt]

BURST = 1200

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)
_field = _json | st.floats(allow_nan=True, allow_infinity=True) | st.just(21.5)
_near_valid = st.fixed_dictionaries(
    {},
    optional={
        "device": st.sampled_from(["fz-1", "fz-2", "", "a+b", 7, None]),
        "ts": st.sampled_from([1_700_000_000, "2024-01-01T00:00:00", "soon", -5, 1e15]),
        "temp": _field,
        "humidity": _field,
    },
)
_payload = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda o: json.dumps(o).encode()),
    _near_valid.map(lambda o: json.dumps(o, allow_nan=True).encode()),
    st.just(b"{" * 5000),
    st.integers(70_000, 80_000).map(lambda n: b'{"pad": "' + b"x" * n + b'"}'),
)


def _generate(n: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_payload)
    def collect(body: bytes) -> None:
        if len(out) < n:
            out.append(body)

    collect()
    rng = random.Random(0)
    while len(out) < n:  # hypothesis may stop early once it has seen enough distinct examples
        out.append(rng.randbytes(rng.randint(0, 100)))
    return out


def _expected(bodies: list[bytes], schema: payloads.Schema, spec) -> collections.Counter[str]:
    """What the runtime must count for each message, computed with the same pure code."""
    counts: collections.Counter[str] = collections.Counter()
    readings = []
    for body in bodies:
        try:
            # Now, as the runtime receives them: a timestamp too far ahead is refused against it.
            readings.append(payloads.parse(body, schema, topic="x/sensors/fz", received=time.time()))
        except payloads.PayloadError as exc:
            counts[exc.reason] += 1
    plan = inference.Inference(spec).plan(readings, predicting=False)
    counts.update(reason for _, reason in plan.rejected)
    counts["valid"] = len(plan.accepted)
    return counts


def test_malformed_burst_is_counted_and_survived(mosquitto_broker, unique_name):
    b = mosquitto_broker
    s = testing.for_broker(b, None, unique_name)
    bodies = _generate(BURST)
    # Readings without a timestamp get the arrival time in the runtime, so which valid
    # readings count as duplicates may differ; parse refusals must match exactly.
    expected = _expected(bodies, s.schema, s.spec)
    runtime = app.App(s).start()
    publisher = testing.publisher_for(b, unique_name)
    try:
        reg = runtime.metrics.registry
        assert runtime.wait_connected(30)
        infos = [publisher.publish(f"{unique_name}/sensors/fz", body) for body in bodies]
        for info in infos:
            info.wait_for_publish(60)
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_messages_total") == BURST, timeout=60, what="the burst"
        )
        rejected = {
            reason: testing.sample(reg, "edgemodel_rejected_payloads_total", {"reason": reason})
            for reason in payloads.REASONS
        }
        valid = testing.sample(reg, "edgemodel_readings_total")
        assert sum(rejected.values()) + valid == BURST
        for reason in payloads.REASONS:
            if reason not in ("duplicate", "out_of_order"):
                assert rejected[reason] == expected[reason], reason
        parsed = expected["valid"] + expected["duplicate"] + expected["out_of_order"]
        assert valid + rejected["duplicate"] + rejected["out_of_order"] == parsed
        assert rejected["too_large"] > 0 and rejected["not_json"] > 0 and rejected["wrong_type"] > 0

        # Still alive and still serving the stream afterwards.
        good = testing.readings(1, 5, seed=1)
        for p in good:
            publisher.publish(f"{unique_name}/sensors/ok", json.dumps(p), wait=True)
        testing.wait_for(
            lambda: testing.sample(reg, "edgemodel_readings_total") == valid + len(good),
            timeout=30,
            what="valid readings after the burst",
        )
        assert runtime.health()[0] and runtime.readiness()[0]
    finally:
        publisher.close()
        runtime.stop()
