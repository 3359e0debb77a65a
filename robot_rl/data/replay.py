"""In-memory replay for the learner: action-chunk / n-step samples, RLPD demo+online mixing.

Rows are a ring of fixed capacity. Each episode takes one row per step plus one terminal row
holding the observation after its last step, so the next observation of any sample is simply
row t+h (no next-observation image is ever stored twice). A sample starting at step t with
chunk length H and return horizon n (n = H unless `nstep` is given) covers h = min(n, steps
left in the episode) real steps:

  actions  (B, H, A) float32   a_t .. a_{t+H-1}; past the episode end the last real action repeats
  mask     (B, H)    float32   1 where the action exists inside the episode, 0 for padding
  reward   (B,)      float32   sum_{k<h} gamma^k r_{t+k}
  discount (B,)      float32   gamma^h, or 0 if the episode terminated within those h steps
                               (truncation still bootstraps)
  obs / next_obs {key: (B, ...)}  observation at t and at t+h
  is_demo  (B,)      float32   1 if the row is imitated: a demo episode's step, or a human's
                               step that MixedReplay's `interventions` makes a demo

Chunks never cross episode ends. Steps of an episode still being written are sampled once the
rows their sample needs exist. Sampling and adding are guarded by one lock so a background
prefetch thread can sample while the learner thread adds.
"""
from __future__ import annotations

import threading

import numpy as np

from robot_rl.data.prefetch import Prefetcher, to_torch
from robot_rl.data.schema import SchemaError, check_fields, normalize_schema, obs_keys_of

# What a human's steps in an online episode are to the learner (MixedReplay's `interventions`)
INTERVENTION_MODES = ("online", "successful", "demo")

__all__ = ["INTERVENTION_MODES", "ReplayBuffer", "MixedReplay", "Prefetcher", "to_torch", "intervention_segments", "select_episodes",
           "iter_store_episodes"]

_STEP_FIELDS = {"reward": ((), "<f4"), "terminated": ((), "|b1"), "intervened": ((), "|b1")}


class _NumpyObs:
    """Observation rows in host memory (np.zeros maps pages lazily: a big ring costs memory
    only as it fills)."""

    def __init__(self, fields: dict, capacity: int):
        self.fields = fields
        self.arrays = {k: np.zeros((capacity,) + s, d) for k, (s, d) in fields.items()}

    def write(self, slots, values: dict) -> None:
        for k, arr in self.arrays.items():
            arr[slots] = values[k]

    def empty(self, batch_size: int) -> dict:
        return {k: np.empty((batch_size,) + s, d) for k, (s, d) in self.fields.items()}

    def gather(self, slots: np.ndarray, out: dict, rows: slice) -> None:
        for k, arr in self.arrays.items():  # mode="clip": with "raise", take buffers `out`
            np.take(arr, slots, axis=0, out=out[k][rows], mode="clip")


class _TorchObs:
    """Observation rows in torch tensors on `device` (e.g. the learner's GPU): a batch is
    gathered there by index_select, with no host copy or transfer of images at sample time."""

    def __init__(self, fields: dict, capacity: int, device):
        import torch

        self.torch, self.device, self.fields = torch, torch.device(device), fields
        self.arrays = {k: torch.zeros((capacity,) + s, dtype=_torch_dtype(d), device=self.device)
                       for k, (s, d) in fields.items()}

    def write(self, slots, values: dict) -> None:
        idx = slots if isinstance(slots, int) else self.torch.from_numpy(np.asarray(slots)).to(self.device)
        for k, arr in self.arrays.items():
            arr[idx] = self.torch.from_numpy(np.ascontiguousarray(values[k])).to(self.device)

    def empty(self, batch_size: int) -> dict:
        return {k: self.torch.empty((batch_size,) + s, dtype=_torch_dtype(d), device=self.device)
                for k, (s, d) in self.fields.items()}

    def gather(self, slots: np.ndarray, out: dict, rows: slice) -> None:
        idx = self.torch.from_numpy(slots).to(self.device, non_blocking=True)
        for k, arr in self.arrays.items():
            self.torch.index_select(arr, 0, idx, out=out[k][rows])


def _torch_dtype(dtype):
    import torch

    return torch.from_numpy(np.zeros(0, dtype)).dtype


