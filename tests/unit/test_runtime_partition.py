"""Sharing devices between replicas: rendezvous hashing over live members, and static partitions."""

from __future__ import annotations

import argparse
import collections
import datetime

import pytest
from prometheus_client import CollectorRegistry

from edgemodel import features
from edgemodel_runtime import config, inference, partition, payloads, reporting
from edgemodel_runtime import metrics as metrics_

DEVICES = [f"dev-{i}" for i in range(1000)]
MEMBERS = ["line1-inference-7d9f8-abcde", "line1-inference-7d9f8-fghij", "line1-inference-7d9f8-klmno"]
NOW = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)


def _assignment(members: list[str]) -> dict[str, str]:
    return {d: partition.owner(d, members) for d in DEVICES}


def test_every_device_has_exactly_one_owner_among_members():
    views = [partition.Rendezvous(me, MEMBERS) for me in MEMBERS]
    for device in DEVICES:
        assert sum(v.owns(device) for v in views) == 1


def test_three_members_share_1000_devices_evenly():
    counts = collections.Counter(_assignment(MEMBERS).values())
    assert set(counts) == set(MEMBERS)
    # expected 333 each; binomial sd ~ 15, so 280..390 is far beyond 3 sd
    assert all(280 <= c <= 390 for c in counts.values()), counts


@pytest.mark.parametrize("size", [2, 5, 10])
def test_balance_holds_for_other_sizes(size):
    members = [f"rt-{i}" for i in range(size)]
    counts = collections.Counter(_assignment(members).values())
    expected = len(DEVICES) / size
    assert all(abs(c - expected) < 0.3 * expected for c in counts.values()), counts


def test_adding_a_member_moves_only_devices_to_it():
    before = _assignment(MEMBERS)
    after = _assignment([*MEMBERS, "line1-inference-7d9f8-pqrst"])
    moved = [d for d in DEVICES if before[d] != after[d]]
    assert all(after[d] == "line1-inference-7d9f8-pqrst" for d in moved)
    # about 1/4 of the devices move to the new member, and nothing else moves
    assert 180 <= len(moved) <= 320, len(moved)


def test_removing_a_member_moves_only_its_devices():
    before = _assignment(MEMBERS)
    after = _assignment(MEMBERS[:2])
    moved = [d for d in DEVICES if before[d] != after[d]]
    assert moved and all(before[d] == MEMBERS[2] for d in moved)
    assert len(moved) == sum(1 for d in DEVICES if before[d] == MEMBERS[2])


def test_assignment_does_not_depend_on_member_order_or_process():
    assert _assignment(MEMBERS) == _assignment(list(reversed(MEMBERS)))
    # pinned values: blake2b is the same on every host and Python, unlike hash()
    assert partition.weight("sensor-42", "rt-0") == partition.weight("sensor-42", "rt-0")
    assert partition.owner("sensor-42", ["rt-0", "rt-1", "rt-2"]) == partition.owner(
        "sensor-42", ("rt-2", "rt-0", "rt-1")
    )


def test_a_lone_member_owns_everything():
    alone = partition.Rendezvous("rt-0", [])
    assert alone.members == 1 and all(alone.owns(d) for d in DEVICES[:50])
    assert alone.mode == "dynamic"


def _entry(seconds_ago: float) -> dict[str, object]:
    at = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"rmse": 0.1, "samples": 3, "reportTime": at.isoformat().replace("+00:00", "Z")}


def test_live_members_are_fresh_reports_and_always_me():
    entries = {
        "rt-a": _entry(1),
        "rt-b": _entry(14.9),
        "rt-c": _entry(15.1),  # stale: gone, or its reporter is stuck
        "rt-d": _entry(-30),  # its clock runs ahead: still fresh
        "rt-e": {"rmse": 1.0},  # no reportTime
        "rt-f": {"reportTime": "not a time"},
        "rt-g": None,  # being removed
    }
    live = partition.live_members(entries, me="rt-me", now=NOW, max_age=15.0)
    assert live == {"rt-a", "rt-b", "rt-d", "rt-me"}
    assert partition.live_members(None, me="rt-me", now=NOW, max_age=15.0) == {"rt-me"}


def test_live_members_read_what_the_runtime_writes():
    entry = reporting.DriftReport(rmse=0.2, samples=5).to_entry(NOW - datetime.timedelta(seconds=2))
    live = partition.live_members({"rt-a": entry.to_wire()}, me="rt-b", now=NOW, max_age=3.0)
    assert live == {"rt-a", "rt-b"}


ARGV = [
    "--topics",
    "p/+/t",
    "--features",
    "temp",
    "--target",
    "temp",
    "--drift-threshold",
    "1",
    "--model-name",
    "m",
]


def _load(argv: list[str], env: dict[str, str]) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(argv), env)


def test_partition_mode_follows_the_settings():
    standalone = _load(ARGV, {})
    assert standalone.partition_mode == "all"
    reporting_ = _load([*ARGV, "--edgemodel", "ns/em"], {"POD_NAME": "em-inference-5f-x2kq"})
    assert reporting_.partition_mode == "dynamic"
    assert reporting_.member_ttl == 15.0  # 3 x the default report interval of 5 s
    static = _load([*ARGV, "--edgemodel", "ns/em", "--partition-count", "3"], {"POD_NAME": "em-inference-2"})
    assert static.partition_mode == "static"
    assert (static.partition.count, static.partition.index) == (3, 2)


def test_moved_devices_are_forgotten():
    spec = features.FeatureSpec(features=("v",), target="v", horizon=1, lags=1)
    inf = inference.Inference(spec)
    inf.plan([payloads.Reading(d, 1.0, {"v": 1.0}) for d in DEVICES[:100]], predicting=False)
    mine = partition.Rendezvous(MEMBERS[0], MEMBERS)
    dropped = inf.forget(mine.owns)
    assert inf.devices == sum(mine.owns(d) for d in DEVICES[:100])
    assert dropped == 100 - inf.devices


def test_partition_metrics_exist():
    m = metrics_.Metrics(CollectorRegistry())
    m.partition_mode.labels("dynamic").set(1)
    m.partition_members.set(3)
    m.owned_devices.set(10)
    assert m.registry.get_sample_value("edgemodel_partition_members") == 3
    assert m.registry.get_sample_value("edgemodel_partition_mode", {"mode": "dynamic"}) == 1
