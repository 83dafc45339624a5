"""Two operator replicas share the EdgeModels by shard, and no EdgeModel is reconciled by both.

Two real ``edgemodel-operator`` processes run with ``shards: 2`` on the harness API server.
Each applies its children under a field manager of its own, so the API server itself
records which replica wrote each child (``metadata.managedFields``); each replica's log
names the EdgeModels whose children it created. With 40 EdgeModels, every one is reconciled
(``status.observedGeneration``), its children carry exactly one replica's field manager,
that replica is the one holding the EdgeModel's shard (a SHA-256 of its UID), and both
replicas did work. Then one replica is killed: the survivor takes its shard once the Lease
has expired (and ``shardTakeoverSeconds`` more, as it already holds a shard), and
reconciles a spec change of an EdgeModel of that shard. Last, a replacement replica starts:
it asks for a shard, the survivor hands one over, and the replacement reconciles a spec
change of an EdgeModel in it.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes
import pytest

from edgemodel import api
from edgemodel_dev.harness import operatorprocess, processes
from edgemodel_operator import shard
from tests.integration import edgemodels

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow]

COUNT = 40
SHARDS = 2
TAKEOVER_SECONDS = 30  # longer than the second replica takes to start after the first (the default)
SPEC = edgemodels.spec()
MANAGERS = {"a": "edgemodel-operator-a", "b": "edgemodel-operator-b", "c": "edgemodel-operator-c"}
SHARD_GAUGE = re.compile(r'^edgemodel_operator_shard_leader\{shard="(\d+)"\} 1\.0$', re.M)


def _held(op: operatorprocess.OperatorProcess) -> set[int]:
    return {int(i) for i in SHARD_GAUGE.findall(op.metrics_text())}


def _reconciles(op: operatorprocess.OperatorProcess) -> float:
    text = op.metrics_text()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("edgemodel_operator_reconciles_total{")
    )


def _edgemodels(api_client: Any, namespace: str) -> list[dict[str, Any]]:
    custom = kubernetes.client.CustomObjectsApi(api_client)
    items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL
    )["items"]
    return items


def _all_reconciled(api_client: Any, namespace: str, generation: int = 1) -> bool:
    items = _edgemodels(api_client, namespace)
    return len(items) == COUNT and all(
        (i.get("status") or {}).get("observedGeneration") == generation for i in items
    )


def _writers(api_client: Any, namespace: str) -> dict[str, set[str]]:
    """EdgeModel name -> the replicas (a, b, c) whose field manager is on any of its children."""
    core, apps = kubernetes.client.CoreV1Api(api_client), kubernetes.client.AppsV1Api(api_client)
    children = [
        *apps.list_namespaced_stateful_set(namespace).items,
        *core.list_namespaced_config_map(namespace).items,
        *core.list_namespaced_service(namespace).items,
    ]
    out: dict[str, set[str]] = {}
    for child in children:
        owner = (child.metadata.labels or {}).get("edgeml.dev/edgemodel")
        if owner is None:
            continue
        managers = {f.manager for f in child.metadata.managed_fields or []}
        out.setdefault(owner, set()).update(r for r, m in MANAGERS.items() if m in managers)
    return out


def _created_in_log(op: operatorprocess.OperatorProcess, namespace: str) -> set[str]:
    """EdgeModels whose children this replica created, from its own log lines."""
    pattern = re.compile(rf"Reconciled EdgeModel {re.escape(namespace)}/([a-z0-9-]+): created \[['a-zA-Z]")
    return set(pattern.findall(op.log_text()))


def _change_and_wait(api_client: Any, namespace: str, name: str, replica: str) -> None:
    """Change an EdgeModel's spec; ``replica`` reconciles it (its field manager is on a child)."""
    kubernetes.client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"spec": {"drift": {"threshold": 2.5}}}
    )
    processes.wait_until(
        lambda: edgemodels.status(api_client, namespace, name).observed_generation == 2,
        timeout=60,
        what=f"operator-{replica} to reconcile {name}'s spec change",
    )
    assert replica in _writers(api_client, namespace)[name]


def test_two_shards_split_the_edgemodels_and_a_survivor_takes_over(api_client, namespace, operators):
    env = {"EDGEMODEL_SHARDS": str(SHARDS), "EDGEMODEL_SHARD_TAKEOVER_SECONDS": str(TAKEOVER_SECONDS)}
    a = operators("operator-a", EDGEMODEL_FIELD_MANAGER=MANAGERS["a"], **env)
    processes.wait_until(lambda: len(_held(a)) == 1, timeout=30, what="operator-a to hold a shard")
    b = operators("operator-b", EDGEMODEL_FIELD_MANAGER=MANAGERS["b"], **env)
    processes.wait_until(lambda: len(_held(b)) == 1, timeout=30, what="operator-b to hold a shard")
    held = {"a": _held(a), "b": _held(b)}
    assert held["a"] | held["b"] == {0, 1} and not held["a"] & held["b"], held
    holder = {next(iter(v)): k for k, v in held.items()}  # shard -> replica

    for i in range(COUNT):
        edgemodels.create(api_client, namespace, f"em-{i:03d}", SPEC)
    processes.wait_until(
        lambda: _all_reconciled(api_client, namespace),
        timeout=240,
        interval=1,
        what="every EdgeModel reconciled",
    )
    uids = {i["metadata"]["name"]: i["metadata"]["uid"] for i in _edgemodels(api_client, namespace)}
    expected = {name: holder[shard.of(uid, SHARDS)] for name, uid in uids.items()}
    assert set(expected.values()) == {"a", "b"}, expected  # 40 UIDs fall in both shards

    # The API server's record: each EdgeModel's children were written by one replica, its shard's.
    writers = _writers(api_client, namespace)
    assert {name: ws for name, ws in writers.items()} == {name: {r} for name, r in expected.items()}
    # Each replica's own log: it created the children of exactly its shard's EdgeModels.
    created = {"a": _created_in_log(a, namespace), "b": _created_in_log(b, namespace)}
    assert not created["a"] & created["b"]
    for replica in ("a", "b"):
        assert created[replica] == {n for n, r in expected.items() if r == replica}
        assert _reconciles(a if replica == "a" else b) > 0

    # b crashes, without releasing its Lease: a takes b's shard once the Lease has expired.
    b.kill()
    processes.wait_until(
        lambda: _held(a) == {0, 1},
        timeout=6 + TAKEOVER_SECONDS + 60,
        interval=0.5,
        what="operator-a to take b's shard",
    )
    orphan = sorted(n for n, r in expected.items() if r == "b")[0]
    _change_and_wait(api_client, namespace, orphan, "a")

    # A replacement starts with no shard while a holds both: it asks, a hands one over.
    c = operators("operator-c", EDGEMODEL_FIELD_MANAGER=MANAGERS["c"], **env)
    processes.wait_until(
        lambda: len(_held(c)) == 1 and len(_held(a)) == 1,
        timeout=60,
        interval=0.5,
        what="operator-a to hand a shard over to operator-c",
    )
    (given,) = _held(c)
    assert _held(a) == {0, 1} - {given}
    moved = sorted(n for n, uid in uids.items() if shard.of(uid, SHARDS) == given and n != orphan)[0]
    _change_and_wait(api_client, namespace, moved, "c")
    assert "Handed leader Lease" in a.log_text()