class ReplayBuffer:
    """Fixed-capacity ring of episodes, sampled uniformly over steps."""

    def __init__(self, schema: dict, capacity: int, chunk: int = 1, gamma: float = 0.99,
                 nstep: int | None = None, obs_keys=None, device=None):
        """schema: {key: (shape, dtype)} of the observation keys and "action" (a store's
        `schema` fits); obs_keys: the subset of observation keys to keep (default all);
        device: keep observations in torch tensors there (e.g. "cuda") and return batches of
        torch tensors on it; None: numpy in host memory."""
        schema = normalize_schema(schema)
        keys = obs_keys_of(schema) if obs_keys is None else tuple(obs_keys)
        for k in keys:
            if k not in schema or k == "action":
                raise SchemaError(f"obs key {k!r} is not in the schema (observation keys: {obs_keys_of(schema)})")
        if len(schema["action"][0]) != 1:
            raise SchemaError(f"'action' must be a vector, schema has shape {schema['action'][0]}")
        self.chunk = int(chunk)
        self.nstep = int(nstep) if nstep is not None else self.chunk
        if self.chunk < 1 or self.nstep < 1:
            raise ValueError(f"chunk and nstep must be >= 1, got chunk={chunk}, nstep={nstep}")
        self.capacity = int(capacity)
        if self.capacity < max(self.chunk, self.nstep) + 2:
            raise ValueError(f"capacity {capacity} too small for chunk {self.chunk} / nstep {self.nstep}")
        self.gamma = float(gamma)
        self.obs_keys = keys
        self.obs_fields = {k: schema[k] for k in keys}
        self.action_dim = schema["action"][0][0]
        self._step_fields = {**self.obs_fields, "action": ((self.action_dim,), "<f4"), **_STEP_FIELDS}
        cap = self.capacity
        self.device = device
        self._obs = _NumpyObs(self.obs_fields, cap) if device is None else _TorchObs(self.obs_fields, cap, device)
        self._action = np.zeros((cap, self.action_dim), np.float32)
        self._reward = np.zeros(cap, np.float32)
        self._terminated = np.zeros(cap, bool)
        self._is_demo = np.zeros(cap, np.float32)
        self._is_step = np.zeros(cap, bool)  # False for terminal (final-observation) rows
        self._end = np.full(cap, -1, np.int64)  # global row of the episode's terminal row; -1 open
        self._next = 0  # global index of the next row to write
        self._open_start: int | None = None
        self._n_steps = 0  # step rows currently held
        self._lock = threading.Lock()
        self._discounts = self.gamma ** np.arange(self.nstep + 1, dtype=np.float64)

    # -- filling ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Steps held (sampleable or soon to be)."""
        return self._n_steps

    @property
    def has_samples(self) -> bool:
        """True if sample() can draw: a closed episode's step is held, or the open episode has
        enough steps for a full sample."""
        open_steps = 0 if self._open_start is None else min(self._next - self._open_start, self.capacity)
        return self._n_steps > open_steps or open_steps > max(self.nstep, self.chunk - 1)

    @property
    def episode_open(self) -> bool:
        return self._open_start is not None

    def _claim(self, n_rows: int) -> np.ndarray:
        """Slots for the next n_rows rows; forgets the step rows they overwrite."""
        slots = np.arange(self._next, self._next + n_rows) % self.capacity
        self._n_steps -= int(self._is_step[slots].sum())
        return slots

    def add_step(self, step: dict, is_demo: bool | None = None) -> None:
        """Append one step (the store's step dict; extra keys are ignored).

        is_demo defaults to the step's "intervened" flag."""
        v = check_fields("step", step, self._step_fields, allow_extra=True)
        with self._lock:
            if self._open_start is None:
                self._open_start = self._next
            slot = int(self._claim(1)[0])
            self._obs.write(slot, v)
            self._action[slot] = v["action"]
            self._reward[slot] = v["reward"]
            self._terminated[slot] = v["terminated"]
            self._is_demo[slot] = float(v["intervened"] if is_demo is None else is_demo)
            self._end[slot] = -1
            self._is_step[slot] = True
            self._n_steps += 1
            self._next += 1

    def end_episode(self, final_obs: dict) -> None:
        """Close the open episode; final_obs is the observation after its last step."""
        v = check_fields("final_obs", final_obs, self.obs_fields, allow_extra=True)
        with self._lock:
            if self._open_start is None:
                raise RuntimeError("end_episode called with no open episode")
            self._write_terminal(v, self._open_start)
            self._open_start = None

    def _write_terminal(self, final_obs: dict, start: int) -> None:
        slot = int(self._claim(1)[0])
        self._obs.write(slot, final_obs)
        self._action[slot] = 0.0
        self._reward[slot] = 0.0
        self._terminated[slot] = False
        self._is_demo[slot] = 0.0
        self._is_step[slot] = False
        self._end[slot] = self._next
        first = max(start, self._next - self.capacity + 1)
        self._end[np.arange(first, self._next) % self.capacity] = self._next
        self._next += 1

    def add_episode(self, steps: dict, final_obs: dict, is_demo=None) -> None:
        """Append a whole episode at once. steps: {key: (T, ...)} with the obs keys, "action",
        "reward", "terminated" (and "intervened" unless is_demo is given); is_demo: None (use
        "intervened"), a bool, or a (T,) array."""
        if self._open_start is not None:
            raise RuntimeError("add_episode called while a live episode is open")
        fields = dict(self._step_fields)
        if is_demo is not None:
            fields.pop("intervened")
        T = len(steps["action"])
        if T == 0:
            raise ValueError("add_episode called with an empty episode")
        v = check_fields("episode", steps, {k: ((T,) + s, d) for k, (s, d) in fields.items()}, allow_extra=True)
        f = check_fields("final_obs", final_obs, self.obs_fields, allow_extra=True)
        demo = v["intervened"] if is_demo is None else np.broadcast_to(np.asarray(is_demo, np.float32), (T,))
        drop = max(0, T + 1 - self.capacity)  # an episode longer than the ring keeps its tail
        with self._lock:
            self._next += drop
            start = self._next
            slots = self._claim(T - drop)
            self._obs.write(slots, {k: v[k][drop:] for k in self.obs_keys})
            self._action[slots] = v["action"][drop:]
            self._reward[slots] = v["reward"][drop:]
            self._terminated[slots] = v["terminated"][drop:]
            self._is_demo[slots] = np.asarray(demo, np.float32)[drop:]
            self._is_step[slots] = True
            self._n_steps += T - drop
            self._next += T - drop
            self._write_terminal(f, start)

    # -- sampling -----------------------------------------------------------------------------
    def _valid(self, g: np.ndarray) -> np.ndarray:
        slot = g % self.capacity
        end = self._end[slot]
        ready = g + max(self.nstep, self.chunk - 1) <= self._next - 1  # rows of an open episode exist
        return self._is_step[slot] & ((end >= 0) | ready)

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Global row indices of `batch_size` uniformly drawn sampleable steps."""
        lo, hi = max(0, self._next - self.capacity), self._next
        picked, need = [], int(batch_size)
        for _ in range(64):
            if need <= 0 or hi <= lo:
                break
            g = rng.integers(lo, hi, size=2 * need + 16)
            g = g[self._valid(g)][:need]
            picked.append(g)
            need -= len(g)
        if need > 0:
            raise RuntimeError(f"replay has no sampleable steps ({self._n_steps} steps held, chunk "
                               f"{self.chunk}, nstep {self.nstep})")
        return np.concatenate(picked)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        batch = self.empty_batch(batch_size)
        self.sample_into(batch, 0, batch_size, rng)
        return self.finish_batch(batch)

    def finish_batch(self, batch: dict) -> dict:
        """With a device, the small arrays join the observations there as torch tensors."""
        return batch if self.device is None else to_torch(batch, self.device)

    def empty_batch(self, batch_size: int) -> dict:
        """Uninitialised batch arrays, to be filled by sample_into."""
        B, H = int(batch_size), self.chunk
        return {
            "obs": self._obs.empty(B),
            "actions": np.empty((B, H, self.action_dim), np.float32),
            "mask": np.empty((B, H), np.float32),
            "reward": np.empty(B, np.float32),
            "discount": np.empty(B, np.float32),
            "next_obs": self._obs.empty(B),
            "is_demo": np.empty(B, np.float32),
        }

    def sample_into(self, batch: dict, lo: int, hi: int, rng: np.random.Generator) -> None:
        """Fill rows [lo, hi) of `batch` (from empty_batch) with uniformly drawn samples, so
        mixed batches are gathered once, with no concatenation copy.

        The observation copies (the bulk of the work) run outside the lock, so several
        prefetch threads gather in parallel while another thread adds steps; if the ring
        overwrote a sampled row meanwhile (only the oldest rows are at risk), that part of the
        batch is drawn again."""
        rows = slice(lo, hi)
        for _ in range(100):
            with self._lock:
                g = self.sample_indices(hi - lo, rng)
                next_g = self._gather_small(g, batch, rows)
            self._gather_obs(g, next_g, batch, rows)
            with self._lock:
                if g.min() >= self._next - self.capacity:
                    return
        raise RuntimeError("replay rows are overwritten faster than they can be sampled")

    def _gather(self, g: np.ndarray, out: dict | None = None, rows: slice = slice(None)) -> dict:
        """The batch for global rows g (no locking)."""
        if out is None:
            out = self.empty_batch(len(g))
        self._gather_obs(g, self._gather_small(g, out, rows), out, rows)
        return self.finish_batch(out)

    def _gather_small(self, g: np.ndarray, out: dict, rows: slice) -> np.ndarray:
        """Fill actions, mask, reward, discount, is_demo; return the next-observation rows."""
        cap, H, n = self.capacity, self.chunk, self.nstep
        slot = g % cap
        end = self._end[slot]
        left = np.where(end >= 0, end - g, np.iinfo(np.int64).max)  # real steps from t to the end
        h = np.minimum(n, left)
        h_act = np.minimum(H, left)
        k = np.arange(H)
        out["actions"][rows] = self._action[(g[:, None] + np.minimum(k[None, :], h_act[:, None] - 1)) % cap]
        out["mask"][rows] = k[None, :] < h_act[:, None]
        kn = np.arange(n)
        steps = (g[:, None] + kn[None, :]) % cap
        real = kn[None, :] < h[:, None]
        out["reward"][rows] = (self._reward[steps] * real * self._discounts[None, :n]).sum(1)
        terminated = (self._terminated[steps] & real).any(1)
        out["discount"][rows] = np.where(terminated, 0.0, self._discounts[h])
        out["is_demo"][rows] = self._is_demo[slot]
        return g + h

    def _gather_obs(self, g: np.ndarray, next_g: np.ndarray, out: dict, rows: slice) -> None:
        self._obs.gather(g % self.capacity, out["obs"], rows)
        self._obs.gather(next_g % self.capacity, out["next_obs"], rows)

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def from_store(cls, store, capacity: int | None = None, chunk: int = 1, gamma: float = 0.99,
                   nstep: int | None = None, obs_keys=None, sources=None, success_only: bool = False,
                   episodes=None, device=None) -> "ReplayBuffer":
        """Load closed episodes of an EpisodeStore, filtered by source(s), success and/or index."""
        picked = select_episodes(store, sources=sources, success_only=success_only, episodes=episodes)
        if capacity is None:
            capacity = max(sum(e["length"] + 1 for e in picked), max(chunk, nstep or 1) + 2)
        buf = cls(store.schema, capacity, chunk=chunk, gamma=gamma, nstep=nstep, obs_keys=obs_keys, device=device)
        for ep, steps, final in iter_store_episodes(store, picked, buf.obs_keys):
            buf.add_episode(steps, final, is_demo=True if ep["source"] == "demo" else None)
        return buf


class MixedReplay:
    """RLPD symmetric sampling: `demo_fraction` of each batch from the demo side, the rest online.

    The demo side holds demo episodes and intervention segments (runs of human-chosen steps,
    each closed by the observation after it); the online side holds every non-demo step,
    interventions included (HIL-SERL). With an empty online side the whole batch is demos, and
    the other way round."""

    def __init__(self, demo: ReplayBuffer, online: ReplayBuffer, demo_fraction: float = 0.5,
                 self_imitation: float = 0.0, interventions: str = "online"):
        """self_imitation: 0 = off; q in (0, 1]: an online episode the policy finished alone
        (no intervened step) and successfully (its last step terminated with a positive reward),
        in no more steps than the q-quantile of the successful teacher episodes' lengths, joins
        the demo side as a demo (docs/learner.md "From sloppy demos"). Promoted episodes count as
        teachers, so the bar falls as the policy gets faster.

        interventions: what a human's steps in an online episode are to the learner (they are
        always online experience too; imitated, is_demo = 1, only where a mode makes them demos):
        - "demo": demonstrations, each segment on the demo side as it happens (HIL-SERL);
        - "successful": demonstrations only if the episode ends in success; added at its end;
        - "online": experience only (critic and actor's Q term), advice rather than ground
          truth: never imitated. On peg_insert the scripted human's corrections include
          re-grasps (fingers opening next to the hole), and cloning them taught the policy to
          let go there (docs/learner.md "Interventions: demos or advice")."""
        if interventions not in INTERVENTION_MODES:
            raise ValueError(f"interventions must be one of {INTERVENTION_MODES}, got {interventions!r}")
        if not 0.0 <= demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction must be in [0, 1], got {demo_fraction}")
        if not 0.0 <= self_imitation <= 1.0:
            raise ValueError(f"self_imitation must be in [0, 1] (0 = off), got {self_imitation}")
        settings = ("chunk", "nstep", "gamma", "obs_keys", "device")
        if any(getattr(demo, a) != getattr(online, a) for a in settings):
            raise ValueError(f"demo and online buffers must share {', '.join(settings)}")
        self.demo, self.online, self.demo_fraction = demo, online, float(demo_fraction)
        self.self_imitation = float(self_imitation)
        self.interventions = interventions
        self._segments: list = []  # "successful": the live episode's segments, [steps, closing obs]
        self.teacher_lengths: list[int] = []  # steps of each successful episode on the demo side
        self.promoted = 0  # online episodes promoted to the demo side
        # The live episode: its length and last step (its outcome) always; its steps only while
        # it may still be promoted (self-imitation on, a policy episode nobody has helped).
        self._live_len, self._live_last, self._live_steps = 0, None, []
        self._demo_episode = False  # the live episode is a demo (goes to the demo side only)
        self._episode_started = False

    @classmethod
    def create(cls, schema: dict, capacity: int, demo_capacity: int | None = None,
               demo_fraction: float = 0.5, self_imitation: float = 0.0, interventions: str = "online",
               **kwargs) -> "MixedReplay":
        """Two empty buffers with the same settings (kwargs: chunk, gamma, nstep, obs_keys, device)."""
        demo = ReplayBuffer(schema, demo_capacity or capacity, **kwargs)
        return cls(demo, ReplayBuffer(schema, capacity, **kwargs), demo_fraction, self_imitation, interventions)

    def __len__(self) -> int:
        return len(self.demo) + len(self.online)

    def add_step(self, step: dict, demo: bool = False) -> None:
        """Live step. demo=True marks a whole demo episode (pass it for each of its steps)."""
        if not self._episode_started:
            self._demo_episode, self._episode_started = bool(demo), True
            self._live_len, self._live_steps = 0, []
        self._live_len, self._live_last = self._live_len + 1, step
        if self._demo_episode or self.self_imitation <= 0 or step["intervened"]:
            self._live_steps = None  # cannot be promoted: nothing more to keep
        elif self._live_steps is not None:
            self._live_steps.append(step)
        if self._demo_episode:
            self.demo.add_step(step, is_demo=True)
            return
        if not step["intervened"]:  # this observation follows an intervention segment: close it
            if self.demo.episode_open:
                self.demo.end_episode(step)
            if self._segments and self._segments[-1][1] is None:
                self._segments[-1][1] = step
        self.online.add_step(step, is_demo=bool(step["intervened"]) and _online_copy_imitated(self.interventions))
        if step["intervened"] and self.interventions == "demo":
            self.demo.add_step(step, is_demo=True)
        elif step["intervened"] and self.interventions == "successful":
            if not self._segments or self._segments[-1][1] is not None:
                self._segments.append([[], None])
            self._segments[-1][0].append(step)

    def end_episode(self, final_obs: dict) -> None:
        if self.demo.episode_open:
            self.demo.end_episode(final_obs)
        if self.online.episode_open:
            self.online.end_episode(final_obs)
        n, last, kept = self._live_len, self._live_last, self._live_steps
        self._live_len, self._live_last, self._live_steps = 0, None, []
        succeeded = n > 0 and _succeeded(last["reward"], last["terminated"])
        segments, self._segments = self._segments, []
        for steps, closing in segments if succeeded else ():  # interventions "successful"
            self.demo.add_episode(self._stack(steps), final_obs if closing is None else closing, is_demo=True)
        if self._demo_episode and succeeded:
            self.teacher_lengths.append(n)
        elif kept and succeeded and self.teacher_lengths and \
                n <= float(np.quantile(self.teacher_lengths, self.self_imitation)):
            self.demo.add_episode(self._stack(kept), final_obs, is_demo=True)
            self.teacher_lengths.append(n)
            self.promoted += 1
        self._episode_started = False

    def add_stored_episode(self, steps: dict, final_obs: dict) -> None:
        """A closed online episode read back from a store ({key: (T, ...)} with "intervened"),
        placed as add_step / end_episode placed it live (a restarted learner's backfill)."""
        self.online.add_episode(steps, final_obs, is_demo=None if _online_copy_imitated(self.interventions) else False)
        for seg, seg_final in intervention_demos(steps, final_obs, self.interventions):
            self.demo.add_episode(seg, seg_final, is_demo=True)

    def _stack(self, steps: list) -> dict:
        """Live step dicts -> an episode's arrays (the fields the demo side stores)."""
        return {k: np.stack([np.asarray(s[k]) for s in steps])
                for k in (*self.demo.obs_keys, "action", "reward", "terminated")}

    def add_demo_episode(self, steps: dict, final_obs: dict) -> None:
        """A whole demo episode ({key: (T, ...)} with the obs keys, action, reward, terminated)
        to the demo side; a successful one also sets the self-imitation bar."""
        self.demo.add_episode(steps, final_obs, is_demo=True)
        if len(steps["action"]) and _succeeded(steps["reward"][-1], steps["terminated"][-1]):
            self.teacher_lengths.append(len(steps["action"]))

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        n_demo = int(round(batch_size * self.demo_fraction))
        if not self.online.has_samples:
            n_demo = batch_size
        elif not self.demo.has_samples:
            n_demo = 0
        batch = self.online.empty_batch(batch_size)
        if n_demo:
            self.demo.sample_into(batch, 0, n_demo, rng)
        if batch_size - n_demo:
            self.online.sample_into(batch, n_demo, batch_size, rng)
        return self.online.finish_batch(batch)

    @classmethod
    def from_store(cls, store, capacity: int | None = None, demo_capacity: int | None = None,
                   demo_fraction: float = 0.5, chunk: int = 1, gamma: float = 0.99,
                   nstep: int | None = None, obs_keys=None, success_only_demos: bool = False,
                   device=None, self_imitation: float = 0.0, interventions: str = "online") -> "MixedReplay":
        """Demo side: "demo" episodes (optionally successful ones only) + intervention segments of
        the other episodes (as `interventions` says: all, those of successful episodes, none);
        online side: all other episodes. `store` may be a list of stores
        (a run's demos and an earlier run's experience, to resume it).

        With `capacity` (a replay that goes on filling live) the demo side keeps room for that
        many more rows, so a run's interventions never push the loaded demos out of the ring."""
        stores = list(store) if isinstance(store, (list, tuple)) else [store]
        picked = [(st, select_episodes(st)) for st in stores]
        demos = [(st, [e for e in t if e["source"] == "demo" and (e["success"] or not success_only_demos)])
                 for st, t in picked]
        others = [(st, [e for e in t if e["source"] != "demo"]) for st, t in picked]
        schema = stores[0].schema
        keys = list(obs_keys or [k for k in schema if k != "action"]) + ["action"]
        for st in stores[1:]:
            theirs = {k: st.schema.get(k) for k in keys}
            if theirs != {k: schema.get(k) for k in keys}:
                raise ValueError(f"store {getattr(st, 'path', st)} holds {theirs}, the first store "
                                 f"{ {k: schema.get(k) for k in keys} }: one replay needs one layout")
        kw = dict(chunk=chunk, gamma=gamma, nstep=nstep, obs_keys=obs_keys, device=device)
        floor = max(chunk, nstep or 1) + 2
        n_online = sum(e["length"] + 1 for _, eps in others for e in eps)
        online = ReplayBuffer(schema, capacity or max(n_online, floor), **kw)
        segments = []
        for st, eps in others:
            for ep, steps, final in iter_store_episodes(st, eps, online.obs_keys):
                online.add_episode(steps, final, is_demo=None if _online_copy_imitated(interventions) else False)
                segments += intervention_demos(steps, final, interventions)
        n_demo_rows = sum(e["length"] + 1 for _, eps in demos for e in eps) + \
            sum(len(s["action"]) + 1 for s, _ in segments)
        demo = ReplayBuffer(schema, demo_capacity or max(n_demo_rows + (capacity or 0), floor), **kw)
        for st, eps in demos:
            for ep, steps, final in iter_store_episodes(st, eps, demo.obs_keys):
                demo.add_episode(steps, final, is_demo=True)
        for seg, seg_final in segments:
            demo.add_episode(seg, seg_final, is_demo=True)
        replay = cls(demo, online, demo_fraction, self_imitation, interventions)
        replay.teacher_lengths = [int(e["length"]) for _, eps in demos for e in eps if e["success"]]
        return replay


def _succeeded(last_reward, last_terminated) -> bool:
    """An episode's outcome from its last step alone: terminated with a positive reward (the
    twin's and the reward classifier's success; a failure truncates)."""
    return bool(last_terminated) and float(last_reward) > 0


def _online_copy_imitated(mode: str) -> bool:
    """Whether the online copy of a human's step is imitated too (is_demo 1): only in "demo"
    mode. The BC terms weigh every row by is_demo, whichever side it was sampled from, so in the
    other modes that copy must say 0 or the step is cloned anyway."""
    return mode == "demo"


def intervention_demos(steps: dict, final_obs: dict, mode: str) -> list[tuple[dict, dict]]:
    """The demo-side episodes a stored online episode's intervention segments make under
    `mode` (INTERVENTION_MODES): each segment closed by the observation after it (the episode's
    final one for a segment at its end); none for "online", and for "successful" unless the
    episode succeeded, judged from its last step as the live path judges it."""
    if mode == "online" or (mode == "successful" and not (
            len(steps["reward"]) and _succeeded(steps["reward"][-1], steps["terminated"][-1]))):
        return []
    out = []
    for s, e in intervention_segments(steps["intervened"]):
        seg = {k: v[s:e] for k, v in steps.items()}
        out.append((seg, final_obs if e == len(steps["intervened"]) else {k: steps[k][e] for k in final_obs}))
    return out


def intervention_segments(intervened) -> list[tuple[int, int]]:
    """[start, end) runs of True in a boolean step array."""
    x = np.concatenate([[False], np.asarray(intervened, bool), [False]]).astype(np.int8)
    d = np.diff(x)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def select_episodes(store, sources=None, success_only: bool = False, episodes=None) -> list[dict]:
    """Per-episode metadata dicts (index, start, length, source, success, interrupted) to load."""
    t = store.episode_table()
    if isinstance(sources, str):
        sources = (sources,)
    wanted = range(store.n_episodes) if episodes is None else episodes
    out = []
    for i in wanted:
        ep = {"index": int(i), "start": int(t["start"][i]), "length": int(t["length"][i]),
              "source": str(t["source"][i]), "success": bool(t["success"][i]),
              "interrupted": bool(t["interrupted"][i])}
        if sources is not None and ep["source"] not in sources:
            continue
        if success_only and not ep["success"]:
            continue
        if ep["interrupted"]:
            ep["length"] -= 1  # no observation after its last step: that step cannot be used
            if ep["length"] == 0:
                continue
        out.append(ep)
    return out


def iter_store_episodes(store, picked: list[dict], obs_keys, max_rows: int = 4096):
    """Yield (episode, steps {key: (T, ...)}, final_obs) for the picked episodes.

    Reads each key once per group of neighbouring episodes (about max_rows steps) rather than
    per episode (a zarr read costs milliseconds per call) or all at once (a store of images can
    exceed memory). An interrupted episode ends one step early, closed by that step's
    observation."""
    keys = tuple(obs_keys) + ("action", "reward", "terminated", "intervened")

    def stop(ep):  # one row past the last step used, and past the interrupted episode's last step
        return ep["start"] + ep["length"] + (1 if ep["interrupted"] else 0)

    groups, group = [], []
    for ep in picked:
        if group and stop(ep) - group[0]["start"] > max_rows:
            groups.append(group)
            group = []
        group.append(ep)
    if group:
        groups.append(group)
    for group in groups:
        lo, hi = group[0]["start"], max(stop(ep) for ep in group)
        e_lo, e_hi = group[0]["index"], group[-1]["index"] + 1
        span = {k: store.read(k, lo, hi) for k in keys}
        finals = {k: store.read_final_obs(k, e_lo, e_hi) for k in obs_keys}
        for ep in group:
            a, b = ep["start"] - lo, ep["start"] - lo + ep["length"]
            steps = {k: v[a:b] for k, v in span.items()}
            if ep["interrupted"]:
                final = {k: span[k][b] for k in obs_keys}
            else:
                final = {k: v[ep["index"] - e_lo] for k, v in finals.items()}
            yield ep, steps, final
