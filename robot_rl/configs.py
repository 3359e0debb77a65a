"""The one config loader: dataclasses from YAML dicts (or ROS parameters, nodes/ros.settings).

Unknown keys are an error that names the valid ones; a nested dataclass field is read from a
nested dict (through the class's own `from_dict` when it has one, for its checks); YAML's ints
become floats and its lists tuples where the field's default says so.
"""
from __future__ import annotations

import dataclasses
import typing


def from_mapping(cls, d: dict | None, section: str):
    d = dict(d or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown {section} keys {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        t = hints.get(name)
        if dataclasses.is_dataclass(t) and isinstance(value, dict):
            d[name] = t.from_dict(value) if hasattr(t, "from_dict") else from_mapping(t, value, f"{section}.{name}")
            continue
        default = fields[name].default
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            d[name] = float(value)
        elif isinstance(default, tuple) and isinstance(value, list):
            d[name] = tuple(value)
    return cls(**d)


def nested_fields(cls) -> dict:
    """name -> dataclass type, for the fields of `cls` that are dataclasses themselves."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints.get(f.name))}
