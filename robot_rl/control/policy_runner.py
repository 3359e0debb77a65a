"""Runs a deployed ONNX actor on one CPU thread and feeds its action chunks out one per tick.

The ONNX graph is the contract with the learner: one input per observation key (batch first),
one output "actions" (B, H, A) in [-1, 1]. Shapes are read from the graph itself, so an actor
never needs to be told what a policy expects; a policy that does not fit the robot's action
dimension, or that returns non-finite values, is refused and the last good one stays. A policy is
run once on probe observations when it is loaded: one with non-finite weights (a diverged or
corrupted export that still parses) answers with NaN there and is never swapped in.
"""
from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort

from robot_rl.spec import ObsSpec


class PolicyError(ValueError):
    pass


class OnnxPolicy:
    def __init__(self, onnx_bytes: bytes, version: int, action_dim: int, sha256: str | None = None):
        """sha256: the bytes' hash when the caller has verified it already (codec.decode_policy
        checks the one in the message), so the blob is hashed once on this side."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  onnxruntime raises several types for bad models
            raise PolicyError(f"onnxruntime cannot load the policy: {e}") from None
        self.version = int(version)
        self.sha256 = sha256 or hashlib.sha256(onnx_bytes).hexdigest()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        shapes, dtypes = {}, {}
        for i in self.session.get_inputs():
            shapes[i.name] = tuple(int(d) for d in i.shape[1:])
            dtypes[i.name] = "|u1" if "uint8" in i.type else "<f4"
        self.obs_spec = ObsSpec(shapes, dtypes)
        outs = {o.name: o for o in self.session.get_outputs()}
        if "actions" not in outs:
            raise PolicyError(f"policy has no 'actions' output (has {sorted(outs)})")
        shape = outs["actions"].shape
        if len(shape) != 3 or not isinstance(shape[2], int) or shape[2] != action_dim:
            raise PolicyError(f"policy 'actions' output has shape {shape}, expected (B, H, {action_dim})")
        self.chunk = int(shape[1]) if isinstance(shape[1], int) else 1
        self.action_dim = action_dim
        self._probe()

    def _probe(self) -> None:
        """Zeros and one fixed random observation: a finite answer to both, or PolicyError."""
        rng = np.random.default_rng(0)
        for name in ("zeros", "random"):
            feed = {}
            for k, shape in self.obs_spec.shapes.items():
                if self.obs_spec.dtypes[k] == "|u1":
                    v = np.zeros(shape, np.uint8) if name == "zeros" else rng.integers(0, 256, shape, dtype=np.uint8)
                else:
                    v = np.zeros(shape, np.float32) if name == "zeros" else rng.standard_normal(shape).astype(np.float32)
                feed[k] = v[None]
            try:
                (actions,) = self.session.run(["actions"], feed)
            except Exception as e:  # noqa: BLE001  onnxruntime raises several types
                raise PolicyError(f"policy fails on a probe observation: {e}") from None
            if not np.isfinite(actions).all():
                raise PolicyError(f"policy answers a probe observation ({name}) with non-finite actions "
                                  "(non-finite weights?)")

    def __call__(self, obs: dict) -> np.ndarray:
        """obs: unbatched dict -> (H, A) float32 in [-1, 1]."""
        feed = {}
        for k, shape in self.obs_spec.shapes.items():
            if k not in obs:
                raise PolicyError(f"policy needs observation {k!r}")
            v = np.asarray(obs[k], dtype=np.uint8 if self.obs_spec.dtypes[k] == "|u1" else np.float32)
            if v.shape != shape:
                raise PolicyError(f"observation {k!r} has shape {v.shape}, policy expects {shape}")
            feed[k] = v[None]
        (actions,) = self.session.run(["actions"], feed)
        actions = np.asarray(actions[0], np.float32)
        if not np.isfinite(actions).all():
            raise PolicyError("policy returned non-finite actions")
        return np.clip(actions, -1.0, 1.0)


class ChunkQueue:
    """Executes an action chunk open loop, one action per tick, then asks for the next chunk."""

    def __init__(self):
        self._queue: list[np.ndarray] = []

    def next(self, plan) -> np.ndarray:
        """plan() -> (H, A) is called only when the queue is empty."""
        if not self._queue:
            self._queue = list(plan())
        return self._queue.pop(0)

    def clear(self) -> None:
        self._queue = []
