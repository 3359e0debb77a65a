"""Ease-in and trips (robot_rl/control/guard.py through the actor core), without DDS: a new or
resumed policy ramps its twist up; an observation far outside the policy's training
distribution, or commands pinned at the speed bounds, latch a hold until the operator clears it."""
import json

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

pytest.importorskip("rclpy")  # message classes (no graph, no spinning)

from test_actor_core import Sim, make, observation, onnx_policy  # noqa: E402

from robot_rl import codec  # noqa: E402
from robot_rl.control.actor_core import TRIP_LATCH_FILE  # noqa: E402
from robot_rl.control.guard import TripSettings  # noqa: E402
from robot_rl.names import TELEOP_GRIPPER, TELEOP_TWIST  # noqa: E402

EE = (0.5, 0.0, 0.2)  # test_actor_core.observation's end effector
FAR = (0.5, 0.3, 0.2)  # inside the workspace box, 6 std from EE in y with the stats below


def fixed_policy(action, stats=None, h=4) -> bytes:
    """An ONNX actor that always plans `action` (4 values, [-1, 1]), with `stats` as its
    obs_stats metadata (None: none, as an older export)."""
    model = onnx.load_model_from_string(onnx_policy([0.0] * h))
    acts = np.tile(np.asarray(action, np.float32), (1, h, 1))
    for init in model.graph.initializer:
        if init.name == "chunk":
            init.CopyFrom(numpy_helper.from_array(acts, "chunk"))
    if stats is not None:
        helper.set_model_props(model, {"obs_stats": stats if isinstance(stats, str) else json.dumps(stats)})
    return model.SerializeToString()


def in_dist_stats():
    """Statistics centred on the test observation, 0.05 wide (the normaliser's floor)."""
    obs = codec.observation_from_msgs(observation(0.0), (), True, ["gripper"])
    return {k: {"mean": np.asarray(v, float).tolist(), "std": [0.05] * len(v)} for k, v in obs.items()}


def offer(core, version, action, stats=None):
    core.offer_policy(codec.encode_policy(fixed_policy(action, stats), version))


def takeover(core, sim, lin=(0.05, 0, 0)):
    """The human answers the next observation (stamped with it) with this linear velocity."""
    core.teleop(TELEOP_TWIST, codec.twist_msg([*lin, 0, 0, 0], sim.t, "base_link"))
    core.teleop(TELEOP_GRIPPER, codec.gripper_msg(-1.0, sim.t))
    core.set_engaged(True)


def vxs(sim, n, **kw):
    out = []
    for _ in range(n):
        sim.step(**kw)
        out.append(sim.vx())
    return out


def held(io):
    return io.commands[-1][0].tolist() == [0.0] * 6


# ------------------------------------------------------------------ ease-in
def test_a_new_policy_eases_in_over_exactly_n_ticks(tmp_path):
    core, io = make(tmp_path, ease_in_ticks=4)
    sim = Sim(core, io)
    offer(core, 1, [0.5, 0, 0, -1])
    assert vxs(sim, 6) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.5], "k / (n + 1) of the command on the k-th tick"
    offer(core, 2, [1.0, 0, 0, -1])
    assert vxs(sim, 6) == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0], "a swap ramps up from hold again"
    assert core.hold_reasons == {}, "easing is no hold"


def test_off_by_default_as_in_sim(tmp_path):
    core, io = make(tmp_path)
    sim = Sim(core, io)
    offer(core, 1, [0.5, 0, 0, -1])
    assert vxs(sim, 2) == [0.5, 0.5]


def test_the_policy_eases_in_after_a_takeover_release_and_after_a_hold(tmp_path):
    core, io = make(tmp_path, ease_in_ticks=3, teleop_present=False)
    sim = Sim(core, io)
    offer(core, 1, [0.8, 0, 0, -1])
    assert vxs(sim, 5)[-1] == 0.8
    takeover(core, sim)
    sim.step()
    assert sim.vx() == 0.25, "the human's command passes as it is"
    core.set_engaged(False)
    assert vxs(sim, 5) == [0.2, 0.4, 0.6, 0.8, 0.8], "the policy takes over from the human gently"
    sim.step(nan=True)  # a bad observation: a hold
    assert held(io)
    assert vxs(sim, 4) == [0.2, 0.4, 0.6, 0.8]


def test_the_grip_is_not_blended(tmp_path):
    core, io = make(tmp_path, ease_in_ticks=4)
    sim = Sim(core, io)
    offer(core, 1, [0.5, 0, 0, 1.0])  # closes
    sim.step()
    assert sim.vx() == 0.1 and io.commands[-1][1] == 1.0


