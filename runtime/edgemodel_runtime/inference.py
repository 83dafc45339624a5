"""The streaming core: micro-batches, per-device history, and predictions awaiting their outcome.

A batch is planned, predicted and completed in three steps, so that one ``predict`` call
serves a whole batch while every device's readings are still handled in order:

1. :meth:`Inference.plan` walks the readings in arrival order. Per device it refuses
   duplicates and readings older than the last one, builds the input row from the
   device's history (:class:`edgemodel.features.DeviceHistory`), opens a
   :class:`Pending` slot for the prediction ``horizon`` readings ahead, and pairs the
   reading's target with the slot opened ``horizon`` readings earlier.
2. The caller predicts the rows of the plan in one call.
3. :meth:`Inference.complete` fills the slots and returns the outcomes
   (prediction against true value) whose prediction now exists, including those made
   earlier in the same batch.

:class:`Predictor` makes the predictions of step 2: the model's own ``predict``, or, for
the trainer's ridge model, the same arithmetic without scikit-learn's input validation,
once it gave identical predictions on a real batch.

:class:`MicroBatcher` hands a consumer up to ``max_size`` items, waiting at most
``max_delay`` after the first one.

No network or file I/O here; :class:`MicroBatcher` synchronises threads.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from edgemodel import features
from edgemodel_runtime import payloads

__all__ = ["Inference", "MicroBatcher", "Outcome", "Pending", "Plan", "Predictor", "linear_predict"]

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class Pending:
    """A prediction made from one reading, for the reading ``horizon`` steps later."""

    device: str
    ts: float
    prediction: float | None = None
    version: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """A prediction whose true value has arrived."""

    device: str
    version: str
    prediction: float
    truth: float

    @property
    def error(self) -> float:
        return self.prediction - self.truth


@dataclasses.dataclass
class Plan:
    """What one batch needs predicted, and what its readings resolve."""

    accepted: list[payloads.Reading] = dataclasses.field(default_factory=list)
    rejected: list[tuple[payloads.Reading, str]] = dataclasses.field(default_factory=list)
    rows: list[list[float]] = dataclasses.field(default_factory=list)
    row_slots: list[Pending] = dataclasses.field(default_factory=list)
    row_readings: list[int] = dataclasses.field(default_factory=list)
    """For each row, the index in ``accepted`` of the reading it was built from."""
    resolutions: list[tuple[Pending, float]] = dataclasses.field(default_factory=list)

    def matrix(self, width: int) -> npt.NDArray[np.float64]:
        return np.asarray(self.rows, dtype=np.float64).reshape(len(self.rows), width)


class _Device:
    __slots__ = ("history", "last_ts", "last_values", "pending")

    def __init__(self, spec: features.FeatureSpec) -> None:
        self.history = features.DeviceHistory(spec)
        self.pending: collections.deque[Pending] = collections.deque()
        self.last_ts: float | None = None
        self.last_values: Mapping[str, float] | None = None


class Inference:
    """Per-device state of one replica's stream.

    >>> spec = features.FeatureSpec(features=("v",), target="v", horizon=1, lags=1)
    >>> inf = Inference(spec)
    >>> r = [payloads.Reading("d", float(t), {"v": float(t)}) for t in range(3)]
    >>> plan = inf.plan(r, predicting=True)
    >>> plan.rows
    [[1.0, 0.0], [2.0, 1.0]]
    >>> [(o.prediction, o.truth) for o in inf.complete(plan, np.array([5.0, 6.0]), "1")]
    [(5.0, 2.0)]
    """

    def __init__(self, spec: features.FeatureSpec, *, max_devices: int = 100_000) -> None:
        self.spec = spec
        self.max_devices = max_devices
        self._devices: collections.OrderedDict[str, _Device] = collections.OrderedDict()
        self.evicted = 0

    @property
    def devices(self) -> int:
        return len(self._devices)

    def _device(self, name: str) -> _Device:
        state = self._devices.get(name)
        if state is None:
            state = self._devices[name] = _Device(self.spec)
            if len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
                self.evicted += 1
        else:
            self._devices.move_to_end(name)
        return state

    def forget(self, keep: Callable[[str], bool]) -> int:
        """Drop the state of every device for which ``keep`` is false; return how many.

        Used when devices move to another replica: if one comes back later, its history
        starts over instead of resuming from stale lags and pairing old predictions.
        """
        gone = [name for name in self._devices if not keep(name)]
        for name in gone:
            del self._devices[name]
        return len(gone)

    def plan(self, readings: Sequence[payloads.Reading], *, predicting: bool) -> Plan:
        """Update device state with ``readings``, in order; rows are built if ``predicting``."""
        plan = Plan()
        horizon = self.spec.horizon
        target = self.spec.target
        for reading in readings:
            state = self._device(reading.device)
            if state.last_ts is not None:
                if reading.ts < state.last_ts:
                    plan.rejected.append((reading, "out_of_order"))
                    continue
                if reading.ts == state.last_ts and reading.values == state.last_values:
                    plan.rejected.append((reading, "duplicate"))
                    continue
            state.last_ts = reading.ts
            state.last_values = reading.values  # a Reading is not changed once parsed
            plan.accepted.append(reading)
            if len(state.pending) >= horizon:
                plan.resolutions.append((state.pending.popleft(), reading.values[target]))
            row = state.history.row_for(reading.values)
            slot = Pending(reading.device, reading.ts)
            state.pending.append(slot)
            if predicting and row is not None:
                plan.rows.append(row)
                plan.row_slots.append(slot)
                plan.row_readings.append(len(plan.accepted) - 1)
        return plan

    def complete(
        self, plan: Plan, predictions: npt.NDArray[np.float64] | None, version: str | None
    ) -> list[Outcome]:
        """Fill the plan's slots with ``predictions`` (None: none made); return outcomes."""
        if predictions is not None and version is not None:
            for slot, value in zip(plan.row_slots, predictions, strict=True):
                if np.isfinite(value):
                    slot.prediction = float(value)
                    slot.version = version
        outcomes = []
        for slot, truth in plan.resolutions:
            if slot.prediction is not None and slot.version is not None:
                outcomes.append(Outcome(slot.device, slot.version, slot.prediction, truth))
        return outcomes


