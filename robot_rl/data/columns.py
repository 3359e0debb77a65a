"""One appendable zarr format-2 array on local disk, written row by row without ever losing a row.

zarr-python 3 creates the arrays (so their `.zarray` metadata is zarr's own), but it costs a few
milliseconds per `arr[i] = x` call, and any rewrite-then-rename of a chunk costs 0.2-1.5 ms on
ext4 (a rename over an existing file flushes it). A Column appends a row in one of three ways,
none of which touches a byte of an already committed row:

  raw      uncompressed arrays (low-dim data): the chunk file is created once at full size and
           each row is written in place with pwrite at its offset (a few microseconds);
  per-row  arrays chunked one row per chunk (images): each row is a new chunk file;
  rewrite  anything else (per-episode strings): the last chunk is re-encoded and replaced
           atomically (temp file + os.replace), so a reader or a crash sees either the old or
           the new chunk.

A row written but not yet committed by the store may be torn by a crash; the store never trusts
such rows and `resume()` clears them. Rows are chunked along axis 0 only, C order, as the zarr v2
spec lays them out; the tests read everything back through zarr 2 and zarr 3.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numcodecs
import numpy as np

PARTIAL_SUFFIX = ".partial"


def atomic_write(path: Path | str, data, fsync: bool = False) -> None:
    """Write bytes so that `path` holds either its old or its new content, never a mix."""
    tmp = f"{path}.{os.getpid()}{PARTIAL_SUFFIX}"
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def chunk_rows_for(row_shape: tuple, dtype, target_bytes: int = 32768, max_rows: int = 4096) -> int:
    """Rows per chunk: one row when a row is large (images), else ~target_bytes per chunk
    (a power of two, so chunk boundaries line up across arrays)."""
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if row_bytes * 2 > target_bytes:
        return 1
    rows = 1 << int(np.log2(target_bytes // max(row_bytes, 1)))
    return int(min(rows, max_rows))


class Column:
    """Append-only writer for the zarr v2 array stored in directory `path`."""

    def __init__(self, path: Path | str, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        meta = json.loads((self.path / ".zarray").read_text())
        if meta.get("order", "C") != "C" or meta.get("dimension_separator", ".") != ".":
            raise ValueError(f"{self.path}: only C-order arrays with '.' separators are supported")
        self._meta = meta
        self.row_shape = tuple(meta["shape"][1:])
        self.chunk_rows = int(meta["chunks"][0])
        if tuple(meta["chunks"][1:]) != self.row_shape:
            raise ValueError(f"{self.path}: arrays must be chunked along axis 0 only")
        self.dtype = np.dtype(meta["dtype"])
        self._filters = [numcodecs.get_codec(f) for f in (meta.get("filters") or [])]
        self._compressor = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
        fill = meta.get("fill_value")
        self._fill = "" if self.dtype == object else (0 if fill is None else fill)
        self.raw = self._compressor is None and not self._filters and self.dtype != object
        self._row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._chunk_key_tail = "." + ".".join("0" for _ in self.row_shape) if self.row_shape else ""
        self.disk_rows = int(meta["shape"][0])
        self.length = 0
        self._tail: np.ndarray | None = None  # rewrite mode: the last chunk, decoded
        self._fd: int | None = None  # raw mode: open file of the last chunk
        self._fd_index = -1

    # -- chunk files --------------------------------------------------------------------------
    def _chunk_path(self, index: int) -> Path:
        return self.path / f"{index}{self._chunk_key_tail}"

    def _empty_chunk(self) -> np.ndarray:
        return np.full((self.chunk_rows,) + self.row_shape, self._fill, dtype=self.dtype)

    def _encode(self, chunk: np.ndarray):
        buf = chunk
        for f in self._filters:
            buf = f.encode(buf)
        if self._compressor is not None:
            return self._compressor.encode(buf)
        return np.ascontiguousarray(buf).tobytes()

    def _decode(self, raw: bytes) -> np.ndarray:
        buf = self._compressor.decode(raw) if self._compressor is not None else raw
        for f in reversed(self._filters):
            buf = f.decode(buf)
        if self.dtype == object:
            return np.asarray(buf, dtype=object).reshape((self.chunk_rows,) + self.row_shape)
        return np.frombuffer(buf, dtype=self.dtype).reshape((self.chunk_rows,) + self.row_shape).copy()

    def _write_new(self, path: Path, data) -> None:
        """A chunk file nobody trusts yet (its rows are uncommitted): no temp file needed."""
        with open(path, "wb") as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        if self.fsync:  # the new directory entry too, for power-loss safety
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd, self._fd_index = None, -1

    def _raw_fd(self, index: int, create: bool) -> int:
        if self._fd_index != index:
            self._close_fd()
            p = self._chunk_path(index)
            if create:
                self._write_new(p, self._empty_chunk().tobytes())
            self._fd, self._fd_index = os.open(p, os.O_RDWR), index
        return self._fd

    # -- public -------------------------------------------------------------------------------
    def resume(self, length: int) -> None:
        """Continue appending after the first `length` rows: anything past them is discarded
        (rows a killed writer wrote but never committed)."""
        self._close_fd()
        self.length = int(length)
        tail_index, keep = divmod(self.length, self.chunk_rows)
        for p in self.path.iterdir():
            head = p.name.split(".")[0]
            if p.name.endswith(PARTIAL_SUFFIX):
                p.unlink()
            elif head.isdigit() and (int(head) > tail_index or (int(head) == tail_index and keep == 0)):
                p.unlink()
        if keep == 0:
            self._tail = self._empty_chunk() if not (self.raw or self.chunk_rows == 1) else None
            return
        if self.raw:
            fd = self._raw_fd(tail_index, create=False)
            os.pwrite(fd, self._empty_chunk()[keep:].tobytes(), keep * self._row_bytes)
        else:
            self._tail = self._decode(self._chunk_path(tail_index).read_bytes())
            self._tail[keep:] = self._fill
            atomic_write(self._chunk_path(tail_index), self._encode(self._tail), self.fsync)

    def append(self, row) -> None:
        """Write one row at the end (the store commits afterwards)."""
        index, i = divmod(self.length, self.chunk_rows)
        if self.raw:
            fd = self._raw_fd(index, create=i == 0)
            os.pwrite(fd, np.ascontiguousarray(row, dtype=self.dtype).tobytes(), i * self._row_bytes)
            if self.fsync:
                os.fsync(fd)
        elif self.chunk_rows == 1:
            chunk = np.empty((1,) + self.row_shape, dtype=self.dtype)
            chunk[0] = row
            self._write_new(self._chunk_path(index), self._encode(chunk))
        else:
            if i == 0:
                self._tail = self._empty_chunk()
            self._tail[i] = row
            atomic_write(self._chunk_path(index), self._encode(self._tail), self.fsync)
        self.length += 1

    def set_disk_rows(self, rows: int) -> None:
        """Rewrite the array's declared length (its `.zarray` shape) atomically."""
        rows = int(rows)
        if rows == self.disk_rows:
            return
        self._meta["shape"][0] = rows
        atomic_write(self.path / ".zarray", json.dumps(self._meta, indent=2).encode(), self.fsync)
        self.disk_rows = rows

    def close(self) -> None:
        self._close_fd()
