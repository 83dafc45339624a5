"""When a pass may skip an apply (``observe.apply_reason``): pure, no I/O."""

from __future__ import annotations

import dataclasses

import pytest

from edgemodel_operator import observe

OWNER = {
    "apiVersion": "edgeml.dev/v1alpha1",
    "kind": "EdgeModel",
    "name": "em",
    "uid": "u-1",
    "controller": True,
}
LABELS = {"app.kubernetes.io/managed-by": "edgemodel-operator", "edgeml.dev/edgemodel": "em"}


def rendered(kind: str = "ConfigMap", **extra: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "em-x", "namespace": "ns", "labels": dict(LABELS), "ownerReferences": [OWNER]},
        **extra,
    }


def response(obj: dict, *, rv: str = "10", generation: int | None = None, status: dict | None = None) -> dict:
    meta = {**obj["metadata"], "resourceVersion": rv}
    if generation is not None:
        meta["generation"] = generation
    return {**obj, "metadata": meta, "status": status or {}}


CM = rendered(data={"k": "v"})
STS = rendered(
    "StatefulSet", spec={"template": {"spec": {"containers": [{"name": "runtime", "image": "a"}]}}}
)


def last_of(obj: dict, **kw: object) -> observe.Applied:
    return observe.applied(obj["kind"], observe.digest(obj), response(obj, **kw))  # type: ignore[arg-type]


def test_first_apply_and_changed_render_always_apply():
    assert observe.apply_reason(CM, None, None) == "first"
    changed = {**CM, "data": {"k": "w"}}
    assert observe.apply_reason(changed, last_of(CM), None) == "changed"
    # Even when the live child is exactly as the last apply left it.
    assert observe.apply_reason(changed, last_of(CM), observe.live("ConfigMap", response(CM))) == "changed"


def test_unchanged_render_with_no_event_since_the_apply_is_skipped():
    assert observe.apply_reason(CM, last_of(CM), None) is None


def test_unchanged_render_and_the_watch_shows_the_applied_version_is_skipped():
    assert observe.apply_reason(CM, last_of(CM), observe.live("ConfigMap", response(CM))) is None


def test_a_kind_without_generation_drifts_on_any_new_resource_version():
    edited = response({**CM, "data": {"k": "hand edit"}}, rv="11")
    assert observe.apply_reason(CM, last_of(CM), observe.live("ConfigMap", edited)) == "drifted"


def test_a_controllers_status_write_is_not_a_drift_but_a_spec_edit_is():
    last = last_of(STS, rv="10", generation=1)
    status_only = response(STS, rv="15", generation=1, status={"availableReplicas": 1})
    assert observe.apply_reason(STS, last, observe.live("StatefulSet", status_only)) is None
    hand_edit = response(STS, rv="16", generation=2)
    assert observe.apply_reason(STS, last, observe.live("StatefulSet", hand_edit)) == "drifted"


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["labels"].pop("edgeml.dev/edgemodel"),
        lambda m: m["labels"].update({"app.kubernetes.io/managed-by": "someone"}),
        lambda m: m.pop("ownerReferences"),
        lambda m: m.update(ownerReferences=[{**OWNER, "uid": "u-2"}]),
    ],
    ids=["label removed", "label changed", "owner removed", "other owner"],
)
def test_metadata_edits_on_a_generation_kind_are_drifts(edit):
    last = last_of(STS, generation=1)
    body = response(STS, rv="20", generation=1)
    body["metadata"] = {**body["metadata"], "labels": dict(body["metadata"]["labels"])}
    edit(body["metadata"])
    assert observe.apply_reason(STS, last, observe.live("StatefulSet", body)) == "drifted"


def test_an_added_label_of_someone_else_is_no_drift_for_a_generation_kind():
    body = response(STS, rv="20", generation=1)
    body["metadata"]["labels"] = {**LABELS, "team": "plant"}
    assert observe.apply_reason(STS, last_of(STS, generation=1), observe.live("StatefulSet", body)) is None


def test_a_deleted_child_is_applied_again():
    gone = observe.live("ConfigMap", response(CM), deleted=True)
    assert observe.apply_reason(CM, last_of(CM), gone) == "deleted"
    terminating = response(CM)
    terminating["metadata"]["deletionTimestamp"] = "2026-11-30T00:00:00Z"
    assert observe.apply_reason(CM, last_of(CM), observe.live("ConfigMap", terminating)) == "deleted"


def test_the_records_keep_the_workload_state_a_skipped_pass_reads():
    body = response(STS, generation=1, status={"availableReplicas": 1, "readyReplicas": 1})
    assert observe.applied("StatefulSet", observe.digest(STS), body).workload == observe.statefulset(body)
    seen = observe.live("StatefulSet", body)
    assert seen.workload is not None and seen.workload.available
    assert observe.live("ConfigMap", response(CM)).workload is None


def test_the_digest_is_stable_and_tells_renders_apart():
    assert observe.digest(CM) == observe.digest(dict(reversed(list(CM.items()))))
    assert observe.digest(CM) != observe.digest({**CM, "data": {"k": "v2"}})
    assert dataclasses.replace(last_of(CM)).digest == observe.digest(CM)
