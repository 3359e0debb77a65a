"""Replay batches and observations -> device tensors, with errors that name what was expected.

Batch format (produced by robot_rl.data.replay):
  obs / next_obs: {key: (B, ...)}, actions (B, H, A) float32, mask (B, H) float32 (1 = real
  action, 0 = padding past the episode end; padded actions are zeroed here), reward (B,) discounted chunk sum, discount (B,)
  gamma^h or 0 at termination, is_demo (B,) float32.
"""
from __future__ import annotations

import numpy as np
import torch

from robot_rl.spec import ObsSpec

BATCH_KEYS = ("obs", "actions", "mask", "reward", "discount", "next_obs", "is_demo")


def _tensor(x, device, dtype=None) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device, non_blocking=True)


def obs_to_tensors(spec: ObsSpec, obs: dict, device, name: str = "obs") -> tuple[dict, bool]:
    """Observation dict (unbatched or batched) -> ({key: batched tensor}, was_batched).

    Images stay uint8 (the encoder normalises them); state vectors become float32.
    """
    if not isinstance(obs, dict):
        raise TypeError(f"{name} must be a dict of arrays keyed {list(spec.shapes)}, got {type(obs).__name__}")
    out, batched = {}, None
    for key, shape in spec.shapes.items():
        if key not in obs:
            raise ValueError(f"{name} lacks key {key!r} (expected shape {tuple(shape)} or (B, *{tuple(shape)}))")
        v = obs[key]
        vshape = tuple(v.shape)
        if vshape == tuple(shape):
            this = False
        elif len(vshape) == len(shape) + 1 and vshape[1:] == tuple(shape):
            this = True
        else:
            raise ValueError(f"{name}[{key!r}] has shape {vshape}, expected {tuple(shape)} or (B, *{tuple(shape)})")
        if batched is not None and this != batched:
            raise ValueError(f"{name} mixes batched and unbatched arrays (key {key!r})")
        batched = this
        dtype = torch.uint8 if len(shape) == 3 else torch.float32
        t = _tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v, device, dtype)
        out[key] = t if this else t.unsqueeze(0)
    return out, bool(batched)


def batch_to_tensors(spec: ObsSpec, batch: dict, chunk_len: int, action_dim: int, device) -> dict:
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch lacks keys {missing}; a replay batch has {list(BATCH_KEYS)}")
    out = {}
    for name in ("obs", "next_obs"):
        out[name], batched = obs_to_tensors(spec, batch[name], device, name)
        if not batched:
            raise ValueError(f"batch[{name!r}] arrays need a leading batch dimension")
    actions = _tensor(batch["actions"], device, torch.float32)
    b = actions.shape[0]
    if tuple(actions.shape) != (b, chunk_len, action_dim):
        raise ValueError(
            f"batch['actions'] has shape {tuple(actions.shape)}, expected (B, H={chunk_len}, A={action_dim})"
        )
    out["actions"] = actions
    expected = {"mask": (b, chunk_len), "reward": (b,), "discount": (b,), "is_demo": (b,)}
    for key, shape in expected.items():
        t = _tensor(batch[key], device, torch.float32)
        if tuple(t.shape) != shape:
            raise ValueError(f"batch[{key!r}] has shape {tuple(t.shape)}, expected {shape}")
        out[key] = t
    # Padding past an episode end enters the networks as zero actions ("stop"), whatever value
    # the sampler padded with, so it cannot leak into the critic input or the flow's x_t.
    out["actions"] = actions * out["mask"].unsqueeze(-1)
    for name in ("obs", "next_obs"):
        for key, t in out[name].items():
            if t.shape[0] != b:
                raise ValueError(f"batch[{name!r}][{key!r}] has batch size {t.shape[0]}, actions have {b}")
    return out


def split_batch(batch: dict, n: int) -> list[dict]:
    """n interleaved minibatches (rows i, i+n, ...): each keeps the batch's demo/online mix,
    which contiguous slices of a demo-first batch (MixedReplay's layout) would not."""
    return [
        {k: ({kk: vv[i::n] for kk, vv in v.items()} if isinstance(v, dict) else v[i::n]) for k, v in batch.items()}
        for i in range(n)
    ]
