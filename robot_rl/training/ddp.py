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

The learner's data-parallel mode (`robot-rl learner --nproc N`, LearnerSettings.nproc):

    updater = spawn_data_parallel(agent, nproc, run_dir)    # rank 0 here, N-1 worker processes
    TrainingLoop(updater, replay, ...)                       # updater.update(global_batch, k)
    updater.close()

Rank 0 is the caller's process and holds the real agent; `DistributedUpdater.update` cuts each
global batch into one shard per rank, sends the workers theirs over a pipe and updates on its
own, and everything else (act, export, save, state_dict) goes to the agent unchanged. Workers
start from the agent's checkpoint (weights, Adam moments, RNG, normaliser, counters), so a
warm-started or resumed agent is the same on every rank, not only its weights.
Gloo on CPU only: on a GPU box NCCL would need the pipe messages (shards) and the small CPU
tensors above replaced by tensor collectives on the device; not done (no GPU here).
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
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


# ---------------------------------------------------------------------------- the learner's mode
class DataParallelError(RuntimeError):
    """A worker rank died, stalled past the timeout or never started: no update can complete."""


def free_port() -> int:
    """A localhost TCP port nobody listens on now (rank 0's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def state_fingerprint(agent) -> str:
    """sha256 of all that decides the agent's next update: weights and buffers, optimiser
    moments and step counts, RNG state, counters. Ranks in step have equal fingerprints."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(repr(k).encode())
                feed(v[k])
        elif isinstance(v, (list, tuple)):
            for x in v:
                feed(x)
        elif isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # bytes: any dtype, bf16 too
        else:
            h.update(repr(v).encode())

    feed(agent.state_dict())
    return h.hexdigest()


class DistributedUpdater:
    """Rank 0 of a data-parallel learner (made by spawn_data_parallel): `update` takes the
    global batch, as Agent.update does, and returns the metrics averaged over the ranks; every
    other attribute is the agent's, so a TrainingLoop, the ONNX export and checkpoints use it
    as the agent itself. Not thread-safe: one thread updates (the trainer's)."""

    def __init__(self, ddp: DataParallelAgent, workers: list, conns: list, timeout_s: float):
        self.ddp, self.agent = ddp, ddp.agent
        self.workers, self.conns = workers, conns  # rank r is workers[r - 1]
        self.timeout_s = float(timeout_s)
        self.failure: DataParallelError | None = None  # the group is unusable after one
        self.closed = False

    def update(self, global_batch: dict, n_critic_steps: int = 1) -> dict:
        """Agent.update on the global batch, one shard per rank; DataParallelError if a worker
        is gone or the collectives fail or time out (the group is unusable from then on)."""
        world = self.ddp.world
        # cut before anything is sent: a batch that does not split raises here and breaks nothing
        shards = [shard_batch(global_batch, r, world, n_critic_steps) for r in range(world)]
        self._check_workers()
        try:
            for conn, shard in zip(self.conns, shards[1:]):
                conn.send(("update", shard, n_critic_steps))
            return self.ddp.update(shards[0], n_critic_steps)
        except (OSError, RuntimeError) as e:  # a closed pipe; gloo's closed connection or timeout
            raise self._fail(f"data-parallel update failed: {e}") from e

    def fingerprints(self) -> list[str]:
        """state_fingerprint of every rank, rank 0 first (all equal while the ranks are in step)."""
        self._check_workers()
        try:
            for conn in self.conns:
                conn.send(("fingerprint",))
            return [state_fingerprint(self.agent)] + [self._reply(r) for r in range(1, self.ddp.world)]
        except (OSError, RuntimeError) as e:  # a closed pipe, a worker that exited or sent nothing
            raise self._fail(f"data-parallel fingerprint failed: {e}") from e

    def close(self, join_s: float = 10.0) -> None:
        """Stop the workers (killed if they do not stop within join_s), leave the process group;
        the agent goes on as a single-process one."""
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            with contextlib.suppress(OSError):  # a dead worker's pipe
                conn.send(("stop",))
        _stop_processes(self.workers, join_s)
        for conn in self.conns:
            conn.close()
        self.agent.grad_hook = None
        dist.destroy_process_group()

    def _check_workers(self) -> None:
        if self.closed:
            raise DataParallelError("the data-parallel group is closed")
        if self.failure is not None:
            raise DataParallelError(f"the data-parallel group failed before: {self.failure}")
        if _dead(self.workers):
            raise self._fail("a data-parallel worker is gone")

    def _reply(self, rank: int):
        return _receive(self.workers[rank - 1], self.conns[rank - 1], rank, self.timeout_s)

    def _fail(self, message: str) -> DataParallelError:
        """The error to raise, kept (the group is unusable from here on), naming dead workers."""
        deadline = time.monotonic() + 1.0  # a killed worker's sockets close before its exit code is in
        for w in self.workers:
            w.join(max(0.0, deadline - time.monotonic()))
        dead = _dead(self.workers)
        self.failure = DataParallelError(message + (f" ({dead})" if dead else ""))
        return self.failure

    def __getattr__(self, name):  # act, save, state_dict, nets, spec, ... of the agent
        agent = self.__dict__.get("agent")
        if agent is None:
            raise AttributeError(name)
        return getattr(agent, name)


