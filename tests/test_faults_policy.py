"""Bad policies (issue 18): a corrupted or mismatched policy is never loaded, and what a loaded
policy answers never reaches the command topic unless it is finite and within the safety bounds.

Through the real actor node (its own process, robot path: wall-clock timer) with this process
playing the robot's sensors and a learner that publishes, in turn, a payload with a broken
checksum, one whose sha256 does not match, a model for other observations, a real exported actor
with a NaN weight, a policy that answers far outside [-1, 1], and one that answers NaN only on
the robot's real observations (the load-time probe cannot see it; the runtime guard must).
"""
import functools
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from robot_rl.control.policy_runner import OnnxPolicy, PolicyError
from test_actor_core import onnx_policy

OBJECT_SUM = 0.5 + 0.1 + 0.02 + 1.0  # the object pose the stand-in robot publishes, summed


@functools.lru_cache(maxsize=1)
def exported_actor() -> bytes:
    """A real one-step actor as the learner exports it (state-based: proprio 8, object 7)."""
    import tempfile
    from pathlib import Path

    import torch

    from robot_rl.learn import make_agent
    from robot_rl.spec import ObsSpec

    torch.manual_seed(0)
    agent = make_agent("flow", ObsSpec({"proprio": (8,), "object": (7,)}, {"proprio": "<f4", "object": "<f4"}), 4,
                       {"chunk_len": 1, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "n_critics": 2})
    with tempfile.TemporaryDirectory() as d:
        agent.export_onnx(f"{d}/a.onnx", version=1)
        return Path(f"{d}/a.onnx").read_bytes()


def with_nan_weight(blob: bytes) -> bytes:
    """The same model with one entry of its largest weight matrix NaN: it still parses and loads."""
    model = onnx.load_from_string(blob)
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init).copy()
    w.flat[len(w.flat) // 2] = np.nan
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    return model.SerializeToString()


def nan_on_the_robots_observation(lo=OBJECT_SUM - 0.01, hi=OBJECT_SUM + 0.01) -> bytes:
    """+x at 0.1 m/s, except NaN when the object's pose sums to within [lo, hi]: what the robot
    publishes, and neither of the load-time probes."""
    nodes = [
        helper.make_node("ReduceSum", ["object"], ["o"], keepdims=1),  # (B, 1)
        helper.make_node("ReduceSum", ["proprio"], ["p"], keepdims=1),
        helper.make_node("Mul", ["p", "zero"], ["pz"]),
        helper.make_node("Add", ["o", "pz"], ["s"]),
        helper.make_node("Greater", ["s", "lo"], ["above"]),
        helper.make_node("Less", ["s", "hi"], ["below"]),
        helper.make_node("And", ["above", "below"], ["hit"]),
        helper.make_node("Unsqueeze", ["hit", "axes"], ["hit3"]),  # (B, 1, 1)
        helper.make_node("Where", ["hit3", "nan", "chunk"], ["actions"]),
    ]
    chunk = np.array([[[0.5, 0.0, 0.0, -1.0]]], np.float32)
    graph = helper.make_graph(
        nodes, "nan_on_robot",
        [helper.make_tensor_value_info("proprio", TensorProto.FLOAT, ["B", 8]),
         helper.make_tensor_value_info("object", TensorProto.FLOAT, ["B", 7])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["B", 1, 4])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]), helper.make_tensor("lo", TensorProto.FLOAT, [], [lo]),
         helper.make_tensor("hi", TensorProto.FLOAT, [], [hi]), helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
         helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")]),
         numpy_helper.from_array(chunk, "chunk")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_policy_with_a_nan_weight_is_refused_at_load():
    good = exported_actor()
    OnnxPolicy(good, 1, 4)  # loads
    with pytest.raises(PolicyError, match="non-finite"):
        OnnxPolicy(with_nan_weight(good), 2, 4)
    acts = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(PolicyError, match="non-finite"):
        OnnxPolicy(onnx_policy([0.5, np.inf, 0.5, 0.5]), 3, 4)  # an inf constant in the chunk
    assert OnnxPolicy(onnx_policy(acts[0, :, 0]), 4, 4).chunk == 4


