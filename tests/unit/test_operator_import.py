"""Importing the kopf wiring reads no environment and builds no state: startup does, into kopf's memo."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from edgemodel_operator import handlers


class RecordingEnviron(dict[str, str]):
    """``os.environ`` that records every key read (and every iteration over it)."""

    def __init__(self, data: dict[str, str]) -> None:
        super().__init__(data)
        self.reads: list[str] = []

    def __getitem__(self, key: str) -> str:
        self.reads.append(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.reads.append(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.reads.append(str(key))
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self.reads.append("<iterated>")
        return super().__iter__()

    def items(self) -> Any:
        self.reads.append("<items>")
        return super().items()


def test_importing_the_handlers_module_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = RecordingEnviron(dict(os.environ))
    monkeypatch.setattr(os, "environ", environ)
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        # A fresh copy of the module, as `kopf run -m edgemodel_operator.handlers` imports it
        # (its dependencies are imported already: only the module's own code runs here).
        spec = importlib.util.find_spec(handlers.__name__)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        kopf.set_default_registry(previous)
    assert environ.reads == []
    assert not any(isinstance(v, handlers.Operator) for v in vars(module).values())
    # It did register its handlers, on whichever registry is the default at import.
    assert list(registry._changing.get_all_handlers()) and list(registry._watching.get_all_handlers())
    assert not list(registry._spawning.get_all_handlers())  # no per-object timer: no kopf finalizer
