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
  .zattrs               user attrs, "robot_rl_store" (format version, schema) and
                        "robot_rl_commit" {"n_steps", "n_episodes", "open_episode"}: the commit,
                        the only source of truth about what is stored.

Crash safety: an append writes the data chunks first (each chunk file replaced atomically, so
committed rows are never at risk) and then atomically replaces the root .zattrs with the new
commit. Opening trusts only
the committed counts: rows past them are discarded, and an episode left open by a dead writer
is closed and marked `interrupted` (its final_obs rows are zeros, so replay drops its last
step). While a writer appends, `data/*` arrays may be longer than the committed count (they grow
in blocks); they are trimmed to exactly `episode_ends[-1]` rows at every episode end and close.
One writer at a time (an flock on the root .zgroup, a file never rewritten); any number of
readers in other processes. The store adds no files of its own, so zarr lists it cleanly.
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

from robot_rl.data.columns import PARTIAL_SUFFIX, Column, atomic_write, chunk_rows_for
from robot_rl.data.schema import (BOOKKEEPING, SOURCES, SchemaError, check_fields, is_image,
                                  normalize_schema, obs_keys_of)

FORMAT_VERSION = 1
ATTRS_KEY = "robot_rl_store"
COMMIT_KEY = "robot_rl_commit"
ATTRS_FILE = ".zattrs"
LOCK_FILE = ".zgroup"
GROW_ROWS = 1024  # data arrays grow their declared length in blocks, not per step

EPISODE_STR_FIELDS = ("task", "source", "robot", "calibration_id")
EPISODE_BOOL_FIELDS = ("success", "interrupted")

