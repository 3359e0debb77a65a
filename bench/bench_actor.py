"""Actor latency through ROS: observation in -> command out, with the real actor node (its own
process, ONNX one-step policy on one thread, safety filter, zarr logging) and two cameras.

This process plays the robot: it publishes a complete observation (joint_states, ee_pose,
task/status and 128x128 rgb images from two cameras), stamps it, and times how long until the
actor's command/twist for that stamp arrives. Prints p50/p99 and writes bench/out/actor.json.

    python bench/bench_actor.py [--n 300] [--size 128] [--cameras front,wrist] [--trigger timer]

--trigger timer is the robot's path: the sensors publish at --sensor-hz with wall-clock stamps,
the actor ticks on its own 10 Hz timer with the newest of each; the figure is then the age of
the observation a command was computed from when that command arrives (sensor wait + compute +
transport), and the compute part alone (command arrival - the tick that made it is not visible
from outside, so the stamp-to-arrival figure is the one a robot feels).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def export_policy(cameras, size: int) -> bytes:
    import torch

    from robot_rl.learn import make_agent
    from robot_rl.spec import ObsSpec

    torch.set_num_threads(1)
    shapes = {"proprio": (8,), **{c: (size, size, 3) for c in cameras}}
    dtypes = {"proprio": "<f4", **{c: "|u1" for c in cameras}}
    agent = make_agent("flow", ObsSpec(shapes, dtypes), 4, {"chunk_len": 1})
    with tempfile.TemporaryDirectory() as d:
        agent.export_onnx(f"{d}/a.onnx", version=1)
        return Path(f"{d}/a.onnx").read_bytes()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--cameras", default="front,wrist")
    ap.add_argument("--trigger", default="observation", choices=("observation", "timer"))
    ap.add_argument("--sensor-hz", type=float, default=30.0, help="timer path: sensor rate")
    args = ap.parse_args(argv)
    from robot_rl.ros_domain import free_domain

    os.environ.setdefault("ROS_DOMAIN_ID", str(free_domain()))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    cameras = [c for c in args.cameras.split(",") if c]
    policy = export_policy(cameras, args.size)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from robot_rl import codec, contract as C
    from robot_rl.nodes.ros import publisher, subscription

    run_dir = Path(tempfile.mkdtemp())
    actor = subprocess.Popen(
        [sys.executable] + (["-m", "cProfile", "-o", os.environ["ACTOR_PROFILE"]] if os.environ.get("ACTOR_PROFILE") else []) + ["-m", "robot_rl.nodes.actor", "--ros-args", "-p", f"trigger:={args.trigger}", "-p", "eval_every:=0",
         "-p", f"policy_cameras:={args.cameras}", "-p", f"run_dir:={run_dir}", "-p", "use_sim_time:=false",
         "-p", "safety.stale_timeout_s:=1000.0", "-p", "wait_for_learner:=false", "-p", "learner_sync_lag:=0"],
        stdout=open(run_dir / "actor.log", "w"), stderr=subprocess.STDOUT, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("bench_robot")
    pubs = {t: publisher(node, t) for t in (C.JOINT_STATES, C.EE_POSE, C.TASK_STATUS)}
    cams = {c: publisher(node, C.camera_topic(c)) for c in cameras}
    pub_policy = publisher(node, C.POLICY)
    pub_policy.publish(codec.encode_policy(policy, 1))
    arrived: dict[int, float] = {}
    clock = time.perf_counter if args.trigger == "observation" else time.time  # timer: stamps are wall time
    subscription(node, C.COMMAND_TWIST, lambda m: arrived.setdefault(codec.stamp_key(m.header.stamp), clock()))
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.01) for _ in iter(stop.is_set, True)], daemon=True)
    spinner.start()
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8) for c in cameras}
    joints = [f"joint{i}" for i in range(1, 8)] + [C.GRIPPER_JOINT]
    latencies, missed = [], 0
    try:
        deadline = time.monotonic() + 60
        while node.count_subscribers(C.TASK_STATUS) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        if args.trigger == "timer":
            latencies, missed = _timer_path(args, pubs, cams, images, joints, arrived, codec, C)
        for i in range(args.n + 20 if args.trigger == "observation" else 0):
            t = 1.0 + 0.1 * i
            for c in cameras:
                cams[c].publish(codec.image_msg(images[c], t, C.camera_frame(c)))
            pubs[C.JOINT_STATES].publish(codec.joint_state_msg(joints, [0.0] * 7 + [0.04], [0.0] * 8, t))
            pubs[C.EE_POSE].publish(codec.pose_stamped_msg([0.5, 0.0, 0.2], [0, 1, 0, 0], t, C.BASE_FRAME))
            sent = time.perf_counter()
            pubs[C.TASK_STATUS].publish(codec.status_msg(t, dict(reward=0.0, terminated=False, truncated=False,
                                                                   success=False, episode=0, step=i)))
            key = codec.stamp_key(codec.to_stamp(t))
            wait_until = time.monotonic() + 1.0
            while key not in arrived and time.monotonic() < wait_until:
                time.sleep(0.0002)
            if key in arrived:
                if i >= 20:  # warm-up: policy swap, store creation, first allocations
                    latencies.append((arrived[key] - sent) * 1e3)
            else:
                missed += 1
            time.sleep(0.02)  # a 10 Hz robot leaves the actor idle between ticks; keep some of that
    finally:
        stop.set()
        spinner.join(2)
        actor.terminate()
        actor.wait(20)
        node.destroy_node()
        rclpy.shutdown()
    lat = np.asarray(latencies)
    result = {"n": len(lat), "missed": missed, "cameras": cameras, "size": args.size,
              "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
              "max_ms": float(lat.max()), "cpus": os.cpu_count()}
    result["trigger"] = args.trigger
    what = "obs->command" if args.trigger == "observation" else f"observation age at command arrival (timer 10 Hz, sensors {args.sensor_hz:g} Hz)"
    print(f"actor {what} through ROS ({len(cameras)} x {args.size}px cameras, ONNX one-step, zarr logging): "
          f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  max {result['max_ms']:.2f} ms  "
          f"({len(lat)} ticks, {missed} missed)")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"actor_{args.trigger}.json").write_text(json.dumps(result, indent=1))
    return 0


def _timer_path(args, pubs, cams, images, joints, arrived, codec, C):
    """Sensors at sensor_hz with wall stamps; each command carries the stamp of the observation
    it was computed from: arrival - stamp is how old that observation was by then."""
    period = 1.0 / args.sensor_hz
    sent = []
    end = time.monotonic() + (args.n + 20) / 10.0
    i = 0
    while time.monotonic() < end:
        t = time.time()
        for c in cams:
            cams[c].publish(codec.image_msg(images[c], t, C.camera_frame(c)))
        pubs[C.JOINT_STATES].publish(codec.joint_state_msg(joints, [0.0] * 7 + [0.04], [0.0] * 8, t))
        pubs[C.EE_POSE].publish(codec.pose_stamped_msg([0.5, 0.0, 0.2], [0, 1, 0, 0], t, C.BASE_FRAME))
        pubs[C.TASK_STATUS].publish(codec.status_msg(t, dict(reward=0.0, terminated=False, truncated=False,
                                                               success=False, episode=0, step=i)))
        sent.append(codec.stamp_key(codec.to_stamp(t)))
        i += 1
        time.sleep(max(0.0, period - (time.time() - t)))
    time.sleep(0.5)
    sent_keys = set(sent)
    in_order = sorted((k, at) for k, at in arrived.items() if k in sent_keys)
    lat = [(at - k * 1e-9) * 1e3 for k, at in in_order][20:]  # warm-up: policy swap, store creation
    return lat, 0


if __name__ == "__main__":
    sys.exit(main())
