"""The examples in the docstrings of the backtest's pure modules, and of the trainer's gate, run and hold."""

from __future__ import annotations

import doctest
import types

import pytest

from edgemodel_backtest import figures, history, stream, table
from edgemodel_trainer import data, gate


@pytest.mark.parametrize("module", [history, stream, figures, table, gate, data], ids=lambda m: m.__name__)
def test_docstring_examples(module: types.ModuleType) -> None:
    failures, tried = doctest.testmod(module, verbose=False)
    assert tried > 0
    assert failures == 0