Matrix = npt.NDArray[np.float64]


def linear_predict(model: object) -> Callable[[Matrix], Matrix] | None:
    """The arithmetic of a fitted ``StandardScaler`` + ``Ridge`` pipeline without its input checks; else None.

    scikit-learn validates every ``predict`` input (type, shape, finiteness, feature
    names) in each step: on the runtime's 20-row batches that is most of the call
    (``BENCHMARKS.md`` section 6). The runtime's rows need none of it: the payload parser
    refuses non-finite values, and the rows are float64 with the model's columns (checked
    here). The operations are scikit-learn's own, in its order (``(x - mean_) / scale_``,
    then ``@ coef_ + intercept_``), so the predictions are the same floats. Only these
    exact types qualify (the trainer's ``ridge``); anything else, and scikit-learn not
    imported at all, gets None. The module never imports scikit-learn itself.

    >>> linear_predict(object()) is None
    True
    """
    pipelines = sys.modules.get("sklearn.pipeline")
    preprocessing = sys.modules.get("sklearn.preprocessing")
    linear = sys.modules.get("sklearn.linear_model")
    if pipelines is None or preprocessing is None or linear is None:
        return None
    if type(model) is not pipelines.Pipeline:
        return None
    steps: Any = getattr(model, "steps", None)
    if not isinstance(steps, list) or len(steps) != 2:
        return None
    (_, scaler), (_, ridge) = steps
    if type(scaler) is not preprocessing.StandardScaler or type(ridge) is not linear.Ridge:
        return None
    coef = getattr(ridge, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.ndim != 1 or coef.dtype != np.float64:
        return None
    width = coef.shape[0]
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    for part in (mean, scale):
        if part is not None and (not isinstance(part, np.ndarray) or part.shape != (width,)):
            return None
    intercept = ridge.intercept_

    def predict(x: Matrix) -> Matrix:
        if x.ndim != 2 or x.shape[1] != width or x.dtype != np.float64:
            raise ValueError(f"expected float64 rows of {width} columns, got {x.dtype} {x.shape}")
        z = x - mean if mean is not None else x.copy()
        if scale is not None:
            z /= scale
        out: Matrix = z @ coef + intercept
        return out

    return predict


class Predictor:
    """``model.predict`` on the rows of a batch, through :func:`linear_predict` where it is the same.

    The cheaper path is used only after it gave exactly the model's own predictions on the
    first batch; if it ever did not, this model goes through ``predict`` from then on.
    Measured by ``python -m bench backtest`` (the bare pipeline, same run, with and
    without it; ``BENCHMARKS.md`` section 6).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._fast = linear_predict(model)
        self._checked = False

    @property
    def fast(self) -> bool:
        """Whether the cheaper path serves (so far)."""
        return self._fast is not None

    def __call__(self, x: Matrix) -> Matrix:
        fast = self._fast
        if fast is None:
            return np.asarray(self.model.predict(x), dtype=np.float64)
        out = fast(x)
        if not self._checked:
            reference = np.asarray(self.model.predict(x), dtype=np.float64)
            if reference.shape != out.shape or not np.array_equal(reference, out):
                self._fast = None
                return reference
            self._checked = True
        return out


class MicroBatcher(Generic[T]):
    """A bounded FIFO handing out batches: full ones at once, partial ones after a delay.

    ``put`` blocks while the queue is full, which pushes back on the producer; ``push``
    never blocks and says whether room is left, for a producer that pushes back another way
    (the MQTT connection holds its acknowledgements).

    >>> b: MicroBatcher[int] = MicroBatcher(max_size=2, max_delay=0.0)
    >>> for i in range(3):
    ...     _ = b.put(i)
    >>> b.next_batch(timeout=0.1), b.next_batch(timeout=0.1), b.next_batch(timeout=0.01)
    ([0, 1], [2], [])
    """

    def __init__(
        self,
        *,
        max_size: int,
        max_delay: float,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.max_delay = max_delay
        self.capacity = max(capacity, max_size)
        self._clock = clock
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Append ``item``; False if the queue stayed full for ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._items) < self.capacity, timeout):
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def push(self, item: T) -> bool:
        """Append ``item`` even beyond ``capacity``; whether the queue is still within it.

        >>> b: MicroBatcher[int] = MicroBatcher(max_size=1, max_delay=0.0, capacity=1)
        >>> b.push(1), b.push(2), len(b)
        (True, False, 2)
        """
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()
            return len(self._items) <= self.capacity

    def next_batch(self, timeout: float) -> list[T]:
        """Up to ``max_size`` items, oldest first; empty if none came within ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return []
            deadline = self._clock() + self.max_delay
            while len(self._items) < self.max_size:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(self.max_size, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            self._cond.notify_all()
            return batch
