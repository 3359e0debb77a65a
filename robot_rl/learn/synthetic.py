"""Random replay batches and observations in the exact replay format, for tests and benches."""
from __future__ import annotations

import numpy as np

from robot_rl.spec import ObsSpec

STATE_SPEC = ObsSpec({"proprio": (8,), "object": (7,)}, {"proprio": "<f4", "object": "<f4"})


def camera_spec(cameras=("front", "wrist"), size: int = 128) -> ObsSpec:
    """Proprio plus uint8 RGB cameras, as the twin and the robot publish them."""
    shapes = {"proprio": (8,), **{c: (size, size, 3) for c in cameras}}
    return ObsSpec(shapes, {k: ("|u1" if len(s) == 3 else "<f4") for k, s in shapes.items()})


def random_obs(spec: ObsSpec, batch: int, rng: np.random.Generator) -> dict:
    out = {}
    for k, shape in spec.shapes.items():
        if len(shape) == 3:
            out[k] = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
        else:
            out[k] = rng.normal(0.0, 0.5, (batch, *shape)).astype(np.float32)
    return out


def random_batch(spec: ObsSpec, batch: int, chunk_len: int, action_dim: int, seed: int = 0,
                 gamma: float = 0.99, demo_fraction: float = 0.5) -> dict:
    """A replay batch: random obs/actions, some chunks padded past an episode end."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(1, chunk_len + 1, batch)  # real actions in each chunk
    mask = (np.arange(chunk_len)[None] < steps[:, None]).astype(np.float32)
    actions = rng.uniform(-1, 1, (batch, chunk_len, action_dim)).astype(np.float32) * mask[..., None]
    terminated = (steps < chunk_len) | (rng.random(batch) < 0.05)
    return {
        "obs": random_obs(spec, batch, rng),
        "actions": actions,
        "mask": mask,
        "reward": rng.random(batch).astype(np.float32),
        "discount": np.where(terminated, 0.0, gamma**steps).astype(np.float32),
        "next_obs": random_obs(spec, batch, rng),
        "is_demo": (rng.random(batch) < demo_fraction).astype(np.float32),
    }
