"""Settings from layered sources, on pydantic-settings: flags > environment > file > defaults.

:func:`load` validates a pydantic model from, highest precedence first:

1. flags (a mapping by field name, e.g. ``vars(argparse.Namespace)``; ``None`` = not given);
2. ``<PREFIX><FIELD>`` environment variables (e.g. ``EDGEMODEL_RESYNC_SECONDS``), read from
   the mapping it is given, never from ``os.environ`` itself; an empty variable counts as unset;
3. a JSON or YAML file holding an object whose keys are the field names in snake_case or
   camelCase;
4. the model's defaults.

Lists are comma-separated in flags and in the environment. The model states the ranges
(``Field(gt=0)``...); a bad value raises :class:`SettingsError` naming the setting, its
source's spelling (``EDGEMODEL_RESYNC_SECONDS``) and the rule it breaks.

Reads the file it is given; nothing else.
"""

from __future__ import annotations

import pathlib
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic
import pydantic_settings
import yaml
from pydantic.alias_generators import to_snake
from pydantic_settings.sources import EnvSettingsSource, PydanticBaseSettingsSource

__all__ = ["SettingsError", "load"]

M = TypeVar("M", bound=pydantic.BaseModel)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _is_list(field: pydantic.fields.FieldInfo) -> bool:
    annotation = field.annotation
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, type(int | None))
        else ()
    )
    return any(typing.get_origin(a) in (list, tuple) for a in (annotation, *options))


class _Environment(EnvSettingsSource):
    """The environment source of pydantic-settings, reading a given mapping."""

    def __init__(self, settings_cls: type[pydantic_settings.BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls, env_ignore_empty=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._given.items() if v != ""}


class _File(PydanticBaseSettingsSource):
    """A JSON or YAML object; keys in snake_case or camelCase."""

    def __init__(self, settings_cls: type[pydantic_settings.BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self._values: dict[str, Any] = {}
        if path:
            try:
                raw = yaml.safe_load(pathlib.Path(path).read_text())  # JSON is YAML too
            except OSError as exc:
                raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
            except yaml.YAMLError as exc:
                raise SettingsError(f"settings file {path} is neither JSON nor YAML: {exc}") from exc
            if not isinstance(raw, dict):
                raise SettingsError(f"settings file {path} must hold an object")
            self._values = {to_snake(str(k)): v for k, v in raw.items()}

    def get_field_value(self, field: pydantic.fields.FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


def _layers(names: list[str], prefix: str, env: Mapping[str, str], path: str | None) -> type[Any]:
    """A pydantic-settings class with one untyped field per setting and the sources in precedence order."""

    class Layers(pydantic_settings.BaseSettings):
        model_config = pydantic_settings.SettingsConfigDict(env_prefix=prefix, extra="ignore")

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[pydantic_settings.BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, _Environment(settings_cls, env), _File(settings_cls, path))

    fields: dict[str, Any] = {name: (Any, None) for name in names}
    return pydantic.create_model("Layers", __base__=Layers, **fields)


def merged(
    names: list[str],
    *,
    list_fields: frozenset[str] = frozenset(),
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: str | pathlib.Path | None = None,
    prefix: str = "EDGEMODEL_",
) -> dict[str, Any]:
    """The raw values of ``names`` from the layers, highest precedence first; unset ones left out."""
    given = {k: v for k, v in (flags or {}).items() if k in names and v is not None}
    layers = _layers(names, prefix, env or {}, str(file) if file else None)(**given)
    out = {k: v for k, v in layers.model_dump().items() if v is not None}
    for name in list_fields & out.keys():
        if isinstance(out[name], str):
            out[name] = [part.strip() for part in out[name].split(",") if part.strip()]
    return out


def describe(exc: pydantic.ValidationError, prefix: str = "EDGEMODEL_") -> str:
    """One line per bad setting: its name, its environment variable, its flag and the rule it breaks."""
    lines = []
    for err in exc.errors():
        name = to_snake(str(err["loc"][0])) if err["loc"] else "settings"
        where = f"{prefix}{name.upper()}, --{name.replace('_', '-')}"
        value = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"setting {name} ({where}): {err['msg']}{value}")
    return "\n".join(lines)


def load(
    model: type[M],
    *,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    file: str | pathlib.Path | None = None,
    prefix: str = "EDGEMODEL_",
    extra: Mapping[str, Any] | None = None,
) -> M:
    """``model`` validated from the layers; :class:`SettingsError` naming each bad setting.

    ``extra`` holds values to use where no layer sets the field (derived defaults).
    """
    names = list(model.model_fields)
    lists = frozenset(n for n, f in model.model_fields.items() if _is_list(f))
    values = {
        **(extra or {}),
        **merged(names, list_fields=lists, flags=flags, env=env, file=file, prefix=prefix),
    }
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise SettingsError(describe(exc, prefix)) from exc
