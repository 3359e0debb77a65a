"""Data-parallel learner updates on this machine: updates/s of one process against N processes
(`robot-rl learner --nproc N`: robot_rl/training/ddp.py), the same global batch each update.
Rows: 1 process with 1 torch thread, 1 process with N threads (the other way to use N cores),
N processes with 1 thread each. The batch goes through DistributedUpdater.update as the
learner's does (cut into shards, sent to the workers over their pipes), so the figure includes
that cost.

    PYTHONPATH=. python bench/bench_ddp.py [--nproc 2] [--batch 256] [--updates 60] [--cameras 0]

Medians and ratios only: absolute times on a shared CPU say little (DEVELOPERS.md).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from robot_rl.benchinfo import machine_info, write_results
from robot_rl.learn import make_agent
from robot_rl.learn.synthetic import STATE_SPEC, camera_spec, random_batch
from robot_rl.training.ddp import spawn_data_parallel

ACTION_DIM = 4


def timed_updates(updater, batch, n: int) -> float:
    """Median seconds of `n` updates (after one warm-up)."""
    updater.update(batch)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        updater.update(batch)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--cameras", type=int, default=0, help="0: state only; 1 or 2: 64 px cameras")
    ap.add_argument("--out", default="bench/out/bench_ddp.json")
    args = ap.parse_args()
    spec = STATE_SPEC if not args.cameras else camera_spec(("front", "wrist")[: args.cameras], 64)
    cfg = {"actor_hidden": [128, 128], "critic_hidden": [128, 128], "n_critics": 5}  # the learner's CPU size
    batch = random_batch(spec, args.batch, 4, ACTION_DIM)
    rows = []
    for label, threads, nproc in (("1 process, 1 thread", 1, 1), (f"1 process, {args.nproc} threads", args.nproc, 1),
                                  (f"{args.nproc} processes, 1 thread each", 1, args.nproc)):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        agent = make_agent("flow", spec, ACTION_DIM, cfg, device="cpu")
        agent.fit_obs_normalizer({k: batch["obs"][k] for k in agent.nets["encoder"].vector_keys})
        if nproc == 1:
            median = timed_updates(agent, batch, args.updates)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                updater = spawn_data_parallel(agent, nproc, tmp, threads=1)
                try:
                    median = timed_updates(updater, batch, args.updates)
                finally:
                    updater.close()
        rows.append({"setup": label, "threads": threads, "nproc": nproc, "median_s": median,
                     "updates_per_s": 1.0 / median})
    base = rows[0]["median_s"]
    obs = "state" if not args.cameras else f"{args.cameras} x 64 px camera(s)"
    print(f"flow, {obs}, global batch {args.batch}, 128x128 nets, 5 critics, {args.updates} updates each")
    print("| setup | median update | updates/s | vs 1 process, 1 thread |")
    print("|---|---|---|---|")
    for r in rows:
        r["speedup"] = base / r["median_s"]
        print(f"| {r['setup']} | {1e3 * r['median_s']:.1f} ms | {r['updates_per_s']:.1f} | {r['speedup']:.2f}x |")
    write_results(args.out, machine_info(args=vars(args)), rows)


if __name__ == "__main__":
    main()
