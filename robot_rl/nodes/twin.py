"""Twin node: the MuJoCo cell behind the robot's own topics, and the sim clock.

It publishes what the robot's drivers publish (joint_states, ee_pose, object_poses, camera
images + camera_info, task/status) and executes command/twist + command/gripper. Lock-step:
after publishing the observation at sim time t (then /clock = t) it waits for the command
stamped t, steps one control period and publishes again; if no command comes within
`lockstep_timeout_s` of wall time it holds still, as the real robot's controller would.
Until a first command ever arrives, time stands still and the first observation is repeated
every second, so nodes that start later still hear it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.clock import Clock as RosClock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import csv_list, make_node_options, publisher, run, settings, subscription
from robot_rl.safety import SafetyConfig
from robot_rl.spec import ActionSpec


@dataclass
class TwinSettings:
    """The twin node's parameters; defaults are config/sim.yaml's (tests/test_settings.py)."""

    task: str = "pick_cube"
    seed: int = 0
    publish_cameras: str = "front"  # rendered and published every `camera_every` steps
    policy_cameras: str = ""  # rendered every step (what the policy sees)
    camera_every: int = 10
    image_size: int = 64
    lockstep_timeout_s: float = 30.0  # wall seconds to wait for the actor's command, then hold
    max_episode_steps: int = 100
    rate_hz: float = 10.0  # one env step per control period
    # Who says an episode ended: "twin" (its success check and step limit publish task/status)
    # or "external" (another node, the reward classifier, owns task/status; the twin resets the
    # scene when that says terminal and publishes its own check on twin/ground_truth, to measure).
    success_check: str = "twin"
    run_dir: str = "runs/sim"  # external: twin_ground_truth.json on shutdown
    action: ActionSpec = field(default_factory=ActionSpec)
    safety: SafetyConfig = field(default_factory=SafetyConfig)  # its workspace box clips the twin too

    def __post_init__(self):
        if self.success_check not in ("twin", "external"):
            raise ValueError(f"twin: success_check must be twin or external, not {self.success_check!r}")


class TwinNode(Node):
    GRIP_WAIT_S = 0.5  # wall seconds a twist waits for the gripper command of its stamp

    def __init__(self):
        super().__init__("twin", **make_node_options())
        from robot_rl.twin import make_env  # MuJoCo is only needed by this node

        s = settings(self, TwinSettings)
        self.task = s.task
        policy_cams = csv_list(s.policy_cameras)
        self.cameras = csv_list(s.publish_cameras)
        self.cameras += [c for c in policy_cams if c not in self.cameras]
        self.every_step = set(policy_cams)  # what the policy sees is rendered every step
        self.camera_every = max(1, s.camera_every)
        self.timeout_s = s.lockstep_timeout_s
        self.action_spec = s.action
        # State-only env: cameras are rendered on demand, only when published.
        self.env = make_env(task=s.task, cameras=(), image_size=s.image_size, seed=s.seed,
                            max_episode_steps=s.max_episode_steps, control_hz=s.rate_hz,
                            workspace_min=s.safety.workspace_min, workspace_max=s.safety.workspace_max,
                            rotation=s.action.rotation, max_lin_vel=s.action.max_lin_vel,
                            max_ang_vel=s.action.max_ang_vel)
        self.sim = self.env.unwrapped
        self.seed = s.seed
        self.estop = False  # honoured like the robot's controller: zero motion while asserted

        self.pub_joints = publisher(self, C.JOINT_STATES)
        self.pub_ee = publisher(self, C.EE_POSE)
        self.pub_objects = publisher(self, C.OBJECT_POSES)
        self.external = s.success_check == "external"
        self.run_dir = s.run_dir
        # External: task/status is another node's; the twin's own check is ground truth only.
        self.pub_status = publisher(self, C.TWIN_GROUND_TRUTH if self.external else C.TASK_STATUS)
        self.pub_images = {c: publisher(self, C.camera_topic(c)) for c in self.cameras}
        self.pub_info = {c: publisher(self, C.camera_info_topic(c)) for c in self.cameras}
        self.pub_clock = publisher(self, C.CLOCK)
        subscription(self, C.COMMAND_TWIST, self._on_twist)
        subscription(self, C.COMMAND_GRIPPER, self._on_gripper)
        subscription(self, C.ESTOP, lambda m: setattr(self, "estop", bool(m.data)))
        if self.external:
            subscription(self, C.TASK_STATUS, self._on_status)
        self.truth: list[dict] = []  # external: per ended episode, what the twin's check said
        self.succeeded = False  # external: the twin's check held at some step of this episode

        self.t = 0.0
        self.episode = 0
        self.step_in_episode = 0
        self.steps_total = 0
        self.commands: dict[int, dict] = {}  # stamp key -> {"twist":..., "grip":...}
        self.last_grip = -1.0
        self.timeouts = 0
        self.commanded = False  # time stands still until a controller first commands
        self._reset(first=True)
        # Commands step the sim from their callback; this slow timer only handles timeouts and
        # the start-up repeat (a fast Python timer would eat a core while the twin waits).
        self.create_timer(0.05, self._poll, clock=RosClock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"twin up: task={self.task} cameras={self.cameras} dt={self.sim.control_dt}")

    # ------------------------------------------------------------------ commands
    def _on_twist(self, msg) -> None:
        cmd = self.commands.setdefault(codec.stamp_key(msg.header.stamp), {})
        cmd["twist"], cmd["twist_at"] = codec.twist_from_msg(msg), time.monotonic()
        self._poll()

    def _on_gripper(self, msg) -> None:
        try:
            grip = codec.gripper_from_msg(msg)
        except codec.CodecError as e:
            self.get_logger().error(f"gripper command rejected: {e}")
            return
        self.commands.setdefault(codec.stamp_key(msg.header.stamp), {})["grip"] = grip
        self._poll()

    def _poll(self) -> None:
        key = codec.stamp_key(codec.to_stamp(self.t))
        cmd = self.commands.get(key, {})
        if "twist" in cmd:
            # Twist and gripper travel on two topics and may arrive in either order: step once
            # both are here (a controller that sends no gripper command keeps the last one).
            if "grip" not in cmd and time.monotonic() - cmd["twist_at"] < self.GRIP_WAIT_S:
                return
            twist = cmd["twist"]
            grip = cmd.get("grip", self.last_grip)
        elif not self.commanded:
            if time.monotonic() - self.published_at > 1.0:  # starting up: say it again for late
                self._publish(*self.last_outcome)  # subscribers, step nothing
            return
        elif time.monotonic() - self.published_at > self.timeout_s:
            self.timeouts += 1
            twist, grip = np.zeros(6), self.last_grip  # nobody commands: hold, like the robot
        else:
            return
        self.commanded = True
        self.commands = {k: v for k, v in self.commands.items() if k > key}
        self.last_grip = grip
        if self.estop:
            twist = np.zeros(6)  # the gripper keeps its last command: an e-stop drops nothing
            grip = self.last_grip
        action = self.action_spec.from_command(np.nan_to_num(twist), grip)
        _, reward, terminated, truncated, info = self.env.step(action)
        self.t += self.sim.control_dt
        self.step_in_episode += 1
        self.steps_total += 1
        success = bool(info.get("success", False))
        if self.external:
            # The scene stays as it is until task/status ends the episode (_on_status); the
            # twin's verdict is published as ground truth and never ends anything.
            self.succeeded |= success
            self._publish(reward, terminated, truncated, success)
            return
        self._publish(reward, terminated, truncated, success)
        if terminated or truncated:
            self.episode += 1
            self.t += self.sim.control_dt  # the reset takes one period, like a scripted robot reset
            self._reset()

    def _on_status(self, msg) -> None:
        """External success check: a terminal task/status for the observation the twin is
        waiting on ends the episode (the actor sends no command for a terminal observation)."""
        try:
            st = codec.status_from_msg(msg)
        except codec.CodecError as e:
            self.get_logger().error(f"task/status ignored: {e}")
            return
        if not (st["terminated"] or st["truncated"]):
            return
        if codec.stamp_key(msg.header.stamp) != codec.stamp_key(codec.to_stamp(self.t)):
            return  # an answer to an older observation, or a repeat of one already acted on
        self.truth.append({"episode": int(st["episode"]), "steps": self.step_in_episode,
                           "declared_success": bool(st["success"]), "twin_success": self.succeeded})
        self._write_truth()  # per episode: a run killed midway keeps what it measured
        self.episode += 1
        self.t += self.sim.control_dt  # the reset takes one period, as with the twin's own check
        self._reset()

    def _write_truth(self) -> None:
        import json
        import os
        from pathlib import Path

        path = Path(self.run_dir) / "twin_ground_truth.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"episodes": self.truth}, indent=1))
        os.replace(tmp, path)

    # ------------------------------------------------------------------ observations
    def _reset(self, first: bool = False) -> None:
        self.env.reset(seed=self.seed if first else None)
        self.step_in_episode = 0
        self.succeeded = False
        self.last_grip = -1.0
        self._publish(0.0, False, False, False)

    def _publish(self, reward: float, terminated: bool, truncated: bool, success: bool) -> None:
        self.last_outcome = (reward, terminated, truncated, success)
        t, sim = self.t, self.sim
        state = sim.robot_state()
        names = list(state["joint_names"]) + [C.GRIPPER_JOINT]
        pos = list(state["joint_pos"]) + [state["gripper_width"]]
        vel = list(state["joint_vel"]) + [0.0]
        decimated = self.steps_total % self.camera_every == 0 or terminated or truncated
        for cam in self.cameras:
            if decimated or cam in self.every_step:
                self.pub_images[cam].publish(codec.image_msg(sim.render(cam), t, C.camera_frame(cam)))
                self.pub_info[cam].publish(codec.camera_info_msg(dict(sim.camera_info(cam), frame_id=C.camera_frame(cam)), t))
        self.pub_joints.publish(codec.joint_state_msg(names, pos, vel, t))
        self.pub_ee.publish(codec.pose_stamped_msg(state["ee_pos"], state["ee_quat"], t, C.BASE_FRAME))
        self.pub_objects.publish(codec.pose_array_msg([(p, q) for _, p, q in sim.object_poses()], t, C.BASE_FRAME))
        self.pub_status.publish(codec.status_msg(t, dict(
            reward=float(reward), terminated=bool(terminated), truncated=bool(truncated), success=success,
            episode=self.episode, step=self.step_in_episode)))
        self.pub_clock.publish(Clock(clock=codec.to_stamp(t)))
        self.published_at = time.monotonic()


def main(args=None) -> int:
    return run(TwinNode, args)


if __name__ == "__main__":
    main()
