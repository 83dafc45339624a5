"""The runnable examples in the runtime's docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["payloads", "drift", "inference", "partition", "reporting", "window", "logs", "http", "pipeline"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"edgemodel_runtime.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
