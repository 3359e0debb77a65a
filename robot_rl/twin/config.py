"""Plain configuration of the twin, buildable from the `twin:` section of a YAML file.

Every field has a default, so `TwinConfig()` is the default Panda pick-cube cell and
`TwinConfig.from_dict(yaml.safe_load(f)["twin"])` reads the lead's config/sim.yaml. Unknown keys
raise a ValueError naming them. Units: metres, seconds, radians; poses in the robot base frame
(the twin's world frame is the robot base frame).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from robot_rl.configs import from_mapping
from robot_rl.spec import ActionSpec


@dataclass
class RobotConfig:
    """Which arm, and the names the twin drives it by. Defaults: sim/panda.xml."""

    model: str | None = None  # MJCF or URDF path; None = the bundled sim/panda.xml
    base_pos: tuple = (0.0, 0.0, 0.0)  # pose of the model's root in the base frame
    base_quat: tuple = (1.0, 0.0, 0.0, 0.0)  # wxyz
    ee_site: str = "ee"  # TCP site (or a body: a site is added at its origin): z along the
    # fingers, fingers close along its y
    flange: str = "flange"  # body hand-eye (wrist camera) poses may be given in
    arm_joints: tuple = tuple(f"joint{i}" for i in range(1, 8))
    # Position actuators of the arm joints, in arm_joints order; () = find them by joint, and
    # add position servos with arm_kp for joints that have none (e.g. a URDF).
    arm_actuators: tuple = ()
    arm_kp: float = 2000.0
    gripper_joints: tuple = ("finger_joint1", "finger_joint2")
    # Position actuator of the gripper, ctrl in its own units; if the model has none by this
    # name (e.g. a URDF), each gripper joint gets a position servo with gripper_kp and the
    # other gripper joints are coupled to the first (as a URDF's mimic joints).
    gripper_actuator: str = "gripper"
    gripper_kp: float = 2000.0
    gripper_ctrl_open: float = 0.04
    gripper_ctrl_closed: float = 0.0
    # gripper opening (m) = gripper_width_scale * sum(gripper joint positions)
    gripper_width_scale: float = 1.0
    home_qpos: tuple = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)  # IK seed / posture
    ee_down_quat: tuple = (0.0, 1.0, 0.0, 0.0)  # ee orientation held when rotation is off


@dataclass
class RandomizationConfig:
    """Domain randomisation, drawn at every reset from the env's seeded generator.

    Off unless `enabled`; inside, a range of None/0 switches that one item off."""

    enabled: bool = False
    light_diffuse: tuple | None = (0.4, 1.0)  # head-light/scene light intensity range
    light_pos_jitter: float = 0.3  # m
    colors: bool = True  # table, floor, object colours (uniform rgb)
    textures: bool = True  # table/floor texture from sim/cell.xml's dr_* materials (or none)
    camera_pos_jitter: float = 0.01  # m, per axis
    camera_rot_jitter: float = 0.02  # rad, about a random axis
    object_mass_scale: tuple | None = (0.5, 2.0)
    friction_scale: tuple | None = (0.7, 1.3)
    gain_scale: tuple | None = (0.8, 1.2)  # arm servo kp (and kv with it)
    latency_steps: tuple | None = (0, 1)  # extra control steps of action latency, inclusive


@dataclass
class TwinConfig:
    task: str = "pick_cube"  # pick_cube | peg_insert
    control_hz: float = 10.0  # policy rate: one env step
    timestep: float = 0.005  # physics step (s); substeps = round(1 / (control_hz * timestep))
    max_episode_steps: int | None = None  # None: the task's default (100)
    workspace_min: tuple = (0.25, -0.35, 0.01)  # ee box in the base frame, as the safety filter's
    workspace_max: tuple = (0.75, 0.35, 0.45)
    rotation: bool = False  # 7-D actions with angular velocity; 4-D when False
    max_lin_vel: float = 0.2  # m/s at |a| = 1
    max_ang_vel: float = 1.0  # rad/s at |a| = 1
    latency_steps: int = 0  # actions take effect this many control steps late
    cameras: tuple = ()  # observation cameras, names in the cell calibration
    image_size: tuple | int = 128  # rendered (height, width); K is scaled to it
    cell: str | None = None  # cell calibration YAML; None = calibration/default_cell.yaml
    reward: str = "sparse"  # sparse (1 on success) | shaped (in [0, 1], 1 on success)
    terminate_on_success: bool = True
    home_ee_pos: tuple = (0.45, 0.0, 0.25)  # ee start position ...
    init_ee_noise: float = 0.03  # ... +- this (uniform per axis, m)
    ik_damping: float = 0.05  # damped least squares lambda
    target_leash: float = 0.04  # the commanded ee target stays within this of the ee (m)
    render_shadows: bool = False  # shadows and MSAA cost ~5x on a CPU renderer
    render_multisample: int = 0
    task_params: dict = field(default_factory=dict)  # task-specific, see robot_rl/twin/tasks.py
    robot: RobotConfig = field(default_factory=RobotConfig)
    randomize: RandomizationConfig = field(default_factory=RandomizationConfig)

    def __post_init__(self):
        if isinstance(self.robot, dict):
            self.robot = _build(RobotConfig, self.robot, "twin.robot")
        if isinstance(self.randomize, dict):
            self.randomize = _build(RandomizationConfig, self.randomize, "twin.randomize")
        elif isinstance(self.randomize, bool):
            self.randomize = RandomizationConfig(enabled=self.randomize)
        if isinstance(self.image_size, int):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(int(v) for v in self.image_size)
        if isinstance(self.cameras, str):
            self.cameras = (self.cameras,)
        self.cameras = tuple(self.cameras)
        for name in ("workspace_min", "workspace_max", "home_ee_pos"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3:
                raise ValueError(f"twin.{name} needs 3 values (x, y, z in metres), got {v}")
            setattr(self, name, v)
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max)):
            raise ValueError(
                f"twin.workspace_min {self.workspace_min} must be below workspace_max {self.workspace_max}"
            )
        if self.reward not in ("sparse", "shaped"):
            raise ValueError(f"twin.reward must be 'sparse' or 'shaped', got {self.reward!r}")
        if self.control_hz <= 0 or self.timestep <= 0:
            raise ValueError("twin.control_hz and twin.timestep must be positive")
        if self.latency_steps < 0:
            raise ValueError(f"twin.latency_steps must be >= 0, got {self.latency_steps}")

    @property
    def action_spec(self) -> ActionSpec:
        return ActionSpec(self.rotation, self.max_lin_vel, self.max_ang_vel)

    @property
    def control_dt(self) -> float:
        return self.n_substeps * self.timestep

    @property
    def n_substeps(self) -> int:
        return max(1, int(round(1.0 / (self.control_hz * self.timestep))))

    @classmethod
    def from_dict(cls, d: dict | None) -> "TwinConfig":
        return _build(cls, dict(d or {}), "twin")

    def replace(self, **overrides) -> "TwinConfig":
        """Copy with fields replaced; nested robot/randomize accept dicts (merged)."""
        d = dataclasses.asdict(self)
        for k, v in overrides.items():
            if k in ("robot", "randomize") and isinstance(v, dict):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return TwinConfig.from_dict(d)


def _build(cls, d: dict, where: str):
    # the one config loader (lists become tuples for every field here: all are fixed-size)
    return from_mapping(cls, {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}, where)
