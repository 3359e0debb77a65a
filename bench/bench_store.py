"""Store and replay figures: compression, append throughput, sample throughput.

    PYTHONPATH=. python bench/bench_store.py [--quick]

Prints medians; writes bench/out/bench_store.json. Images are synthetic 128x128 scenes
(robot_rl.data.synthetic.scene_image): "render" = clean, "camera" = with sensor-like noise.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np

from robot_rl.data.replay import MixedReplay, Prefetcher, to_torch
from robot_rl.data.store import EpisodeStore
from robot_rl.data.synthetic import make_schema, obs_at, scene_image, step_at

OUT = Path(__file__).resolve().parent / "out"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_compression(n_frames: int) -> dict:
    codecs = {
        "none": None,
        "blosc-lz4-5": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE),
        "blosc-zstd-1 (default)": numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.NOSHUFFLE),
        "blosc-zstd-3": numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.NOSHUFFLE),
        "blosc-zstd-5": numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE),
    }
    out = {}
    for kind, noise in (("render", 0.0), ("camera", 2.0)):
        frames = [scene_image(i, 128, noise=noise) for i in range(n_frames)]
        raw = sum(f.nbytes for f in frames)
        for name, codec in codecs.items():
            if codec is None:
                continue
            enc = [codec.encode(f) for f in frames]
            size = sum(len(e) for e in enc)
            t_enc = median_time(lambda: [codec.encode(f) for f in frames], 3) / n_frames
            t_dec = median_time(lambda: [codec.decode(e) for e in enc], 3) / n_frames
            out[f"{kind}/{name}"] = {"ratio": raw / size, "encode_ms": 1e3 * t_enc, "decode_ms": 1e3 * t_dec}
    return out


def bench_append(root: Path, n_steps: int, cameras, fsync: bool = False) -> dict:
    schema = make_schema(cameras=cameras, image_size=128)
    steps = [step_at(schema, i, realistic_images=True) for i in range(min(n_steps, 200))]
    final = obs_at(schema, 0, realistic_images=True)
    path = root / f"append_{len(cameras)}cam_{int(fsync)}.zarr"
    lat = []
    with EpisodeStore.create(path, schema, overwrite=True, fsync=fsync) as s:
        t0 = time.perf_counter()
        for i in range(n_steps):
            if i % 100 == 0:
                if i:
                    s.end_episode(final, success=True)
                s.begin_episode(task="bench", source="policy")
            t = time.perf_counter()
            s.append_step(steps[i % len(steps)])
            lat.append(time.perf_counter() - t)
        s.end_episode(final)
        total = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    lat = np.array(lat) * 1e3
    return {"steps_per_s": n_steps / total, "append_ms_p50": float(np.percentile(lat, 50)),
            "append_ms_p99": float(np.percentile(lat, 99)), "bytes_per_step": disk / n_steps}


def bench_sample(n_steps: int, cameras, chunk: int, batches: int, device=None) -> dict:
    schema = make_schema(cameras=cameras, image_size=128)
    mix = MixedReplay.create(schema, capacity=n_steps + n_steps // 50 + 8, chunk=chunk, gamma=0.99, device=device)
    frames = {c: [scene_image(i, 128, seed=j) for i in range(64)] for j, c in enumerate(cameras)}
    for i in range(n_steps):
        step = step_at(schema, i, intervened=(i // 50) % 4 == 0, realistic_images=False)
        for c in cameras:
            step[c] = frames[c][i % 64]
        mix.add_step(step, demo=i < n_steps // 10)
        if i % 100 == 99 or i == n_steps // 10 - 1:
            mix.end_episode(obs_at(schema, i))
    rng = np.random.default_rng(0)
    mix.sample(256, rng)
    if device is not None and str(device).startswith("cuda"):
        import torch

        def sample_synced():
            mix.sample(256, rng)
            torch.cuda.synchronize()

        t = median_time(sample_synced, batches)
        return {"batches_per_s": 1.0 / t, "sample_ms": 1e3 * t}
    t = median_time(lambda: mix.sample(256, rng), batches)
    tt = median_time(lambda: to_torch(mix.sample(256, rng), "cpu"), max(3, batches // 3))
    # learner-side wait per batch with a background prefetch thread (the rest of the time the
    # learner would be computing; here it does nothing, so this is the worst case)
    with Prefetcher(lambda: mix.sample(256, rng), depth=4) as pf:
        time.sleep(0.5)
        waits = []
        for _ in range(3):
            t0 = time.perf_counter()
            next(pf)
            waits.append(time.perf_counter() - t0)
    # throughput of 1 vs 2 prefetch threads, consumed as fast as they come
    thr = {}
    for threads in (1, 2):
        with Prefetcher(lambda: mix.sample(256, rng), depth=4, threads=threads) as pf:
            next(pf)
            n = max(5, batches)
            t0 = time.perf_counter()
            for _ in range(n):
                next(pf)
            thr[threads] = n / (time.perf_counter() - t0)
    return {"batches_per_s": 1.0 / t, "sample_ms": 1e3 * t, "sample_plus_to_torch_ms": 1e3 * tt,
            "prefetched_wait_ms_first3": [round(1e3 * w, 3) for w in waits],
            "prefetch_batches_per_s_1_thread": thr[1], "prefetch_batches_per_s_2_threads": thr[2]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    q = args.quick
    results = {"machine": f"{os.cpu_count()} CPU cores, no GPU" if not torch.cuda.is_available() else "cuda"}
    print("== image compression (128x128x3 uint8, per frame) ==")
    results["compression"] = bench_compression(8 if q else 64)
    for name, r in results["compression"].items():
        print(f"{name:32s} ratio {r['ratio']:5.2f}  encode {r['encode_ms']:.3f} ms  decode {r['decode_ms']:.3f} ms")

    print("== append (one process, step = obs + action + bookkeeping, commit per step) ==")
    root = Path(tempfile.mkdtemp(prefix="bench_store_"))
    try:
        results["append"] = {}
        for label, cams, n, fs in (("state-only", (), 500 if q else 5000, False),
                                   ("2 cameras 128x128", ("front", "wrist"), 200 if q else 2000, False),
                                   ("2 cameras 128x128, fsync", ("front", "wrist"), 50 if q else 300, True)):
            r = bench_append(root, n, cams, fsync=fs)
            results["append"][label] = r
            print(f"{label:28s} {r['steps_per_s']:8.0f} steps/s   append p50 {r['append_ms_p50']:.3f} ms  "
                  f"p99 {r['append_ms_p99']:.3f} ms   {r['bytes_per_step'] / 1e3:.1f} kB/step on disk")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("== sample (MixedReplay 50/50, batch 256) ==")
    results["sample"] = {}
    for label, cams, n, chunk in (("state-only, H=1", (), 2000 if q else 50000, 1),
                                  ("state-only, H=4", (), 2000 if q else 50000, 4),
                                  ("2 cameras 128x128, H=1", ("front", "wrist"), 1000 if q else 10000, 1),
                                  ("2 cameras 128x128, H=4", ("front", "wrist"), 1000 if q else 10000, 4)):
        r = bench_sample(n, cams, chunk, batches=5 if q else 30)
        results["sample"][label] = r
        print(f"{label:28s} {r['batches_per_s']:8.1f} batches/s  ({r['sample_ms']:.2f} ms; +to_torch "
              f"{r['sample_plus_to_torch_ms']:.2f} ms; prefetched wait {r['prefetched_wait_ms_first3']} ms; "
              f"prefetch 1 thread {r['prefetch_batches_per_s_1_thread']:.1f}/s, "
              f"2 threads {r['prefetch_batches_per_s_2_threads']:.1f}/s)")
    if torch.cuda.is_available():
        print("== sample from a GPU-resident MixedReplay (device='cuda'), batch 256 ==")
        for label, cams, n, chunk in (("2 cameras 128x128, H=4, cuda", ("front", "wrist"), 1000 if q else 20000, 4),):
            r = bench_sample(n, cams, chunk, batches=5 if q else 50, device="cuda")
            results["sample"][label] = r
            print(f"{label:28s} {r['batches_per_s']:8.1f} batches/s  ({r['sample_ms']:.2f} ms)")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_store.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT / 'bench_store.json'}")


if __name__ == "__main__":
    main()
