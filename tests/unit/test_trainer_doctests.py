"""The examples in the trainer's pure modules' docstrings run and hold."""

from __future__ import annotations

import doctest
import types

import pytest

from edgemodel_operator import rollback
from edgemodel_trainer import promotion, train


@pytest.mark.parametrize("module", [train, promotion, rollback], ids=lambda m: m.__name__)
def test_docstring_examples(module: types.ModuleType) -> None:
    failures, tried = doctest.testmod(module, verbose=False)
    assert tried > 0
    assert failures == 0
