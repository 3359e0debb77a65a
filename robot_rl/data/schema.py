"""What a step looks like: the per-step keys, their shapes and dtypes, and the checks on them.

A schema maps key -> (shape, dtype) for the observation keys (robot_rl.spec layout) and
"action". The store and the replay buffers add the bookkeeping keys below to every step.
"""
from __future__ import annotations

import numpy as np

from robot_rl.spec import BOOKKEEPING  # noqa: F401  the step table lives with the layout

SOURCES = ("demo", "policy", "intervention", "eval")


class SchemaError(ValueError):
    """A step, observation or store does not match the expected schema."""


def normalize_schema(schema: dict) -> dict:
    """{key: (shape, dtype)} with tuple-of-int shapes and numpy dtype strings."""
    out = {}
    for key, spec in schema.items():
        try:
            shape, dtype = spec
            out[key] = (tuple(int(s) for s in shape), np.dtype(dtype).str)
        except (TypeError, ValueError) as e:
            raise SchemaError(f"schema entry {key!r} must be (shape, dtype), got {spec!r}") from e
        if key in BOOKKEEPING:
            raise SchemaError(f"schema key {key!r} is a bookkeeping key added automatically")
    if "action" not in out:
        raise SchemaError("schema lacks key 'action' (expected (shape, dtype) of the action vector)")
    return out


def schema_from_spaces(observation_space, action_space) -> dict:
    """Schema for a gymnasium Dict observation space and a Box action space (stored float32)."""
    schema = {k: (tuple(s.shape), np.dtype(s.dtype).str) for k, s in observation_space.spaces.items()}
    schema["action"] = (tuple(action_space.shape), np.dtype(np.float32).str)
    return schema


def obs_keys_of(schema: dict) -> tuple:
    return tuple(k for k in schema if k != "action")


def is_image(shape: tuple, dtype) -> bool:
    return len(shape) == 3 and np.dtype(dtype) == np.uint8


def check_value(what: str, key: str, value, shape: tuple, dtype) -> np.ndarray:
    """`value` as `dtype`, or SchemaError naming the key and what was expected.

    Accepts same-kind casts (float64 -> float32); bools must be bools and integers integers."""
    v = np.asarray(value)
    target = np.dtype(dtype)
    if tuple(v.shape) != tuple(shape):
        raise SchemaError(f"{what} {key!r} has shape {tuple(v.shape)}, expected {tuple(shape)} ({target})")
    if target == np.bool_:
        ok = v.dtype == np.bool_
    elif target.kind in "iu":
        ok = v.dtype.kind in "iu" and np.can_cast(v.dtype, target, casting="same_kind")
    else:
        ok = np.can_cast(v.dtype, target, casting="same_kind")
    if not ok:
        raise SchemaError(f"{what} {key!r} has dtype {v.dtype}, expected {target} (shape {tuple(shape)})")
    return v.astype(target, copy=False)


def check_fields(what: str, values: dict, fields: dict, allow_extra: bool = False) -> dict:
    """Check `values` against fields {key: (shape, dtype)}; return the converted values."""
    if not allow_extra:
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise SchemaError(f"{what} has unexpected key(s) {unknown}; expected keys {sorted(fields)}")
    out = {}
    for key, (shape, dtype) in fields.items():
        if key not in values:
            raise SchemaError(f"{what} lacks key {key!r} (expected shape {tuple(shape)}, dtype {np.dtype(dtype)})")
        out[key] = check_value(what, key, values[key], shape, dtype)
    return out
