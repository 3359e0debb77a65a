"""Learner throughput: gradient updates/s at batch 256 (default AgentConfig), state-only and
with two 128x128 cameras. Batches are pre-built tensors on the device, so the figure is the
update itself (sampling happens off the update path in the learner).

    PYTHONPATH=. python bench/bench_learner.py --quick
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from robot_rl.benchinfo import machine_info, write_results
from robot_rl.learn import make_agent
from robot_rl.learn.batch import batch_to_tensors
from robot_rl.learn.synthetic import STATE_SPEC, camera_spec, random_batch


def measure(kind, spec, batch_size, n_updates, device, cfg_over) -> dict:
    agent = make_agent(kind, spec, 4, dict(cfg_over), device=device)
    c = agent.cfg
    batch = batch_to_tensors(spec, random_batch(spec, batch_size, c.chunk_len, 4), c.chunk_len, 4, agent.device)
    agent.update(batch)  # warm-up (allocator, compile)
    times = []
    for _ in range(n_updates):
        t = time.perf_counter()
        agent.update(batch)
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return {"kind": kind, "obs": "+".join(spec.shapes), "batch": batch_size, "n_critics": c.n_critics,
            "updates": n_updates, "median_s": med, "updates_per_s": 1.0 / med}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few updates (a smoke run)")
    ap.add_argument("--kinds", default="flow,sac")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile on CUDA")
    ap.add_argument("--out", default="bench/out/bench_learner.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_state, n_img = (5, 2) if args.quick else (30, 5)
    cfg = {"compile": args.compile}
    rows = []
    for kind in args.kinds.split(","):
        for spec, n in ((STATE_SPEC, n_state), (camera_spec(("front", "wrist"), 128), n_img)):
            r = measure(kind, spec, args.batch, n, args.device, cfg)
            rows.append(r)
            print(f"{r['kind']:5s} {r['obs']:22s} batch {r['batch']}  {r['n_critics']} critics  "
                  f"{r['updates_per_s']:8.2f} updates/s  (median {1000 * r['median_s']:.1f} ms over {n})", flush=True)
    machine = machine_info(threads=args.threads, torch=torch.__version__,
                           cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    write_results(args.out, machine, rows)


if __name__ == "__main__":
    main()