# ------------------------------------------------------------------ trips
def test_an_out_of_distribution_observation_latches_a_hold_until_cleared(tmp_path):
    core, io = make(tmp_path, trip=TripSettings(ood_std=4.0, ood_ticks=2), ease_in_ticks=2)
    sim = Sim(core, io)
    offer(core, 1, [0.6, 0, 0, -1], in_dist_stats())
    vxs(sim, 4)
    assert sim.vx() == 0.6
    sim.step(ee=FAR)
    sim.step()
    sim.step(ee=FAR)
    assert not core.trip_reason and sim.vx() == 0.6, "only consecutive ticks out count"
    sim.step(ee=FAR)
    assert held(io) and core.trip_reason, "the k-th tick out holds at once"
    assert "proprio[1]" in core.trip_reason and "6.0 std" in core.trip_reason
    for _ in range(5):
        sim.step()  # back in distribution: still held, latched
        assert held(io)
    assert core.hold_reasons["trip"] == 6
    assert core.diagnostics()["trip"] == core.trip_reason
    level, message = core.diagnostics_status()
    assert level == 2 and message.startswith("tripped: observation out of distribution")
    assert (tmp_path / TRIP_LATCH_FILE).exists()
    reason = core.trip_reason
    ok, why = core.clear_estop()  # the operator's one clear (robot-rl estop --clear)
    assert ok and "trip cleared" in why
    assert not (tmp_path / TRIP_LATCH_FILE).exists() and core.diagnostics_status() == (0, "")
    assert vxs(sim, 3) == [0.2, 0.4, 0.6], "released, the policy eases in again"
    summary = core.close()
    assert [t["reason"] for t in summary["trips"]] == [reason]
    assert summary["tripped"] == ""


def test_a_trip_survives_an_actor_restart(tmp_path):
    core, io = make(tmp_path, trip=TripSettings(ood_std=4.0, ood_ticks=1))
    sim = Sim(core, io)
    offer(core, 1, [0.6, 0, 0, -1], in_dist_stats())
    sim.step(ee=FAR)
    assert held(io)
    reason = core.trip_reason
    core.close()
    again, io2 = make(tmp_path, trip=TripSettings(ood_std=4.0, ood_ticks=1))
    assert again.trip_reason == reason, "a respawned actor must not resume a tripped policy"
    offer(again, 1, [0.6, 0, 0, -1], in_dist_stats())
    Sim(again, io2).step()
    assert held(io2)


def test_commands_at_the_speed_bounds_trip(tmp_path):
    core, io = make(tmp_path, trip=TripSettings(saturated_ticks=3))
    sim = Sim(core, io)
    offer(core, 1, [1.0, 0, 0, -1])  # full speed on one axis: 0.2 of 0.35 m/s, not at the bound
    vxs(sim, 10)
    assert not core.trip_reason and sim.vx() == 1.0
    offer(core, 2, [1.0, -1.0, 1.0, -1])  # the action box's corner: 0.346 m/s, at the bound
    sim.step(); sim.step()
    assert not held(io) and not core.trip_reason
    sim.step()
    assert held(io) and core.trip_reason.startswith("policy saturated")
    assert core.diagnostics_status()[1].startswith("tripped: policy saturated")
    assert core.close()["hold_reasons"]["trip"] == 1


def test_no_trip_while_the_human_drives_and_the_count_restarts_after(tmp_path):
    core, io = make(tmp_path, trip=TripSettings(ood_std=4.0, ood_ticks=2, saturated_ticks=2))
    sim = Sim(core, io)
    offer(core, 1, [0.6, 0, 0, -1], in_dist_stats())
    sim.step(ee=FAR)  # one policy tick out ...
    for _ in range(5):  # ... then the human drives, far out and at the bounds
        takeover(core, sim, lin=(0.2, -0.2, 0.2))  # the action box's corner: at the bound
        sim.step(ee=FAR)
        assert np.linalg.norm(io.commands[-1][0][:3]) == pytest.approx(0.2 * 3 ** 0.5)
    assert not core.trip_reason
    core.set_engaged(False)
    sim.step(ee=FAR)
    assert not held(io), "the takeover restarted the count: this is the first policy tick out"
    sim.step(ee=FAR)
    assert held(io) and core.trip_reason
    takeover(core, sim)
    sim.step()
    assert sim.vx() == 0.25, "a trip holds the policy, not the human"
    core.set_engaged(False)
    sim.step()
    assert held(io)


def test_a_policy_without_stats_runs_untripped_and_bad_stats_are_refused(tmp_path):
    core, io = make(tmp_path, trip=TripSettings(ood_std=4.0, ood_ticks=1))
    sim = Sim(core, io)
    offer(core, 1, [0.6, 0, 0, -1])  # an older export: no obs_stats
    assert any("carries no obs_stats" in text for _, text in io.logs)
    sim.step(ee=FAR)
    assert not held(io)
    offer(core, 2, [0.6, 0, 0, -1], "{not json")
    offer(core, 3, [0.6, 0, 0, -1], {"proprio": {"mean": [0.0] * 3, "std": [1.0] * 3}})
    offer(core, 4, [0.6, 0, 0, -1], {"proprio": {"mean": [0.0] * 8, "std": [0.0] * 8}})
    assert core.version == 1
    assert sum(lvl == "error" and "obs_stats" in t for lvl, t in io.logs) == 3


