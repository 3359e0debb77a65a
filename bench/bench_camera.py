"""Camera node latency through ROS: frame in -> Image out.

The real camera node (its own process, OpenCV driver) plays a video file of twin frames at
30 fps; this process subscribes like any consumer and takes, per image, its arrival time minus
its stamp. The stamp is the frame's capture time mapped onto the host clock (the minimum of
receive - device time over a window), so the figure is the node's own work (decode, convert,
publish, DDS delivery) plus the jitter above the fastest frame. Prints p50/p99 per size and
writes bench/out/camera.json.

    python bench/bench_camera.py [--n 300] [--sizes 128x128,640x480]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def frames(h: int, w: int, n: int = 30) -> list:
    from robot_rl.twin import make_env

    env = make_env("pick_cube", cameras=("front",), image_size=(h, w), seed=0)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        env.step(rng.uniform(-1, 1, env.action_space.shape))
        out.append(env.unwrapped.render("front").copy())
    env.close()
    return out


def measure(h: int, w: int, n: int, tmp: Path) -> dict:
    import cv2
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from robot_rl import codec, contract as C
    from robot_rl.nodes.ros import subscription

    path = tmp / f"front_{w}x{h}.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for f in frames(h, w):
        vw.write(np.ascontiguousarray(f[..., ::-1]))
    vw.release()

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("bench_camera", context=ctx)
    lat = []
    subscription(node, C.camera_topic("front"),
                 lambda m: lat.append(time.time() - codec.from_stamp(m.header.stamp)))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()
    th = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.02) for _ in iter(stop.is_set, True)], daemon=True)
    th.start()
    proc = subprocess.Popen([sys.executable, "-m", "robot_rl.nodes.camera", "--ros-args", "-p", "driver:=opencv",
                             "-p", f"source:={path}", "-p", "camera:=front", "-p", "loop:=true",
                             "-p", f"width:={w}", "-p", f"height:={h}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60 + n / 30 * 2
        while len(lat) < n + 30 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
        stop.set()
        th.join(5)
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    ms = np.array(lat[30:]) * 1e3  # skip the first second: the clock window is filling
    return dict(size=f"{w}x{h}", n=int(ms.size), p50_ms=round(float(np.percentile(ms, 50)), 3),
                p99_ms=round(float(np.percentile(ms, 99)), 3), max_ms=round(float(ms.max()), 3))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--sizes", default="128x128,640x480")
    a = ap.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from robot_rl.benchinfo import machine_info, write_results

    rows = []
    with tempfile.TemporaryDirectory() as d:
        for s in a.sizes.split(","):
            w, h = (int(v) for v in s.split("x"))
            row = measure(h, w, a.n, Path(d))
            rows.append(row)
            print(f"camera node {row['size']}: frame in -> Image out p50 {row['p50_ms']} ms, "
                  f"p99 {row['p99_ms']} ms, max {row['max_ms']} ms over {row['n']} frames")
    write_results(str(ROOT / "bench" / "out" / "camera.json"), machine_info(), rows)


if __name__ == "__main__":
    main()
