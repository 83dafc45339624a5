"""JSON log lines, and a rate limiter so a flood of bad payloads cannot flood the log.

Configures the standard ``logging`` module; no other I/O.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["JsonFormatter", "RateLimiter", "setup"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: str = "INFO") -> None:
    """Send JSON lines to stderr from the root logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimiter:
    """Allow at most ``burst`` events per ``per`` seconds for each key; count the rest.

    >>> now = [0.0]
    >>> rl = RateLimiter(burst=2, per=10.0, clock=lambda: now[0])
    >>> [rl.allow("x") for _ in range(3)], rl.suppressed("x")
    ([True, True, False], 1)
    >>> now[0] = 11.0
    >>> rl.allow("x"), rl.suppressed("x")
    (True, 0)
    """

    def __init__(
        self, *, burst: int = 5, per: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.per = per
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            start, used, dropped = self._windows.get(key, (now, 0, 0))
            if now - start >= self.per:
                start, used, dropped = now, 0, 0
            if used < self.burst:
                self._windows[key] = (start, used + 1, dropped)
                return True
            self._windows[key] = (start, used, dropped + 1)
            return False

    def suppressed(self, key: str) -> int:
        """Events refused for ``key`` in its current period."""
        now = self._clock()
        with self._lock:
            start, _, dropped = self._windows.get(key, (now, 0, 0))
            return 0 if now - start >= self.per else dropped