def test_a_policy_nan_only_on_real_observations_loads_but_never_acts():
    p = OnnxPolicy(nan_on_the_robots_observation(), 1, 4)  # the probes see finite actions
    obs = {"proprio": np.zeros(8, np.float32), "object": np.array([0.5, 0.1, 0.02, 1, 0, 0, 0], np.float32)}
    with pytest.raises(PolicyError, match="non-finite"):
        p(obs)
    obs["object"][0] = 0.3
    np.testing.assert_allclose(p(obs)[0], [0.5, 0, 0, -1])


# ---------------------------------------------------------------------------------- the node
def test_the_actor_node_refuses_bad_policies_and_no_bad_action_leaves_it(tmp_path):
    pytest.importorskip("rclpy")
    from conftest import stop_process, wait_for
    from robot_rl import codec, contract as C
    from robot_rl.nodes.ros import publisher, subscription
    from robot_rl.safety import SafetyConfig, within_bounds
    from test_estop import Robot, start_actor

    class RobotAndLearner(Robot):
        def __init__(self):
            super().__init__()
            self.pub_policy = publisher(self.node, C.POLICY)
            self.full: list[tuple[float, np.ndarray]] = []
            subscription(self.node, C.COMMAND_TWIST, lambda m: self.full.append((time.monotonic(), codec.twist_from_msg(m))))

    good = tmp_path / "plus_x.onnx"
    good.write_bytes(onnx_policy([0.5] * 4))  # +x at 0.1 m/s
    real = exported_actor()
    robot = RobotAndLearner()
    actor = start_actor(tmp_path, good)
    log = tmp_path / "actor.log"
    try:
        wait_for(lambda: any(vx > 0.05 for _, vx in robot.twists), 60, "the good policy's twists")
        wait_for(lambda: robot.pub_policy.get_subscription_count() > 0, 20, "the actor to hear policies")

        def offer(msg, says: str):
            n = log.read_text().count(says)
            t0 = time.monotonic()
            robot.pub_policy.publish(msg)
            wait_for(lambda: log.read_text().count(says) > n, 20, f"the actor to say {says!r}")
            time.sleep(0.3)
            return t0

        corrupt = codec.encode_policy(real, 5)
        raw = bytearray(bytes(corrupt.data))
        raw[-10] ^= 0xFF  # a bit flipped on the way: the frame's crc32 no longer matches
        corrupt.data = bytes(raw)
        offer(corrupt, "checksum mismatch")
        offer(codec.encode_policy(real, 6, sha256="0" * 64), "sha256 does not match")
        offer(codec.encode_policy(onnx_policy([0.5] * 4, n_obj=14), 7), "differ from this robot's")
        t_refused = offer(codec.encode_policy(with_nan_weight(real), 8), "non-finite")
        time.sleep(0.5)
        kept = [vx for at, vx in robot.twists if at > t_refused]
        assert kept and all(abs(vx - 0.1) < 1e-6 for vx in kept), "the last good policy runs on"

        t_huge = offer(codec.encode_policy(onnx_policy([1e6] * 4), 9), "version 9 swapped in")
        time.sleep(1.0)
        huge = [v for at, v in robot.full if at > t_huge + 0.3]
        assert huge and max(v[0] for v in huge) > 0.19  # it drives: clipped to the action scale
        t_nan = offer(codec.encode_policy(nan_on_the_robots_observation(), 10), "version 10 swapped in")
        wait_for(lambda: "policy failed, holding" in log.read_text(), 10, "the runtime guard to hold")
        time.sleep(1.0)
        after = [v for at, v in robot.full if at > t_nan + 0.5]
        assert after and all(np.all(v == 0.0) for v in after), "NaN answers: the actor holds"
        assert actor.poll() is None
    finally:
        rc = stop_process(actor)
        robot.close()
    assert rc == 0
    cfg = SafetyConfig()
    assert robot.full and all(np.isfinite(v).all() and within_bounds(v, cfg) for _, v in robot.full)
    text = log.read_text()
    assert "Traceback" not in text
    import json

    used = json.loads((tmp_path / "actor_summary.json").read_text())["versions_used"]
    assert not {5, 6, 7, 8} & set(used) and {0, 9, 10} <= set(used)
