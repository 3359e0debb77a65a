"""Batches to torch on the learner's device, and a background prefetcher so it never waits."""
from __future__ import annotations

import queue
import threading

import numpy as np


def to_torch(batch: dict, device="cpu") -> dict:
    """Batch of numpy arrays -> torch tensors on `device` (pinned memory + non_blocking on CUDA).

    Images stay uint8 (4x less to copy); the learner scales them on the device. Tensors already
    there (a device-resident replay's observations) pass through."""
    import torch

    device = torch.device(device)
    cuda = device.type == "cuda"

    def conv(x):
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, torch.Tensor):
            return x.to(device, non_blocking=True)
        t = torch.from_numpy(np.ascontiguousarray(x))
        if cuda:
            return t.pin_memory().to(device, non_blocking=True)
        return t if device.type == "cpu" else t.to(device)

    return conv(batch)


class Prefetcher:
    """Background threads that keep `depth` batches ready so the learner never waits.

    `sample_fn()` returns a numpy batch (e.g. lambda: replay.sample(256, rng); numpy Generators
    are thread-safe); with `device` the batches are also moved there by to_torch. `threads` > 1
    gathers several batches in parallel (numpy releases the GIL while copying images). Use as
    an iterator; close() stops it."""

    def __init__(self, sample_fn, depth: int = 2, device=None, threads: int = 1):
        self._sample_fn, self._device = sample_fn, device
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"replay-prefetch-{i}", daemon=True)
                         for i in range(max(1, int(threads)))]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._sample_fn()
                if self._device is not None:
                    batch = to_torch(batch, self._device)
            except Exception as e:  # hand the error to the consumer instead of dying silently
                batch = e
            while not self._stop.is_set():
                try:
                    self._queue.put(batch, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        item = self._queue.get()
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