def spawn_data_parallel(agent, nproc: int, workdir, *, threads: int = 1, timeout_s: float = 120.0,
                        start_timeout_s: float = 300.0) -> DistributedUpdater:
    """Make this process rank 0 of an `nproc`-process gloo group on localhost and start the
    nproc-1 worker ranks; returns the rank-0 updater that stands in for `agent`.

    The workers start bit-identical to the agent: it is saved (Agent.save: weights, normaliser,
    Adam moments, RNG, counters) to workdir/data_parallel_start.pt and each worker loads it
    (a broadcast of the weights alone would leave a warm-started agent's Adam moments behind).
    Fit the normaliser and load checkpoints before this call. Workers are spawned (a forked
    child would inherit rclpy's DDS threads), import neither rclpy nor the caller's main
    module, and run `threads` torch threads. Every collective has `timeout_s`: a worker that
    dies or stalls makes update() raise DataParallelError instead of hanging; a worker whose
    rank 0 is gone exits."""
    nproc = int(nproc)
    if nproc < 2:
        raise ValueError(f"data-parallel needs nproc >= 2, got {nproc}")
    if dist.is_initialized():
        raise RuntimeError("this process is already in a torch.distributed process group")
    path = Path(workdir) / "data_parallel_start.pt"
    agent.save(path)
    port, ctx = free_port(), mp.get_context("spawn")
    workers, conns = [], []
    try:
        with _main_module_hidden():
            for rank in range(1, nproc):
                conn, child_conn = ctx.Pipe()
                worker = ctx.Process(target=_worker_main, name=f"data-parallel-rank{rank}", daemon=True,
                                     args=(child_conn, str(path), str(agent.device), rank, nproc, port,
                                           int(threads), float(timeout_s)))
                worker.start()
                child_conn.close()  # only the worker holds its end: its death reads as EOF here
                workers.append(worker)
                conns.append(conn)
        for rank in range(1, nproc):
            _receive(workers[rank - 1], conns[rank - 1], rank, start_timeout_s)  # loaded the agent
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=nproc,
                                timeout=datetime.timedelta(seconds=timeout_s))
        return DistributedUpdater(DataParallelAgent(agent), workers, conns, timeout_s)
    except BaseException:
        _stop_processes(workers, 0.0)
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
    finally:
        path.unlink(missing_ok=True)  # read by every worker by now, or by none


def _worker_main(conn, path: str, device: str, rank: int, world: int, port: int, threads: int,
                 timeout_s: float) -> None:
    """A worker rank: the agent from rank 0's checkpoint, then commands from rank 0 until
    "stop" (or until rank 0's end of the pipe closes: rank 0 is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is rank 0's to handle: it stops us
    torch.set_num_threads(threads)
    from robot_rl.learn.agent import load_agent

    agent = load_agent(path, device=device)  # make_agent(kind, spec, action_dim, config) + load
    conn.send("ready")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        ddp = DataParallelAgent(agent)
        while True:
            try:
                command, *args = conn.recv()
            except EOFError:
                return
            if command == "update":
                ddp.update(*args)
            elif command == "fingerprint":
                conn.send(state_fingerprint(agent))
            elif command == "stop":
                return
            else:
                raise ValueError(f"data-parallel worker: unknown command {command!r}")
    finally:
        dist.destroy_process_group()


def _receive(worker, conn, rank: int, timeout_s: float):
    """A worker's next message; DataParallelError if it exits first or sends none in time."""
    deadline = time.monotonic() + timeout_s
    while not conn.poll(0.2):
        if not worker.is_alive():
            raise DataParallelError(f"data-parallel rank {rank} exited with code {worker.exitcode}")
        if time.monotonic() > deadline:
            raise DataParallelError(f"data-parallel rank {rank} sent nothing in {timeout_s:.0f} s")
    try:
        return conn.recv()
    except EOFError:
        worker.join(1.0)
        raise DataParallelError(f"data-parallel rank {rank} exited with code {worker.exitcode}") from None


def _dead(workers) -> str:
    """The workers that are gone, as 'rank 1 exited with code -9, ...' ('' if none)."""
    return ", ".join(f"rank {r} exited with code {w.exitcode}" for r, w in enumerate(workers, 1) if not w.is_alive())


def _stop_processes(workers, join_s: float) -> None:
    deadline = time.monotonic() + join_s
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            w.kill()
            w.join()


@contextlib.contextmanager
def _main_module_hidden():
    """multiprocessing's spawn re-imports the parent's __main__ in each child; for the learner
    node that is robot_rl.nodes.learner, which imports rclpy. The workers need nothing from it
    (their target lives here), so it is hidden from spawn while they start."""
    main = sys.modules["__main__"]
    spec, file = main.__dict__.get("__spec__"), main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if file is not None:
            main.__file__ = file