# Compression, measured by bench/bench_store.py (docs/store.md): images with zstd at a low level
# (better ratio than lz4 on rendered frames at a similar speed); low-dim with lz4 + byte shuffle.
IMAGE_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.NOSHUFFLE)
VECTOR_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)


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
        self._attrs = self._read_attrs()
        info = self._attrs[ATTRS_KEY]
        self.schema = {k: (tuple(v["shape"]), v["dtype"]) for k, v in info["schema"].items()}
        self.step_schema = {**self.schema, **BOOKKEEPING}
        self.obs_keys = obs_keys_of(self.schema)
        self._arrays: dict = {}
        self._columns: dict = {}
        self._commit = self._attrs[COMMIT_KEY]
        if mode == "a":
            self._take_lock()
            self._recover()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, path, schema: dict, attrs: dict | None = None, overwrite: bool = False,
               fsync: bool = False) -> "EpisodeStore":
        schema = normalize_schema(schema)
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{path} exists; open it with EpisodeStore.open or pass overwrite=True")
            shutil.rmtree(path)
        root = zarr.open_group(str(path), mode="w", zarr_format=2)
        info = {"version": FORMAT_VERSION,
                "schema": {k: {"shape": list(s), "dtype": d} for k, (s, d) in schema.items()}}
        commit = {"n_steps": 0, "n_episodes": 0, "open_episode": None}
        root.attrs.update({**(attrs or {}), ATTRS_KEY: info, COMMIT_KEY: commit})
        data, meta, final = (root.require_group(g) for g in ("data", "meta", "final_obs"))
        for key, (shape, dtype) in {**schema, **BOOKKEEPING}.items():
            cls._create_array(data, key, shape, dtype)
        for key in obs_keys_of(schema):
            cls._create_array(final, key, *schema[key])
        meta.create_array("episode_ends", shape=(0,), chunks=(4096,), dtype="<i8", compressors=None,
                          fill_value=0)
        for key in EPISODE_BOOL_FIELDS:
            meta.create_array(key, shape=(0,), chunks=(4096,), dtype="|b1", fill_value=False)
        for key in EPISODE_STR_FIELDS + ("extra",):
            meta.create_array(key, shape=(0,), chunks=(1024,), dtype=str)
        return cls(path, "a", fsync=fsync)

    @classmethod
    def open(cls, path, mode: str = "r", schema: dict | None = None, fsync: bool = False) -> "EpisodeStore":
        """Open an existing store; with `schema`, raise SchemaError unless it matches."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not cls.exists(path):
            raise FileNotFoundError(f"no robot_rl episode store at {path}")
        store = cls(path, mode, fsync=fsync)
        if schema is not None:
            try:
                store.check_schema(schema)
            except SchemaError:
                store.close()
                raise
        return store

    @classmethod
    def open_or_create(cls, path, schema: dict, attrs: dict | None = None, fsync: bool = False):
        """Append to the store at `path` (which must have this schema), creating it if absent."""
        if cls.exists(path):
            return cls.open(path, "a", schema=schema, fsync=fsync)
        return cls.create(path, schema, attrs=attrs, fsync=fsync)

    @staticmethod
    def exists(path) -> bool:
        try:
            return ATTRS_KEY in json.loads((Path(path) / ATTRS_FILE).read_text())
        except (OSError, ValueError):
            return False

    @staticmethod
    def _create_array(group, key: str, shape: tuple, dtype: str) -> None:
        image = is_image(shape, dtype)
        group.create_array(
            key, shape=(0,) + shape, chunks=(chunk_rows_for(shape, dtype),) + shape, dtype=dtype,
            compressors=IMAGE_COMPRESSOR if image else VECTOR_COMPRESSOR, fill_value=0)

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
                                  f"given schema expects {want[key]}")

    # -- commit and recovery ------------------------------------------------------------------
    def _read_attrs(self) -> dict:
        try:
            attrs = json.loads((self.path / ATTRS_FILE).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.path} is not a robot_rl episode store ({e})") from e
        if ATTRS_KEY not in attrs or COMMIT_KEY not in attrs:
            raise ValueError(f"{self.path} is not a robot_rl episode store (no {ATTRS_KEY!r} attrs)")
        return attrs

    def _write_commit(self) -> None:
        self._attrs[COMMIT_KEY] = self._commit
        atomic_write(self.path / ATTRS_FILE, json.dumps(self._attrs).encode(), self.fsync)

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
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def _recover(self) -> None:
        """Bring the on-disk arrays back to the committed counts and close a dead writer's episode."""
        for p in self.path.rglob(f"*{PARTIAL_SUFFIX}"):
            p.unlink(missing_ok=True)
        n, e = self._commit["n_steps"], self._commit["n_episodes"]
        for key in self.step_schema:
            self._columns[("data", key)] = Column(self.path / "data" / key, self.fsync)
        for key in self.obs_keys:
            self._columns[("final_obs", key)] = Column(self.path / "final_obs" / key, self.fsync)
        for key in ("episode_ends",) + EPISODE_BOOL_FIELDS + EPISODE_STR_FIELDS + ("extra",):
            self._columns[("meta", key)] = Column(self.path / "meta" / key, self.fsync)
        for (group, _), col in self._columns.items():
            rows = n if group == "data" else e
            col.resume(rows)
            col.set_disk_rows(rows)
        self._ends = [int(x) for x in self._read_array("meta", "episode_ends", 0, e)]
        open_ep = self._commit["open_episode"]
        if open_ep is not None:
            if n > open_ep["start"]:
                zeros = {k: np.zeros(s, d) for k, (s, d) in self.schema.items() if k != "action"}
                self._close_episode(zeros, success=False, interrupted=True)
            else:
                self._commit["open_episode"] = None
                self._write_commit()

    # -- writing ------------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self.mode != "a":
            raise PermissionError(f"{self.path} is open read-only; open it with mode='a' to write")

    def begin_episode(self, task: str = "", source: str = "policy", robot: str = "",
                      calibration_id: str = "", **extra) -> None:
        self._require_writable()
        if self._commit["open_episode"] is not None:
            raise RuntimeError("begin_episode called while an episode is open; call end_episode first")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        meta = {"task": str(task), "source": source, "robot": str(robot),
                "calibration_id": str(calibration_id), "extra": json.dumps(extra, sort_keys=True)}
        self._commit["open_episode"] = {"start": self._commit["n_steps"], "meta": meta}
        self._write_commit()

    def check_step(self, step: dict) -> dict:
        """Validated copy of a step dict (SchemaError naming the first bad key)."""
        return check_fields("step", step, self.step_schema)

    def check_obs(self, obs: dict, what: str = "observation") -> dict:
        return check_fields(what, obs, {k: self.schema[k] for k in self.obs_keys}, allow_extra=True)

    def append_step(self, step: dict) -> None:
        """Write one step; when this returns the step survives a crash of this process."""
        self._require_writable()
        if self._commit["open_episode"] is None:
            raise RuntimeError("append_step called with no open episode; call begin_episode first")
        step = self.check_step(step)
        n = self._commit["n_steps"]
        for key, value in step.items():
            col = self._columns[("data", key)]
            if col.disk_rows <= n:
                col.set_disk_rows(n + GROW_ROWS)
            col.append(value)
        self._commit["n_steps"] = n + 1
        self._write_commit()

    def end_episode(self, final_obs: dict, success: bool = False) -> None:
        """Close the open episode; `final_obs` is the observation after its last step."""
        self._require_writable()
        open_ep = self._commit["open_episode"]
        if open_ep is None:
            raise RuntimeError("end_episode called with no open episode")
        final_obs = self.check_obs(final_obs, "final_obs")
        if self._commit["n_steps"] == open_ep["start"]:
            raise ValueError("end_episode called on an episode with no steps")
        self._close_episode(final_obs, bool(success), interrupted=False)

    def _close_episode(self, final_obs: dict, success: bool, interrupted: bool) -> None:
        n, e = self._commit["n_steps"], self._commit["n_episodes"]
        meta = self._commit["open_episode"]["meta"]
        row = {"episode_ends": n, "success": success, "interrupted": interrupted, **meta}
        for key, value in row.items():
            self._columns[("meta", key)].append(value)
        for key, value in final_obs.items():
            self._columns[("final_obs", key)].append(value)
        for (group, _), col in self._columns.items():
            col.set_disk_rows(n if group == "data" else e + 1)
        self._ends.append(n)
        self._commit.update(n_episodes=e + 1, open_episode=None)
        self._write_commit()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- reading ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the commit (readers: pick up what a writer committed since)."""
        if self.mode == "r":
            self._attrs = self._read_attrs()
            self._commit = self._attrs[COMMIT_KEY]

    @property
    def attrs(self) -> dict:
        """The user attrs given to create()."""
        return {k: v for k, v in self._attrs.items() if k not in (ATTRS_KEY, COMMIT_KEY)}

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
        """{"start": first step, "n_steps": steps so far, "meta": ...} of the episode being written."""
        ep = self._commit["open_episode"]
        if ep is None:
            return None
        return {"start": ep["start"], "n_steps": self.n_steps - ep["start"], "meta": dict(ep["meta"])}

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
        if self.mode == "a":
            return np.asarray(self._ends, dtype=np.int64)
        return self._read_array("meta", "episode_ends", 0, self.n_episodes).astype(np.int64)

    def episode_slices(self) -> list[slice]:
        ends = self.episode_ends()
        starts = np.concatenate([[0], ends[:-1]])
        return [slice(int(s), int(t)) for s, t in zip(starts, ends)]

    def episode_table(self) -> dict:
        """Per-episode metadata as arrays of length n_episodes (plus start, length)."""
        e = self.n_episodes
        ends = self.episode_ends()
        table = {"start": np.concatenate([[0], ends[:-1]]).astype(np.int64), "end": ends}
        table["length"] = table["end"] - table["start"]
        for key in EPISODE_BOOL_FIELDS:
            table[key] = self._read_array("meta", key, 0, e).astype(bool)
        for key in EPISODE_STR_FIELDS:
            table[key] = np.array([str(v) for v in self._read_array("meta", key, 0, e)], dtype=str)
        table["extra"] = [json.loads(s) for s in self._read_array("meta", "extra", 0, e)]
        return table

    def episode_meta(self, i: int) -> dict:
        i = self._check_episode_index(i)
        sl = self.episode_slices()[i]
        meta = {"index": i, "start": sl.start, "end": sl.stop, "length": sl.stop - sl.start}
        for key in EPISODE_BOOL_FIELDS:
            meta[key] = bool(self._read_array("meta", key, i, i + 1)[0])
        for key in EPISODE_STR_FIELDS:
            meta[key] = str(self._read_array("meta", key, i, i + 1)[0])
        meta.update(json.loads(str(self._read_array("meta", "extra", i, i + 1)[0])))
        return meta

    def final_obs(self, i: int) -> dict:
        i = self._check_episode_index(i)
        return {k: self._read_array("final_obs", k, i, i + 1)[0] for k in self.obs_keys}

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
