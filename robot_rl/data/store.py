"""Crash-safe episode store: one zarr (format 2) directory per run.

Layout (what Diffusion Policy's ReplayBuffer and any zarr reader see):
  data/<key>            (T_total, ...) one row per executed step, chunked along time:
                        the schema's keys (observation keys + "action") and the bookkeeping keys
                        reward, terminated, truncated, intervened, policy_version, timestamp, eval
  meta/episode_ends     (N,) int64 cumulative episode ends
  meta/<field>          (N,) per-episode metadata: success, interrupted (bool), task, source,
                        robot, calibration_id (str), extra (JSON str of other begin_episode kwargs)
  final_obs/<key>       (N, ...) the observation after each episode's last step (for
                        bootstrapping), once per episode so no image is stored twice. It lives
                        beside meta/, not in it, because Diffusion Policy loads every member of
                        meta/ as an array.
  commit                the commit record (robot_rl.data.commit): committed steps and episodes.
  .zattrs               the user's attrs and "robot_rl_store" (format version, schema).

Crash safety: appending a step writes its rows without touching any committed byte (in-place
pwrite for low-dim arrays, a new chunk file per image; see columns.py), then commits by
rewriting the commit record in place. Opening trusts only the commit: rows past it are
discarded, and an episode left open by a dead writer is closed and marked `interrupted` (its
final_obs rows are zeros, so replay drops its last step). One writer at a time (an flock on the
root .zgroup, a file never rewritten); any number of readers in other processes, which see only
committed steps.

Declared array lengths: meta/episode_ends always has exactly n_episodes rows. While a writer
runs, the other arrays grow in blocks and may be longer than their content (Diffusion Policy
slices data/* to episode_ends[-1]); close() and recovery trim every array to its content.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numcodecs
import numpy as np
import zarr

from robot_rl.data.columns import Column, chunk_rows_for
from robot_rl.data.commit import CommitWriter, create_commit_array, read_commit
from robot_rl.data.schema import (BOOKKEEPING, SOURCES, SchemaError, check_fields, is_image,
                                  normalize_schema, obs_keys_of)

FORMAT_VERSION = 1
ATTRS_KEY = "robot_rl_store"
LOCK_FILE = ".zgroup"
GROW_STEPS = 1024  # declared lengths grow in blocks: a .zarray rewrite is a rename
GROW_EPISODES = 256
EPISODE_STR_FIELDS = ("task", "source", "robot", "calibration_id", "extra")
EPISODE_BOOL_FIELDS = ("success", "interrupted")

# Images: blosc zstd level 1, one frame per chunk (bench/bench_store.py measures ratio and speed,
# docs/store.md). Low-dim arrays are stored uncompressed so a step is written in place; they are
# a few dozen bytes a step next to ~10-50 KB of images.
IMAGE_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.NOSHUFFLE)


class StoreLockedError(RuntimeError):
    """Another process holds this store open for writing."""


class EpisodeStore:
    """Append episodes step by step to a zarr store; read them back from any process.

    Use `EpisodeStore.create(path, schema)` or `EpisodeStore.open(path, mode)`, not the
    constructor."""

    def __init__(self, path, mode: str, fsync: bool = False):
        self.path = Path(path)
        self.mode = mode
        self.fsync = fsync
        self._lock_fd = None
        self._writer: CommitWriter | None = None
        attrs = json.loads((self.path / ".zattrs").read_text())
        info = attrs[ATTRS_KEY]
        self.attrs = {k: v for k, v in attrs.items() if k != ATTRS_KEY}
        self.schema = {k: (tuple(v["shape"]), v["dtype"]) for k, v in info["schema"].items()}
        self.step_schema = {**self.schema, **BOOKKEEPING}
        self.obs_keys = obs_keys_of(self.schema)
        self._arrays: dict = {}
        self._columns: dict = {}
        self._commit = read_commit(self.path)
        if mode == "a":
            self._take_lock()
            self._writer = CommitWriter(self.path, fsync)
            self._commit = self._writer.state
            self._recover()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, path, schema: dict, attrs: dict | None = None, overwrite: bool = False,
               fsync: bool = False) -> "EpisodeStore":
        """New store for steps of `schema` ({key: (shape, dtype)}, observation keys + "action")."""
        schema = normalize_schema(schema)
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{path} exists; open it with EpisodeStore.open or pass overwrite=True")
            shutil.rmtree(path)
        root = zarr.open_group(str(path), mode="w", zarr_format=2)
        info = {"version": FORMAT_VERSION,
                "schema": {k: {"shape": list(s), "dtype": d} for k, (s, d) in schema.items()}}
        root.attrs.update({**(attrs or {}), ATTRS_KEY: info})
        data, meta, final = (root.require_group(g) for g in ("data", "meta", "final_obs"))
        for key, (shape, dtype) in {**schema, **BOOKKEEPING}.items():
            cls._create_array(data, key, shape, dtype)
        for key in obs_keys_of(schema):
            cls._create_array(final, key, *schema[key])
        cls._create_array(meta, "episode_ends", (), "<i8")
        for key in EPISODE_BOOL_FIELDS:
            cls._create_array(meta, key, (), "|b1")
        for key in EPISODE_STR_FIELDS:
            # 64 episodes a chunk, replaced atomically at each begin_episode: reading the episode
            # table costs a file per 64 episodes, not one per episode
            meta.create_array(key, shape=(0,), chunks=(64,), dtype=str, compressors=None)
        create_commit_array(root, path)
        return cls(path, "a", fsync=fsync)

    @staticmethod
    def _create_array(group, key: str, shape: tuple, dtype: str) -> None:
        image = is_image(shape, dtype)  # one frame per chunk: a new file per step, never a rewrite
        rows = 1 if image else chunk_rows_for(shape, dtype)
        group.create_array(key, shape=(0,) + shape, chunks=(rows,) + shape,
                           dtype=dtype, compressors=IMAGE_COMPRESSOR if image else None, fill_value=0)

    @classmethod
    def open(cls, path, mode: str = "r", schema: dict | None = None, fsync: bool = False) -> "EpisodeStore":
        """Open an existing store ("r": read, "a": append); with `schema`, raise SchemaError
        unless it matches. Opening for append closes an episode a dead writer left open."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not cls.exists(path):
            raise FileNotFoundError(f"no robot_rl episode store at {path}")
        if schema is not None:  # check before recovery touches anything
            cls(path, "r").check_schema(schema)
        return cls(path, mode, fsync=fsync)

    @classmethod
    def open_or_create(cls, path, schema: dict, attrs: dict | None = None, fsync: bool = False):
        """Append to the store at `path` (which must have this schema), creating it if absent."""
        if cls.exists(path):
            return cls.open(path, "a", schema=schema, fsync=fsync)
        return cls.create(path, schema, attrs=attrs, fsync=fsync)

    @staticmethod
    def exists(path) -> bool:
        try:
            return ATTRS_KEY in json.loads((Path(path) / ".zattrs").read_text())
        except (OSError, ValueError):
            return False

    def check_schema(self, schema: dict) -> None:
        want = normalize_schema(schema)
        for key in sorted(set(want) | set(self.schema)):
            if key not in self.schema:
                raise SchemaError(f"store {self.path} has no key {key!r} (it stores {sorted(self.schema)})")
            if key not in want:
                raise SchemaError(f"store {self.path} also stores key {key!r} {self.schema[key]}, "
                                  f"which the given schema lacks")
            if want[key] != self.schema[key]:
                raise SchemaError(f"key {key!r}: store {self.path} has (shape, dtype) {self.schema[key]}, "
                                  f"the given schema expects {want[key]}")

    # -- locking and recovery -----------------------------------------------------------------
    def _take_lock(self) -> None:
        fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(f"{self.path} is open for writing in another process") from None
        self._lock_fd = fd

    @property
    def writer_active(self) -> bool:
        """True if some process (this one included) holds the store open for writing."""
        if self._lock_fd is not None:
            return True
        fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def _column(self, group: str, key: str) -> Column:
        return self._columns[(group, key)]

    def _recover(self) -> None:
        """Cut every array back to the commit and close an episode a dead writer left open."""
        c = self._commit
        n, e, open_start = c["n_steps"], c["n_episodes"], c["open_start"]
        groups = {"data": self.step_schema, "final_obs": self.obs_keys,
                  "meta": ("episode_ends",) + EPISODE_BOOL_FIELDS + EPISODE_STR_FIELDS}
        for group, keys in groups.items():
            for key in keys:
                self._columns[(group, key)] = Column(self.path / group / key, self.fsync)
        if open_start >= 0 and n == open_start:  # an episode begun without steps: forget it
            open_start = -1
            self._commit_now(n, e, -1)
        for (group, key), col in self._columns.items():
            rows = n if group == "data" else e + (group == "meta" and key in EPISODE_STR_FIELDS and open_start >= 0)
            col.resume(rows)
            col.set_disk_rows(rows)
        self._ends = [int(x) for x in self._read_array("meta", "episode_ends", 0, e)]
        if open_start >= 0:
            zeros = {k: np.zeros(*self.schema[k]) for k in self.obs_keys}
            self._close_episode(zeros, success=False, interrupted=True)

    # -- writing ------------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self._writer is None:
            raise PermissionError(f"{self.path} is open read-only; open it with mode='a' to write")

    def _commit_now(self, n_steps: int, n_episodes: int, open_start: int) -> None:
        self._writer.write(n_steps, n_episodes, open_start)
        self._commit = self._writer.state

    def begin_episode(self, task: str = "", source: str = "policy", robot: str = "",
                      calibration_id: str = "", **extra) -> None:
        """Open an episode; extra keyword metadata must be JSON-serialisable."""
        self._require_writable()
        if self._commit["open_start"] >= 0:
            raise RuntimeError("begin_episode called while an episode is open; call end_episode first")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        meta = {"task": str(task), "source": source, "robot": str(robot),
                "calibration_id": str(calibration_id), "extra": json.dumps(extra, sort_keys=True)}
        e = self._commit["n_episodes"]
        self._append_row("meta", meta, e, GROW_EPISODES)
        self._commit_now(self._commit["n_steps"], e, self._commit["n_steps"])

    def _append_row(self, group: str, values: dict, row: int, grow: int) -> None:
        """Write row `row` of each column in `group`, growing its on-disk length in steps."""
        for key, value in values.items():
            col = self._column(group, key)
            if col.disk_rows <= row:
                col.set_disk_rows(row + grow)
            col.append(value)

    def check_step(self, step: dict) -> dict:
        """Validated copy of a step dict (SchemaError naming the first bad key)."""
        return check_fields("step", step, self.step_schema)

    def check_obs(self, obs: dict, what: str = "observation") -> dict:
        return check_fields(what, obs, {k: self.schema[k] for k in self.obs_keys}, allow_extra=True)

    def append_step(self, step: dict) -> None:
        """Write one step; once this returns, the step survives a crash of this process."""
        self._require_writable()
        if self._commit["open_start"] < 0:
            raise RuntimeError("append_step called with no open episode; call begin_episode first")
        step = self.check_step(step)
        n = self._commit["n_steps"]
        self._append_row("data", step, n, GROW_STEPS)
        self._commit_now(n + 1, self._commit["n_episodes"], self._commit["open_start"])

    def end_episode(self, final_obs: dict, success: bool = False) -> None:
        """Close the open episode; `final_obs` is the observation after its last step."""
        self._require_writable()
        if self._commit["open_start"] < 0:
            raise RuntimeError("end_episode called with no open episode")
        final_obs = self.check_obs(final_obs, "final_obs")
        if self._commit["n_steps"] == self._commit["open_start"]:
            raise ValueError("end_episode called on an episode with no steps")
        self._close_episode(final_obs, bool(success), interrupted=False)

    def _close_episode(self, final_obs: dict, success: bool, interrupted: bool) -> None:
        n, e = self._commit["n_steps"], self._commit["n_episodes"]
        rows = [("meta", "episode_ends", n), ("meta", "success", success), ("meta", "interrupted", interrupted)]
        rows += [("final_obs", k, v) for k, v in final_obs.items()]
        for group, key, value in rows:
            col = self._column(group, key)
            if col.disk_rows <= e:
                col.set_disk_rows(e + GROW_EPISODES)
            col.append(value)
        self._column("meta", "episode_ends").set_disk_rows(e + 1)  # exact, for outside readers
        self._ends.append(n)
        self._commit_now(n, e + 1, -1)

    def close(self) -> None:
        """Trim arrays to their content and release the writer lock. An episode still open stays
        open (committed); the next open for append closes it as interrupted."""
        if self._writer is not None:
            c = self._commit
            for (group, key), col in self._columns.items():
                open_row = group == "meta" and key in EPISODE_STR_FIELDS and c["open_start"] >= 0
                col.set_disk_rows(c["n_steps"] if group == "data" else c["n_episodes"] + open_row)
                col.close()
            self._writer.close()
            self._writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the commit (readers: pick up what a writer committed since)."""
        if self._writer is None:
            self._commit = read_commit(self.path)

    @property
    def n_steps(self) -> int:
        """Committed steps, including those of an episode still open."""
        return int(self._commit["n_steps"])

    @property
    def n_episodes(self) -> int:
        """Closed episodes."""
        return int(self._commit["n_episodes"])

    @property
    def open_episode(self) -> dict | None:
        """{"start", "n_steps", "meta"} of the episode being written (or left open by a dead writer)."""
        start = self._commit["open_start"]
        if start < 0:
            return None
        return {"start": start, "n_steps": self.n_steps - start, "meta": self._str_meta(self.n_episodes)}

    def _array(self, group: str, key: str, rows: int):
        """zarr array for reading at least `rows` rows (reopened when a writer grew it)."""
        arr = self._arrays.get((group, key))
        if arr is None or arr.shape[0] < rows:
            arr = zarr.open_array(str(self.path / group / key), mode="r", zarr_format=2)
            self._arrays[(group, key)] = arr
        return arr

    def _read_array(self, group: str, key: str, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            arr = self._array(group, key, 0)
            return np.zeros((0,) + tuple(arr.shape[1:]), dtype=arr.dtype)
        return np.asarray(self._array(group, key, stop)[start:stop])

    def read(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of data/<key>, never past the committed steps."""
        if key not in self.step_schema:
            raise KeyError(f"no data key {key!r}; keys are {sorted(self.step_schema)}")
        stop = self.n_steps if stop is None else min(int(stop), self.n_steps)
        return self._read_array("data", key, int(start), stop)

    def episode_ends(self) -> np.ndarray:
        if self._writer is not None:
            return np.asarray(self._ends, dtype=np.int64)
        return self._read_array("meta", "episode_ends", 0, self.n_episodes).astype(np.int64)

    def episode_slices(self) -> list[slice]:
        ends = self.episode_ends()
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        return [slice(int(s), int(t)) for s, t in zip(starts, ends)]

    def _str_meta(self, i: int) -> dict:
        meta = {k: str(self._read_array("meta", k, i, i + 1)[0]) for k in EPISODE_STR_FIELDS}
        meta.update(json.loads(meta.pop("extra") or "{}"))
        return meta

    def episode_table(self) -> dict:
        """Per-episode metadata as arrays of length n_episodes (plus start, end, length)."""
        e = self.n_episodes
        ends = self.episode_ends()
        table = {"start": np.concatenate([[0], ends[:-1]]).astype(np.int64), "end": ends}
        table["length"] = table["end"] - table["start"]
        for key in EPISODE_BOOL_FIELDS:
            table[key] = self._read_array("meta", key, 0, e).astype(bool)
        for key in EPISODE_STR_FIELDS:
            table[key] = np.array([str(v) for v in self._read_array("meta", key, 0, e)], dtype=str)
        table["extra"] = [json.loads(s or "{}") for s in table["extra"]]
        return table

    def episode_meta(self, i: int) -> dict:
        i = self._check_episode_index(i)
        sl = self.episode_slices()[i]
        meta = {"index": i, "start": sl.start, "end": sl.stop, "length": sl.stop - sl.start}
        for key in EPISODE_BOOL_FIELDS:
            meta[key] = bool(self._read_array("meta", key, i, i + 1)[0])
        meta.update(self._str_meta(i))
        return meta

    def final_obs(self, i: int) -> dict:
        i = self._check_episode_index(i)
        return {k: self.read_final_obs(k, i, i + 1)[0] for k in self.obs_keys}

    def read_final_obs(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """final_obs/<key> of closed episodes [start, stop)."""
        if key not in self.obs_keys:
            raise KeyError(f"no observation key {key!r}; keys are {list(self.obs_keys)}")
        stop = self.n_episodes if stop is None else min(int(stop), self.n_episodes)
        return self._read_array("final_obs", key, int(start), stop)

    def episode(self, i: int) -> dict:
        """{key: (T, ...) for every step key, "final_obs": {key: ...}, "meta": {...}}."""
        i = self._check_episode_index(i)
        sl = self.episode_slices()[i]
        out = {k: self.read(k, sl.start, sl.stop) for k in self.step_schema}
        out["final_obs"] = self.final_obs(i)
        out["meta"] = self.episode_meta(i)
        return out

    def _check_episode_index(self, i: int) -> int:
        n = self.n_episodes
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"episode {i} out of range: the store has {n} closed episode(s)")
        return j

    def __repr__(self) -> str:
        return (f"EpisodeStore({str(self.path)!r}, mode={self.mode!r}, episodes={self.n_episodes}, "
                f"steps={self.n_steps})")
