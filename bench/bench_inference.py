"""Deployed-actor latency on one CPU thread: the exported one-step ONNX actor (onnxruntime,
intra_op_num_threads=1) vs the multi-step sampler in PyTorch (torch.set_num_threads(1): flow's
Euler steps, diffusion's DDIM steps) on the same single observations, state-only and with two
128x128 cameras (default AgentConfig), for each agent kind in --kinds.
Targets: ONNX p99 <= 1 ms and <= 1/10 of the multi-step sampler.

    PYTHONPATH=. python bench/bench_inference.py --quick [--kinds flow,diffusion] [--obs state]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

from robot_rl.benchinfo import machine_info, write_results
from robot_rl.learn import make_agent
from robot_rl.learn.synthetic import STATE_SPEC, camera_spec, random_obs


def latencies(fn, inputs, warmup: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(wall-clock ms, this thread's CPU ms) per call. On a shared machine the wall-clock tail
    is mostly time spent descheduled; the CPU-time tail is what an unshared core would see."""
    for x in inputs[:warmup]:
        fn(x)
    wall, cpu = [], []
    for x in inputs:
        t, c = time.perf_counter(), time.thread_time()
        fn(x)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    return np.asarray(wall) * 1e3, np.asarray(cpu) * 1e3


def stats(ms: tuple[np.ndarray, np.ndarray]) -> dict:
    wall, cpu = ms
    return {"p50_ms": float(np.percentile(wall, 50)), "p99_ms": float(np.percentile(wall, 99)),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99)),
            "n": int(wall.size)}


def bench_spec(name, spec, n, tmp, kind: str = "flow") -> dict:
    agent = make_agent(kind, spec, 4, {}, device="cpu")
    path = os.path.join(tmp, f"{kind}_{name}.onnx")
    agent.export_onnx(path, version=1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    obs = [{k: v for k, v in random_obs(spec, 1, rng).items()} for _ in range(n)]
    names = [i.name for i in sess.get_inputs()]
    onnx_ms = latencies(lambda o: sess.run(["actions"], {k: o[k] for k in names}), obs)
    multi_ms = latencies(lambda o: agent.act_multistep(o), obs)
    one_torch_ms = latencies(lambda o: agent.act(o), obs)
    steps = agent.cfg.ddim_steps if kind == "diffusion" else agent.cfg.flow_steps
    row = {"kind": kind, "obs": name, "sampler_steps": steps, "onnx_one_step": stats(onnx_ms),
           "torch_multi_step": stats(multi_ms), "torch_one_step": stats(one_torch_ms)}
    row["ratio_p99"] = row["onnx_one_step"]["p99_ms"] / row["torch_multi_step"]["p99_ms"]
    row["ratio_p50"] = row["onnx_one_step"]["p50_ms"] / row["torch_multi_step"]["p50_ms"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None, help="timed calls per variant")
    ap.add_argument("--kinds", default="flow", help="comma-separated agent kinds with a multi-step sampler "
                    "(flow, diffusion)")
    ap.add_argument("--obs", default="state,2x128px", help="observation variants: state, 2x128px")
    ap.add_argument("--out", default="bench/out/bench_inference.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.n or (200 if args.quick else 2000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {"state": STATE_SPEC, "2x128px": camera_spec(("front", "wrist"), 128)}
        for kind, name in [(k, o) for k in args.kinds.split(",") for o in args.obs.split(",")]:
            r = bench_spec(name, variants[name], n, tmp, kind)
            rows.append(r)
            o, m, t = r["onnx_one_step"], r["torch_multi_step"], r["torch_one_step"]
            print(f"{kind:9s} {name:8s} ONNX one-step p50 {o['p50_ms']:.3f} p99 {o['p99_ms']:.3f} ms "
                  f"(CPU time p99 {o['cpu_p99_ms']:.3f}) | torch {r['sampler_steps']}-step p50 {m['p50_ms']:.3f} "
                  f"p99 {m['p99_ms']:.3f} ms (CPU p99 {m['cpu_p99_ms']:.3f}) | torch one-step p50 "
                  f"{t['p50_ms']:.3f} ms | ONNX/multi-step p50 {r['ratio_p50']:.3f} p99 {r['ratio_p99']:.3f}",
                  flush=True)
    machine = machine_info(onnxruntime=ort.__version__, torch=torch.__version__)
    write_results(args.out, machine, rows)


if __name__ == "__main__":
    main()
