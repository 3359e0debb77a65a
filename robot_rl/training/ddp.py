"""Data-parallel learner updates over torch.distributed (gloo; the few small tensors it sends
itself, RNG state, metrics, normaliser rows, are CPU tensors, so nccl would need them moved).

    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:PORT", rank=r, world_size=N)
    agent = make_agent(kind, spec, action_dim, cfg)          # same kind/config/seed on every rank
    ddp = DataParallelAgent(agent)                           # rank 0's weights, normaliser, RNG everywhere
    metrics = ddp.update(shard_batch(global_batch, ddp.rank, ddp.world, utd), n_critic_steps=utd)

Each rank takes global_batch/N rows; every optimiser step (critic, actor, temperature) averages
the gradients over the ranks (one all-reduce of the flattened gradients, through Agent.grad_hook)
before clipping and stepping, so all ranks hold the same weights and Adam moments after every
step, and the step is the one a single process takes on the whole batch when the loss is a mean
over rows (the critic's TD loss, distillation, SAC's actor and temperature losses).

Where a rank's update is not the whole-batch update, and why that is accepted:
- Per-row random draws (flow/diffusion noise and time, next-action noise, image shifts) come from
  each rank's own generator for its own rows. All generators start from rank 0's state and
  consume the same number of draws, so they stay in lockstep: draws shared by the whole batch (the
  random target-critic subset) are identical on every rank without any message; per-row draws
  repeat the same values on each rank's rows. Making them the global batch's draws, sliced, would
  mean routing every draw in policies/encoders through the shard; in expectation the update is
  the same.
- Normalisers computed from the batch inside a loss are per rank: the BC loss divides by the
  rank's count of imitated steps and FQL's Q term by the rank's mean |Q|. shard_batch keeps the
  demo/online mix per rank, so the counts differ only through padding.
- The state normaliser, when nobody fitted it, is fitted on the whole batch (all-gathered), as a
  single process fits it on its first batch.
tests/test_ddp.py checks exact equality with the single-process update in a configuration where
none of these enter (noise input of the one-step actor zeroed, no demo rows, alpha 0, target
min over all critics), and that ranks stay bitwise identical in the default configuration.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def shard_indices(batch_size: int, rank: int, world: int, n_critic_steps: int = 1) -> np.ndarray:
    """Rows of a global batch that rank `rank` takes, so that its update's k interleaved
    minibatches (Agent.update splits rows j::k) are slices of the global batch's minibatches:
    minibatch j of the whole batch is rows j::k, and its share for rank r is every N-th of them.
    With k = 1 this is rows r::N, which keeps MixedReplay's demo/online mix on every rank."""
    k = int(n_critic_steps)
    if batch_size % (k * world):
        raise ValueError(f"global batch {batch_size} must split into {world} ranks x {k} minibatches")
    return np.arange(batch_size).reshape(batch_size // (k * world), world, k)[:, rank, :].reshape(-1)


def shard_batch(batch: dict, rank: int, world: int, n_critic_steps: int = 1) -> dict:
    """A replay batch (numpy or torch, nested obs dicts) cut to one rank's rows (shard_indices)."""
    size = len(batch["actions"])
    idx = shard_indices(size, rank, world, n_critic_steps)

    def take(v):
        if isinstance(v, dict):
            return {k: take(x) for k, x in v.items()}
        return v[torch.as_tensor(idx)] if isinstance(v, torch.Tensor) else np.asarray(v)[idx]

    return {k: take(v) for k, v in batch.items()}


class DataParallelAgent:
    """An Agent whose optimiser steps average gradients across the process group.

    Construct it on every rank after init_process_group, with agents built from the same
    arguments; rank 0's weights, buffers (state normaliser) and RNG state are broadcast so all
    start equal. To resume, load the same checkpoint on every rank before wrapping (Adam state
    is not broadcast). Only rank 0 needs to save or export: the ranks hold the same weights.
    """

    def __init__(self, agent, group=None):
        self.agent, self.group = agent, group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        with torch.no_grad():
            for t in agent.nets.state_dict().values():  # parameters and persistent buffers
                dist.broadcast(t, self._src(0), group=group)
        rng = agent.gen.get_state()
        dist.broadcast(rng, self._src(0), group=group)
        agent.gen.set_state(rng)
        agent.grad_hook = self._average_gradients

    def _src(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _average_gradients(self, params) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)  # one collective per optimiser step, not one per tensor
        dist.all_reduce(flat, group=self.group)
        flat /= self.world
        for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(avg)

    def update(self, shard: dict, n_critic_steps: int = 1) -> dict:
        """Agent.update on this rank's rows (shard_batch); returns metrics averaged over ranks."""
        agent = self.agent
        if not bool(agent.nets["encoder"].normalizer_fitted):
            agent.fit_obs_normalizer(self._gather_vectors(shard["obs"]))
        metrics = agent.update(shard, n_critic_steps)
        values = torch.tensor([metrics[k] for k in metrics], dtype=torch.float64)
        dist.all_reduce(values, group=self.group)
        return dict(zip(metrics, (values / self.world).tolist()))

    def _gather_vectors(self, obs: dict) -> dict:
        """The whole batch's state vectors (every rank's rows), for the first-batch normaliser fit."""
        out = {}
        for k in self.agent.nets["encoder"].vector_keys:
            local = torch.as_tensor(np.asarray(obs[k]) if not isinstance(obs[k], torch.Tensor) else obs[k]).float()
            parts = [torch.empty_like(local) for _ in range(self.world)]
            dist.all_gather(parts, local.contiguous(), group=self.group)
            out[k] = torch.cat(parts)
        return out

    def __getattr__(self, name):  # act, save, export_onnx, ... straight to the agent
        return getattr(self.agent, name)
