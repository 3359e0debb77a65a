"""Twin throughput: env steps per second, state-only and with cameras, single and vectorised.

    PYTHONPATH=. python bench/bench_twin.py            # full (a few minutes on a 2-core CPU)
    PYTHONPATH=. python bench/bench_twin.py --quick    # a smoke run (~1 min)
    PYTHONPATH=. python bench/bench_twin.py --cameras-png docs/img/cameras.png   # only the figure
    PYTHONPATH=. python bench/bench_twin.py --experts 100   # only scripted-expert success rates

Prints one line per configuration (median over repeats of steps/s) and writes
bench/out/bench_twin.json. Actions are seeded random ones (episodes reset on truncation), so
contacts and resets are part of the cost. Rendering uses MUJOCO_GL=egl: Mesa llvmpipe on a CPU,
the NVIDIA driver where there is one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from robot_rl.twin import make_env  # noqa: E402


def gl_renderer() -> str:
    """The OpenGL renderer string of the EGL context (llvmpipe = CPU)."""
    try:
        env = make_env("pick_cube", cameras=("front",), image_size=32)
        env.reset(seed=0)  # creates the context
        from OpenGL import GL

        env.renderer._renderer._gl_context.make_current()
        name = GL.glGetString(GL.GL_RENDERER).decode()
        env.close()
        return name
    except Exception as e:  # noqa: BLE001 - report, do not fail the bench
        return f"unknown ({type(e).__name__})"


def rate_single(env, steps: int, repeats: int) -> tuple[float, float]:
    """(wall-clock steps/s, steps per CPU-second of this process incl. its render threads)."""
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    env.step(env.action_space.sample())  # warm up (GL context, caches)
    wall, cpu = [], []
    for _ in range(repeats):
        actions = rng.uniform(-1, 1, (steps, env.action_space.shape[0])).astype(np.float32)
        t, c = time.perf_counter(), time.process_time()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        wall.append(steps / (time.perf_counter() - t))
        cpu.append(steps / (time.process_time() - c))
    return statistics.median(wall), statistics.median(cpu)


def rate_vector(venv, n: int, steps: int, repeats: int) -> float:
    venv.reset(seed=list(range(n)))
    venv.step(venv.action_space.sample())
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            venv.step(venv.action_space.sample())  # autoreset handles episode ends
        rates.append(steps * n / (time.perf_counter() - t))
    return statistics.median(rates)


def cameras_png(path: str, size: int = 128) -> None:
    """What each camera sees above the cube (front and wrist side by side), at the policy's size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robot_rl.twin import make_expert

    env = make_env("pick_cube", cameras=("front", "wrist"), image_size=size)
    expert = make_expert("pick_cube")
    obs, _ = env.reset(seed=3)
    expert.reset()
    while expert.phase == "approach":
        obs, *_ = env.step(expert.act(obs))  # stop hovering above the cube, fingers open
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4), dpi=100)
    for ax, name in zip(axes, ("front", "wrist")):
        info = env.camera_info(name)
        ax.imshow(obs[name], interpolation="nearest")
        ax.set_title(f"{name} ({info['width']}x{info['height']}, fx={info['K'][0, 0]:.0f}px)", fontsize=9)
        ax.axis("off")
    fig.suptitle("robot_rl twin: pick_cube, rendered cameras from calibration/default_cell.yaml", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"wrote {path}")


def expert_success(episodes: int) -> None:
    """Success rate of the scripted experts, state-only, seeded episodes."""
    from robot_rl.twin import make_expert

    variants = [
        ("pick_cube", {}),
        ("peg_insert", {}),
        ("peg_insert", {"task_params": {"peg_start": "table"}}),
        ("pick_cube", {"rotation": True, "task_params": {"yaw_range": 0.785}}),
        ("peg_insert", {"rotation": True, "task_params": {"hole_yaw_range": 0.6}}),
        ("pick_cube", {"randomize": True}),
        ("peg_insert", {"randomize": True}),
    ]
    for task, kwargs in variants:
        env = make_env(task, **kwargs)
        for noise in (0.0, 0.1, 0.2):
            expert = make_expert(noise=noise, seed=0, config=env.cfg)
            wins, lengths = 0, []
            for ep in range(episodes):
                obs, _ = env.reset(seed=10_000 + ep)
                expert.reset()
                for t in range(env.max_episode_steps):
                    obs, _, term, trunc, info = env.step(expert.act(obs))
                    if term or trunc:
                        break
                wins += info["success"]
                lengths.append(t + 1)
            label = f"{task} {kwargs or ''} noise {noise}"
            print(f"{label:<80s} success {wins}/{episodes} ({100 * wins / episodes:.0f} %), "
                  f"median length {int(np.median(lengths))} steps", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs, fewer configurations")
    ap.add_argument("--out", default="bench/out/bench_twin.json")
    ap.add_argument("--cameras-png", metavar="PATH", help="only render the camera figure to PATH")
    ap.add_argument("--experts", type=int, metavar="N", help="only the experts' success over N episodes")
    args = ap.parse_args(argv)
    if args.experts:
        expert_success(args.experts)
        return
    if args.cameras_png:
        cameras_png(args.cameras_png)
        return
    steps, repeats, rsteps = (300, 3, 20) if args.quick else (2000, 5, 100)

    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "gl_renderer": gl_renderer()}, "rows": []}
    print(f"machine: {results['machine']}")

    print(f"{'configuration':<48s} {'steps/s':>9s} {'per CPU-s':>10s}")

    def report(label, value, **kw):
        wall, cpu = value if isinstance(value, tuple) else (value, None)
        results["rows"].append({"config": label, "steps_per_s": round(wall, 1),
                                "steps_per_cpu_s": cpu and round(cpu, 1), **kw})
        print(f"{label:<48s} {wall:9.1f} {'' if cpu is None else f'{cpu:10.1f}'}", flush=True)

    for task in ("pick_cube",) if args.quick else ("pick_cube", "peg_insert"):
        report(f"{task} state-only, single env", rate_single(make_env(task), steps, repeats))

    cam_sets = [("front",), ("front", "wrist")]
    sizes = (128,) if args.quick else (84, 128)
    for size in sizes:
        for cams in cam_sets:
            env = make_env("pick_cube", cameras=cams, image_size=size)
            report(f"pick_cube {len(cams)} camera(s) {size}x{size}, single env",
                   rate_single(env, rsteps, repeats), cameras=len(cams), size=size)
            env.close()

    n = 4
    venv = gym.vector.SyncVectorEnv([lambda: make_env("pick_cube")] * n)
    report(f"pick_cube state-only, SyncVectorEnv x{n}", rate_vector(venv, n, steps // n, repeats))
    venv.close()
    if not args.quick:
        workers = min(2, os.cpu_count() or 1)
        venv = gym.vector.AsyncVectorEnv([lambda: make_env("pick_cube")] * workers)
        report(f"pick_cube state-only, AsyncVectorEnv x{workers}",
               rate_vector(venv, workers, steps // workers, repeats))
        venv.close()
        venv = gym.vector.SyncVectorEnv(
            [lambda: make_env("pick_cube", cameras=("front", "wrist"), image_size=128)] * 2)
        report("pick_cube 2 cameras 128x128, SyncVectorEnv x2", rate_vector(venv, 2, rsteps // 2, repeats))
        venv.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
