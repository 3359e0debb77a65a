"""Dataclass configs from YAML dicts: unknown keys are an error that names the valid ones."""
from __future__ import annotations

import dataclasses


def from_mapping(cls, d: dict | None, section: str):
    d = dict(d or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {section} keys {unknown}; valid keys: {sorted(known)}")
    return cls(**d)
