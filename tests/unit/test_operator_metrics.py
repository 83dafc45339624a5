"""The operator's per-EdgeModel metrics, read from a fresh registry as Prometheus would scrape them."""

from __future__ import annotations

import prometheus_client as prom

from edgemodel import api
from edgemodel_operator.metrics import OperatorMetrics


def _serving(name: str, version: str) -> api.EdgeModelStatus:
    return api.EdgeModelStatus.model_validate({"model": {"name": name, "version": version}})


def _info(reg: prom.CollectorRegistry, name: str, version: str, edgemodel: str = "em") -> float | None:
    labels = {"namespace": "ns", "edgemodel": edgemodel, "model": name, "version": version}
    return reg.get_sample_value("edgemodel_model_info", labels)


def _series(reg: prom.CollectorRegistry) -> list[dict[str, str]]:
    return [s.labels for family in reg.collect() for s in family.samples if s.name == "edgemodel_model_info"]


def test_model_info_shows_only_the_serving_version_after_a_promotion() -> None:
    reg = prom.CollectorRegistry()
    m = OperatorMetrics(reg)
    m.observe_status("ns", "em", _serving("water", "1"))
    m.observe_status("ns", "other", _serving("water", "7"))
    assert _info(reg, "water", "1") == 1

    m.observe_status("ns", "em", _serving("water", "2"))

    assert _info(reg, "water", "2") == 1
    assert _info(reg, "water", "1") is None  # the old version's series is gone, not left at 1
    assert _info(reg, "water", "7", edgemodel="other") == 1
    assert len(_series(reg)) == 2


def test_model_info_of_a_deleted_edgemodel_is_dropped() -> None:
    reg = prom.CollectorRegistry()
    m = OperatorMetrics(reg)
    m.observe_status("ns", "em", _serving("water", "1"))
    m.observe_status("ns", "em", api.EdgeModelStatus())  # no model serving (yet, or any more)
    assert _series(reg) == []

    m.observe_status("ns", "em", _serving("water", "1"))
    m.forget("ns", "em")
    assert _info(reg, "water", "1") is None and _series(reg) == []
