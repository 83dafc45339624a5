"""Replicas of a Deployment share devices by rendezvous hashing over the replicas in the EdgeModel's status.

Two in-process runtimes with Deployment-style Pod names report to one real EdgeModel,
as a least-privilege ServiceAccount, and read the same topics on the real Mosquitto.
"""

from __future__ import annotations

import dataclasses
import json

import kubernetes
import pytest

from edgemodel import api
from edgemodel_dev import testing
from edgemodel_runtime import app
from tests.integration.test_runtime_report import _edgemodel, _runtime_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.mqtt, pytest.mark.mlflow]

PODS = ("line1-inference-6b7c9d5f4-x2kqp", "line1-inference-6b7c9d5f4-m8zrt")
DEVICES = 10
LAGS = 3


def _payloads(first: int, count: int) -> list[dict]:
    """Readings ``first`` .. ``first + count - 1`` of every device, interleaved in time order."""
    stream = testing.readings(DEVICES, first + count, seed=4)
    return stream[first * DEVICES :]


def test_two_replicas_split_devices_without_duplicates(
    cluster, namespace, mosquitto_broker, mlflow_server, unique_name
):
    name = unique_name
    admin = kubernetes.client.CustomObjectsApi(cluster.api_client())
    admin.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, _edgemodel(name))
    kubeconfig = _runtime_kubeconfig(cluster, namespace)
    version = testing.publish_model(mlflow_server.uri, name)

    def runtime(pod: str) -> app.App:
        settings = testing.for_broker(
            mosquitto_broker,
            mlflow_server.uri,
            name,
            edgemodel=f"{namespace}/{name}",
            client_id=f"{name}-{pod}",
            report_interval_seconds=1.0,
            membership_refresh_seconds=0.5,
            member_ttl_seconds=60.0,  # steady state: a slow report must not look like a gone replica
        )
        settings = dataclasses.replace(settings, pod_name=pod, pod_namespace=namespace)
        return app.App(settings, api_client=cluster.api_client(kubeconfig))

    def entries() -> dict:
        obj = admin.get_namespaced_custom_object_status(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        return (obj.get("status") or {}).get("replicaDrift") or {}

    collector = testing.collector_for(mosquitto_broker, name)
    publisher = testing.publisher_for(mosquitto_broker, name)
    first, second = runtime(PODS[0]), runtime(PODS[1])
    started: list[app.App] = []
    try:
        for rt in (first, second):
            started.append(rt.start())
            assert rt.wait_connected(30)
            testing.wait_for(lambda rt=rt: rt.holder.state.version == version, timeout=60, what="model load")
        testing.wait_for(
            lambda: first.ownership.members == 2 and second.ownership.members == 2,
            timeout=60,
            what="both replicas to see each other",
        )
        devices = [f"dev-{d}" for d in range(DEVICES)]
        owners = {d: [rt.settings.pod_name for rt in started if rt.ownership.owns(d)] for d in devices}
        assert all(len(o) == 1 for o in owners.values()), owners  # each device has exactly one owner
        share = {pod: sum(o == [pod] for o in owners.values()) for pod in PODS}
        assert all(n >= 1 for n in share.values()), share  # both replicas work

        per_device = 60
        for p in _payloads(0, per_device):
            publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p))
        expected = {(d, 1_700_000_000.0 + t) for d in devices for t in range(LAGS, per_device)}

        def published() -> float:
            return sum(testing.sample(rt.metrics.registry, "edgemodel_predictions_total") for rt in started)

        testing.wait_for(lambda: published() >= len(expected), timeout=120, what="every prediction")
        testing.wait_for(
            lambda: {(m["device"], m["ts"]) for m in collector.snapshot()} >= expected,
            timeout=60,
            what="predictions at the collector",
        )
        for rt in started:
            messages = testing.sample(rt.metrics.registry, "edgemodel_messages_total")
            assert messages == DEVICES * per_device  # every replica receives all traffic ...
            processed = testing.sample(rt.metrics.registry, "edgemodel_readings_total")
            other = testing.sample(rt.metrics.registry, "edgemodel_readings_other_partition_total")
            assert processed == share[rt.settings.pod_name] * per_device  # ... and keeps its devices
            assert processed + other == messages
            assert testing.sample(rt.metrics.registry, "edgemodel_partition_members") == 2
            assert testing.sample(rt.metrics.registry, "edgemodel_partition_mode", {"mode": "dynamic"}) == 1
        assert published() == len(expected)  # exactly once
        keys = [(m["device"], m["ts"]) for m in collector.snapshot()]
        assert len(keys) == len(set(keys)) == len(expected)
        assert {k[0] for k in keys} == set(devices)  # the union covers every device
        assert set(entries()) == set(PODS)

        # scale in: the leaving replica removes its entry; the other takes over its devices
        second.stop()
        started.remove(second)
        testing.wait_for(lambda: PODS[1] not in entries(), timeout=30, what="the entry to be removed")
        testing.wait_for(lambda: first.ownership.members == 1, timeout=60, what="the survivor to notice")
        before = len(collector.snapshot())
        for p in _payloads(per_device, 20):
            publisher.publish(f"{name}/sensors/{p['device']}", json.dumps(p))
        later = 1_700_000_000.0 + per_device + LAGS  # moved devices rebuild LAGS readings of history first
        testing.wait_for(
            lambda: {m["device"] for m in collector.snapshot()[before:] if m["ts"] >= later} == set(devices),
            timeout=120,
            what="the survivor to predict every device",
        )
        assert testing.sample(first.metrics.registry, "edgemodel_membership_changes_total") >= 2
    finally:
        publisher.close()
        collector.close()
        for rt in started:
            rt.stop()
