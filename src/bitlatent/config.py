"""One way to declare a config group and parse it strictly: ``ConfigGroup``.

A config group is a dataclass that subclasses ``ConfigGroup``, one documented field per setting::

    @dataclass
    class ExportConfig(ConfigGroup):
        GROUP = "export"          # its name in messages (the YAML key); default: the class name
        opset: int = 18
        \"\"\"ONNX opset of both graphs.\"\"\"

    ExportConfig.from_dict({"opset": 18})   # from YAML / JSON
    ExportConfig().to_dict()                # back to plain JSON-able values

``from_dict`` is strict: an unknown key is a ``ValueError`` that names the group and lists the
known keys, never silently ignored. Missing keys take their defaults. A list given for a field
annotated as a tuple becomes a tuple (YAML and JSON have no tuples; also when the dataclass is
built directly). A field whose type is itself a ``ConfigGroup`` is parsed from its mapping, with
the nested name in messages (``pretraining.train``).

``RETIRED`` maps a key that was removed from the group to the value the code now always uses:
files written before the removal (a model's config JSON) still parse when they hold exactly that
value, and any other value is refused with a message saying what remains; ``from_saved`` adds the
command that rebuilds the model file.

Torch-free: every layer (``core``, ``data``, ``text``, ``export``, the pipelines) declares its
groups with it.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

__all__ = ["ConfigGroup"]

C = TypeVar("C", bound="ConfigGroup")


class ConfigGroup:
    """Base of every typed config group (subclasses are dataclasses)."""

    GROUP: ClassVar[str] = ""
    """Name of the group in error messages (the YAML key, e.g. ``data``); empty: the class name."""
    RETIRED: ClassVar[dict[str, Any]] = {}
    """Removed key -> the value that equals what the code now always does (accepted, ignored)."""

    def __post_init__(self) -> None:
        for name, kind in _field_kinds(type(self)).items():
            value = getattr(self, name)
            if kind == "tuple" and isinstance(value, list):
                object.__setattr__(self, name, tuple(value))  # also for frozen dataclasses

    @classmethod
    def group_name(cls) -> str:
        return cls.GROUP or cls.__name__

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, group: str | None = None) -> C:
        """Build from a mapping (``None``: all defaults); unknown keys are an error, not ignored."""
        group = group or cls.group_name()
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{group} must be a mapping of parameters, got {type(data).__name__}")
        kinds = _field_kinds(cls)
        unknown = sorted(set(data) - set(kinds) - set(cls.RETIRED))
        if unknown:
            raise ValueError(f"unknown {group} parameter(s) {unknown}; known: {sorted(kinds)}")
        for key in sorted(set(data) & set(cls.RETIRED)):
            if data[key] != cls.RETIRED[key]:
                raise ValueError(f"{group}.{key} was removed: only {cls.RETIRED[key]!r} remains, got {data[key]!r}")
        values = {}
        for name, kind in kinds.items():
            if name not in data:
                continue
            value = data[name]
            if isinstance(kind, type) and isinstance(value, Mapping):
                value = kind.from_dict(value, f"{group}.{name}")
            values[name] = value
        return cls(**values)

    @classmethod
    def from_saved(cls: type[C], data: Mapping[str, Any], source: Any, command: str) -> C:
        """``from_dict`` for the config of a saved model at ``source``: a config this code can no
        longer build (a retired value, an unknown key) is refused with the command that rebuilds it."""
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ValueError(f"{source} holds a model this bitlatent cannot build ({error}): "
                             f"make it again with `{command}`") from error

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values (tuples as lists, nested groups as dicts)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigGroup):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=None)
def _field_kinds(cls: type) -> dict[str, Any]:
    """Field name -> "tuple" (annotated as a tuple), a nested ``ConfigGroup`` class, or None."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass to be a ConfigGroup")
    hints = typing.get_type_hints(cls)
    kinds: dict[str, Any] = {}
    for f in fields(cls):
        hint = hints.get(f.name)
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
        kind = None
        for option in options:
            if option is tuple or typing.get_origin(option) is tuple:
                kind = "tuple"
            elif isinstance(option, type) and issubclass(option, ConfigGroup):
                kind = option
        kinds[f.name] = kind
    return kinds


_UnionType = type(int | None)
