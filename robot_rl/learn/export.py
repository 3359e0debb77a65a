"""ONNX export of the deployed actor: encoder + one-step policy (or SAC mean, or the unrolled
flow sampler for "bc") as one graph.

Inputs: one per observation key, named like the obs dict, batch dimension dynamic; images are
uint8 (B, H, W, 3) and normalised inside the graph. Output: "actions" (B, H, A) in [-1, 1].
metadata_props: obs_spec (JSON of ObsSpec.to_dict()), action_dim, chunk_len, policy_version,
kind, noise ("zero": the flow noise input is fixed to 0), obs_stats (obs_stats(): the state
normaliser's statistics, which the actor's out-of-distribution trip compares observations with).
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import warnings

import numpy as np
import onnx
import torch
from torch import nn

from robot_rl.learn.synthetic import random_obs

OPSET = 17


class DeployedActor(nn.Module):
    def __init__(self, agent):
        super().__init__()
        self.keys = tuple(agent.spec.shapes)
        enc_name = "actor_encoder" if "actor_encoder" in agent.nets else "encoder"
        self.encoder = agent.nets[enc_name]
        self.kind, self.flat_dim, self.flow_steps = agent.kind, agent.flat_dim, agent.cfg.flow_steps
        # flow and diffusion both ship the distilled one-step actor mu(s, z=0).
        self.policy = agent.nets[{"flow": "onestep", "diffusion": "onestep", "bc": "flow", "sac": "actor"}[agent.kind]]

    def forward(self, *obs):
        feats = self.encoder(dict(zip(self.keys, obs)))
        if self.kind == "sac":
            return self.policy.mean_action(feats)
        noise = torch.zeros_like(feats[:, :1]).expand(-1, self.flat_dim)
        if self.kind in ("flow", "diffusion"):
            return self.policy(feats, noise)
        return self.policy.sample(feats, noise, self.flow_steps)


def export_actor_bytes(agent, version: int, verify: bool = True) -> tuple[bytes, str]:
    """The deployed actor as (ONNX bytes, sha256), built and checked in memory: the learner
    sends these bytes as they are, so nothing touches the disk and the hash is taken once."""
    # Trace a CPU fp32 copy: the learner may sit on a GPU (TF32 convs, bf16) mid-training.
    module = copy.deepcopy(DeployedActor(agent)).cpu().float().eval()
    inputs = random_obs(agent.spec, 2, np.random.default_rng(0))
    args = tuple(torch.as_tensor(inputs[k]) for k in module.keys)
    traced = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module, args, traced,
            input_names=list(module.keys),
            output_names=["actions"],
            dynamic_axes={**{k: {0: "batch"} for k in module.keys}, "actions": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_model_from_string(traced.getvalue())
    meta = {
        "obs_spec": json.dumps(agent.spec.to_dict()),
        "action_dim": str(agent.action_dim),
        "chunk_len": str(agent.cfg.chunk_len),
        "policy_version": str(int(version)),
        "kind": agent.kind,
        "noise": "zero",
    }
    stats = obs_stats(agent)
    if stats is not None:
        meta["obs_stats"] = json.dumps(stats)
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if verify:
        with torch.no_grad():
            expected = module(*args).numpy()
        err = float(np.abs(run_onnx(data, inputs) - expected).max())
        if not err < 1e-4:
            raise RuntimeError(f"exported actor differs from PyTorch by {err:.2e} (limit 1e-4)")
    return data, hashlib.sha256(data).hexdigest()


def export_actor(agent, path, version: int, verify: bool = True) -> str:
    """export_actor_bytes written to `path` (atomically: write then rename); returns the sha256."""
    data, sha = export_actor_bytes(agent, version, verify)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return sha


def run_onnx(path_or_session, obs: dict, threads: int = 1) -> np.ndarray:
    """Run an exported actor (a path, the ONNX bytes, or a session) on a batched obs dict with
    onnxruntime (CPU)."""
    import onnxruntime as ort

    sess = path_or_session
    if not isinstance(sess, ort.InferenceSession):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        model = sess if isinstance(sess, bytes) else os.fspath(sess)
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.asarray(obs[i.name]) for i in sess.get_inputs()}
    return sess.run(["actions"], feeds)[0]


def read_metadata(path) -> dict:
    """metadata_props of an exported actor as a dict (obs_spec and obs_stats decoded from JSON)."""
    model = onnx.load(os.fspath(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    for key in ("obs_spec", "obs_stats"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


def obs_stats(agent) -> dict | None:
    """{key: {"mean": [...], "std": [...]}} for the state vectors the deployed actor's normaliser
    was fitted on (robot_rl.control.guard reads them); None before it is fitted (its identity
    statistics describe no data) or when the policy sees no state vectors."""
    enc = agent.nets["actor_encoder" if "actor_encoder" in agent.nets else "encoder"]
    if not bool(enc.normalizer_fitted) or not enc.vector_keys:
        return None
    mean, std = enc.vec_mean.detach().float().cpu().numpy(), enc.vec_std.detach().float().cpu().numpy()
    out, i = {}, 0
    for k in enc.vector_keys:  # the encoder concatenates them in this order
        d = int(agent.spec.shapes[k][0])
        out[k] = {"mean": mean[i:i + d].tolist(), "std": std[i:i + d].tolist()}
        i += d
    return out