# ------------------------------------------------------------------ the exported actor carries its normaliser
def test_normaliser_statistics_round_trip_through_the_exported_actor(tmp_path):
    import torch

    from robot_rl.learn import make_agent
    from robot_rl.learn.export import export_actor_bytes, read_metadata
    from robot_rl.learn.synthetic import STATE_SPEC

    torch.set_num_threads(1)
    tiny = {"chunk_len": 4, "actor_hidden": [16], "critic_hidden": [16], "n_critics": 2}
    agent = make_agent("flow", STATE_SPEC, 4, tiny, device="cpu")
    blob, _ = export_actor_bytes(agent, 1, verify=False)
    assert all(p.key != "obs_stats" for p in onnx.load_model_from_string(blob).metadata_props), \
        "an unfitted normaliser describes no data"

    # fitted on observations around the test one: 0.01 of noise, so the 0.05 floor sets the std
    base = codec.observation_from_msgs(observation(0.0), (), True, ["gripper"])
    rng = np.random.default_rng(0)
    data = {k: (v + rng.normal(0, 0.01, (256, len(v)))).astype(np.float32) for k, v in base.items()}
    data["proprio"][:, 2] += rng.normal(0, 0.2, 256).astype(np.float32)  # z varied widely
    agent.fit_obs_normalizer(data)
    path = tmp_path / "actor.onnx"
    agent.export_onnx(path, version=1)
    stats = read_metadata(path)["obs_stats"]
    assert set(stats) == {"proprio", "object"}
    for k in ("proprio", "object"):
        np.testing.assert_allclose(stats[k]["mean"], data[k].mean(0), atol=1e-5)
        np.testing.assert_allclose(stats[k]["std"], np.maximum(data[k].std(0), 0.05), atol=1e-5)
    assert stats["proprio"]["std"][2] > 0.15

    # and the actor reads them: in distribution it acts, 6 std out it trips
    core, io = make(tmp_path / "run", trip=TripSettings(ood_std=4.0, ood_ticks=1))
    core.offer_policy(codec.encode_policy(path.read_bytes(), 1))
    sim = Sim(core, io)
    sim.step()
    sim.step(ee=(0.5, 0.0, 0.4))  # 1 std out in z, where the data varied
    assert not core.trip_reason
    sim.step(ee=FAR)
    assert core.trip_reason and "proprio[1]" in core.trip_reason


def test_trip_settings_are_checked():
    from robot_rl.control.actor_core import ActorSettings

    with pytest.raises(ValueError, match="ease_in_ticks"):
        ActorSettings(ease_in_ticks=-1)
    with pytest.raises(ValueError, match="ood_ticks"):
        TripSettings(ood_ticks=0)
    with pytest.raises(ValueError, match="saturation"):
        TripSettings(saturation=1.5)


# ------------------------------------------------------------------ through DDS
def test_a_trip_through_the_node_says_why_on_diagnostics_and_estop_clear_releases_it(tmp_path):
    """The actor node on its timer, the trip set through nested ROS parameters: commands at
    the bounds trip it, /diagnostics says why at ERROR, and `robot-rl estop --clear` releases."""
    import os
    import subprocess
    import sys
    import time

    from conftest import wait_for
    from test_estop import Robot

    from robot_rl import contract as C
    from robot_rl.nodes.estop import send_estop
    from robot_rl.nodes.ros import subscription

    policy = tmp_path / "corner.onnx"
    policy.write_bytes(fixed_policy([1.0, -1.0, 1.0, -1.0]))
    robot = Robot()
    status = {}
    subscription(robot.node, C.DIAGNOSTICS, lambda m: status.update(
        {s.name: (s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message) for s in m.status}))
    actor = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.nodes.actor", "--ros-args", "-p", "trigger:=timer", "-p", f"run_dir:={tmp_path}",
         "-p", "use_sim_time:=false", "-p", "wait_for_learner:=false", "-p", "learner_sync_lag:=0",
         "-p", "eval_every:=0", "-p", f"policy_file:={policy}", "-p", "trip.saturated_ticks:=3"],
        stdout=open(tmp_path / "actor.log", "a"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_for(lambda: any(vx > 0.1 for _, vx in robot.twists), 30, "the policy's twists")
        wait_for(lambda: status.get("actor", (0, ""))[0] == 2, 10, "the trip on /diagnostics")
        assert status["actor"][1].startswith("tripped: policy saturated")
        t_tripped = time.monotonic()
        time.sleep(0.5)
        assert robot.moving_after(t_tripped) and max(robot.moving_after(t_tripped)) == 0.0, "latched"
        assert (tmp_path / TRIP_LATCH_FILE).exists()
        t_clear = time.monotonic()
        ok, why = send_estop(False, timeout_s=15)
        assert ok and "trip cleared (policy saturated" in why, why
        wait_for(lambda: any(vx > 0.1 for vx in robot.moving_after(t_clear)), 10, "motion after the clear")
    finally:
        actor.terminate()
        actor.wait(20)
        robot.close()
