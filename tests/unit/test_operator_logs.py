"""The operator's log: one valid JSON object per line, whatever the message holds."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from edgemodel_operator import main


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root, kopf and asyncio loggers back as they were (configure changes them)."""
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("", "kopf", "asyncio")
        for lg in [logging.getLogger(name or None)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name or None)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_records_with_quotes_newlines_and_extras_are_one_json_object_per_line(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    main.configure_logging("info")
    log = logging.getLogger("edgemodel_operator.test")
    message = 'Applied "inference" to it\'s\nsecond line \\ and a tab\t'
    log.info("Reconciled EdgeModel %s: %s", "ns/em", message, extra={"edgemodel": "ns/em", "count": 3})
    try:
        raise ValueError('bad "value"\nwith a newline')
    except ValueError:
        log.exception("Failed to reconcile %s", "ns/em")
    log.debug("Not shown at INFO")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) for e in entries)
    first, second = entries
    assert first["message"] == f"Reconciled EdgeModel ns/em: {message}"
    assert first["edgemodel"] == "ns/em" and first["count"] == 3
    assert first["severity"] == "info" and "timestamp" in first
    assert second["message"] == "Failed to reconcile ns/em" and second["severity"] == "error"
    assert 'ValueError: bad "value"\nwith a newline' in second["exc_info"]
