"""The serving model and its hot reload from the MLflow alias.

:class:`ModelHolder` holds the current :class:`edgemodel.modelmeta.LoadedModel`; readers
take one reference per batch, so a swap lands between batches and a batch is never
predicted by two models. :class:`ModelPoller` runs in its own thread: it resolves the
alias every ``model_poll_seconds`` and, on a new version, downloads and checks it there,
off the message path. A version that fails to load leaves the last good model serving
and is recorded as ``error``.

I/O: MLflow's REST API (:mod:`edgemodel_runtime.mlflowapi`), in the poller thread only.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from edgemodel import features, modelmeta, modelstore

__all__ = ["ModelHolder", "ModelPoller", "ModelState", "Registry", "check_compatible"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelState:
    """What the holder knows: the serving model, and the last load failure, if any."""

    model: modelmeta.LoadedModel | None = None
    error: str | None = None
    failed_version: str | None = None

    @property
    def version(self) -> str | None:
        return None if self.model is None else self.model.version


def check_compatible(meta: modelmeta.ModelMeta, spec: features.FeatureSpec) -> None:
    """Refuse a model built for other inputs than this runtime builds."""
    if tuple(meta.columns) != spec.columns:
        raise modelstore.ModelLoadError(
            f"model expects columns {list(meta.columns)}, but the runtime builds {list(spec.columns)}"
        )
    if meta.horizon != spec.horizon or meta.target != spec.target:
        raise modelstore.ModelLoadError(
            f"model predicts {meta.target!r} {meta.horizon} ahead, but the runtime is configured "
            f"for {spec.target!r} {spec.horizon} ahead"
        )


class Registry(Protocol):
    """Where versions are found: :class:`edgemodel_runtime.mlflowapi.Client`."""

    def resolve_alias(self, name: str, alias: str) -> str | None: ...

    def load_version(self, name: str, version: str) -> modelmeta.LoadedModel: ...


class ModelHolder:
    """The current model state; swapping it is one reference assignment under a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = ModelState()

    @property
    def state(self) -> ModelState:
        return self._state

    def swap(self, model: modelmeta.LoadedModel) -> None:
        with self._lock:
            self._state = ModelState(model=model)

    def fail(self, version: str, error: str) -> None:
        with self._lock:
            self._state = dataclasses.replace(self._state, error=error, failed_version=version)

    def clear_error(self) -> None:
        with self._lock:
            if self._state.error is not None:
                self._state = ModelState(model=self._state.model)


class ModelPoller:
    """Follow ``alias`` of ``name`` into ``holder``, in a daemon thread."""

    def __init__(
        self,
        holder: ModelHolder,
        client: Registry,
        *,
        name: str,
        alias: str,
        spec: features.FeatureSpec,
        interval: float,
        on_change: Callable[[ModelState], None] = lambda state: None,
        on_load: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.holder = holder
        self.client = client
        self.name = name
        self.alias = alias
        self.spec = spec
        self.interval = interval
        self.on_change = on_change
        self.on_load = on_load
        """Called with ``loaded``, ``refused`` or ``failed`` after each load attempt."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
        self._last_logged_error: str | None = None
        self.resolved = threading.Event()
        """Set once the alias was resolved and the version found there (if any) loaded or refused."""

    def start(self) -> ModelPoller:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def poll_once(self) -> None:
        """Resolve the alias and load a new version if it moved; never raises."""
        state = self.holder.state
        try:
            version = self.client.resolve_alias(self.name, self.alias)
        except Exception as exc:  # noqa: BLE001 - MLflow unreachable: keep serving, try again
            self._log_error(f"could not resolve {self.name}@{self.alias}: {exc}", level=logging.WARNING)
            return
        if version is None or version == state.version:
            self.resolved.set()
            if version is not None and state.error is not None:
                self.holder.clear_error()  # the alias went back to the serving version
                self.on_change(self.holder.state)
            return
        if version == state.failed_version:
            self.resolved.set()
            return  # versions are immutable: a refused one stays refused
        try:
            loaded = self.client.load_version(self.name, version)
            check_compatible(loaded.meta, self.spec)
        except modelstore.ModelLoadError as exc:
            self.on_load("refused")
            self._refuse(version, str(exc))
            self.resolved.set()
            return
        except Exception as exc:  # noqa: BLE001 - transient: MLflow down; retried next poll
            self.on_load("failed")
            self._log_error(f"could not load {self.name} version {version}: {exc}", level=logging.WARNING)
            return
        self.on_load("loaded")
        self.holder.swap(loaded)
        self.resolved.set()
        self._last_logged_error = None
        log.info(
            "Loaded model %s version %s from its %s file",
            self.name,
            version,
            loaded.format,
            extra={"model": self.name, "version": version, "previous": state.version},
        )
        self.on_change(self.holder.state)

    def _refuse(self, version: str, error: str) -> None:
        already = self.holder.state.failed_version == version and self.holder.state.error == error
        self.holder.fail(version, error)
        self._log_error(
            f"Refused model {self.name} version {version}; version "
            f"{self.holder.state.version} keeps serving: {error}",
            level=logging.ERROR,
        )
        if not already:
            self.on_change(self.holder.state)

    def _log_error(self, message: str, *, level: int) -> None:
        if message != self._last_logged_error:
            log.log(level, message, extra={"model": self.name})
            self._last_logged_error = message
