"""The streaming core and the micro-batcher, without MQTT or a model server."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgemodel import features
from edgemodel_runtime import inference, partition
from edgemodel_runtime.payloads import Reading

SPEC = features.FeatureSpec(features=("v",), target="v", horizon=2, lags=1)


def stream(device: str, values: list[float], start: float = 0.0) -> list[Reading]:
    return [Reading(device, start + i, {"v": v}) for i, v in enumerate(values)]


def test_rows_match_the_shared_feature_builder():
    inf = inference.Inference(SPEC)
    readings = stream("d", [1.0, 2.0, 3.0, 4.0])
    plan = inf.plan(readings, predicting=True)
    expected = features.build_training_frame(SPEC, [(r.device, r.ts, r.values) for r in readings])
    assert plan.rows[: len(expected)] == expected.x.tolist()
    assert plan.rows == [[2.0, 1.0], [3.0, 2.0], [4.0, 3.0]]


def test_outcomes_pair_each_prediction_with_the_target_horizon_readings_later():
    inf = inference.Inference(SPEC)
    plan = inf.plan(stream("d", [1.0, 2.0, 3.0, 4.0]), predicting=True)
    outcomes = inf.complete(plan, np.array([10.0, 20.0, 30.0]), "1")
    # Row from reading 1 predicts reading 3 (value 4.0); the others are still pending.
    assert [(o.prediction, o.truth, o.version) for o in outcomes] == [(10.0, 4.0, "1")]
    plan = inf.plan(stream("d", [5.0, 6.0], start=4.0), predicting=True)
    outcomes = inf.complete(plan, np.array([40.0, 50.0]), "1")
    assert [(o.prediction, o.truth) for o in outcomes] == [(20.0, 5.0), (30.0, 6.0)]


def test_devices_are_independent_and_interleaving_does_not_matter():
    a, b = stream("a", [1.0, 2.0, 3.0]), stream("b", [10.0, 20.0, 30.0])
    interleaved = [x for pair in zip(a, b, strict=True) for x in pair]
    plan = inference.Inference(SPEC).plan(interleaved, predicting=True)
    assert plan.rows == [[2.0, 1.0], [20.0, 10.0], [3.0, 2.0], [30.0, 20.0]]


def test_duplicates_and_out_of_order_readings_are_refused_and_leave_history_alone():
    inf = inference.Inference(SPEC)
    r = stream("d", [1.0, 2.0, 3.0])
    plan = inf.plan([r[0], r[1], r[1], r[0], r[2]], predicting=True)
    assert [reason for _, reason in plan.rejected] == ["duplicate", "out_of_order"]
    assert plan.rows == [[2.0, 1.0], [3.0, 2.0]]
    # Same timestamp but other values is a new reading (coarse device clocks).
    plan = inf.plan([Reading("d", 2.0, {"v": 9.0})], predicting=True)
    assert plan.rows == [[9.0, 3.0]] and not plan.rejected


def test_without_a_model_history_still_grows_and_nothing_is_pending_a_prediction():
    inf = inference.Inference(SPEC)
    plan = inf.plan(stream("d", [1.0, 2.0, 3.0]), predicting=False)
    assert plan.rows == [] and len(plan.accepted) == 3
    assert inf.complete(plan, None, None) == []
    plan = inf.plan(stream("d", [4.0], start=3.0), predicting=True)
    assert plan.rows == [[4.0, 3.0]]  # lags come from readings seen before the model


def test_non_finite_predictions_are_not_published_or_scored():
    inf = inference.Inference(features.FeatureSpec(features=("v",), target="v", horizon=1, lags=0))
    plan = inf.plan(stream("d", [1.0, 2.0]), predicting=True)
    outcomes = inf.complete(plan, np.array([np.nan, 5.0]), "1")
    assert outcomes == [] and plan.row_slots[0].prediction is None


def test_least_recently_seen_devices_are_forgotten_beyond_the_limit():
    inf = inference.Inference(SPEC, max_devices=2)
    inf.plan(
        [Reading("a", 0, {"v": 1.0}), Reading("b", 0, {"v": 1.0}), Reading("a", 1, {"v": 1.0})],
        predicting=True,
    )
    inf.plan([Reading("c", 0, {"v": 1.0})], predicting=True)
    assert inf.devices == 2 and inf.evicted == 1
    plan = inf.plan([Reading("a", 2, {"v": 2.0})], predicting=True)
    assert plan.rows == [[2.0, 1.0]]  # "a" kept its history, "b" was evicted


def test_batcher_hands_out_full_batches_at_once_and_partial_after_the_delay():
    clock = [0.0]
    b: inference.MicroBatcher[int] = inference.MicroBatcher(max_size=3, max_delay=0.0, clock=lambda: clock[0])
    for i in range(7):
        assert b.put(i)
    assert b.next_batch(0.1) == [0, 1, 2]
    assert b.next_batch(0.1) == [3, 4, 5]
    assert b.next_batch(0.1) == [6]
    assert b.next_batch(0.0) == []


def test_batcher_waits_for_more_items_within_the_delay():
    b: inference.MicroBatcher[int] = inference.MicroBatcher(max_size=3, max_delay=30.0)
    b.put(1)

    def later() -> None:
        b.put(2)
        b.put(3)

    t = threading.Thread(target=later)
    t.start()
    try:
        assert b.next_batch(30.0) == [1, 2, 3]  # returns as soon as the batch is full
    finally:
        t.join()


def test_batcher_pushes_back_when_full():
    b: inference.MicroBatcher[int] = inference.MicroBatcher(max_size=2, max_delay=0.0, capacity=2)
    assert b.put(1) and b.put(2)
    assert b.put(3, timeout=0.01) is False
    assert b.next_batch(0.1) == [1, 2]
    assert b.put(3, timeout=0.01) is True


def test_batcher_push_never_waits_and_says_when_the_queue_is_over_capacity():
    b: inference.MicroBatcher[int] = inference.MicroBatcher(max_size=2, max_delay=0.0, capacity=2)
    assert [b.push(i) for i in range(4)] == [True, True, False, False]
    assert len(b) == 4
    assert b.next_batch(0.1) == [0, 1]
    assert b.next_batch(0.1) == [2, 3]
    assert b.push(4) is True


@pytest.mark.parametrize("count", [2, 3, 7])
def test_partitions_cover_every_device_exactly_once(count):
    devices = [f"dev-{i}" for i in range(2000)]
    owners = [[p for p in range(count) if partition.Partition(count, p).owns(d)] for d in devices]
    assert all(len(o) == 1 for o in owners)
    sizes = np.bincount([o[0] for o in owners], minlength=count)
    assert sizes.min() > 0.7 * len(devices) / count  # roughly balanced


def test_partition_is_stable_across_processes():
    # crc32, not Python's salted hash: every replica agrees, run after run.
    assert [partition.Partition(4, i).owns("sensor-42") for i in range(4)] == [False, True, False, False]


def test_partition_index_comes_from_a_statefulset_ordinal():
    assert partition.index_from_pod_name("rt-12") == 12
    assert partition.index_from_pod_name("rt-abc") is None
    with pytest.raises(ValueError):
        partition.Partition(2, 2)
