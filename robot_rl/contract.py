"""The one place where topic names, message types, QoS profiles and frame ids are spelled.

The real robot's drivers and the twin node publish and subscribe exactly these, so nothing
downstream knows which one it talks to. Names are relative (no leading slash) so a namespace
can put two cells on one ROS domain.

Sensor side (robot drivers or the twin):
  joint_states                      sensor_msgs/JointState   arm joints + gripper joints
  ee_pose                           geometry_msgs/PoseStamped  end effector in the base frame
  object_poses                      geometry_msgs/PoseArray  tracked objects (tracker or twin),
                                                             in the task's order
  camera/<name>/image_raw           sensor_msgs/Image (rgb8)
  camera/<name>/camera_info         sensor_msgs/CameraInfo
  task/status                       diagnostic_msgs/DiagnosticArray  reward, terminated,
                                    truncated, success, episode, step (twin's success check,
                                    a reward classifier, or the operator's keys)
Command side (only the actor publishes these; everything passes the safety filter first):
  command/twist                     geometry_msgs/TwistStamped  (MoveIt Servo style, base frame)
  command/gripper                   sensor_msgs/JointState  name ["gripper"], position [opening
                                    fraction 0 = closed .. 1 = open]
Teleop (a person, or the scripted human in sim):
  teleop/twist, teleop/gripper      same types as the commands, stamped with the observation
                                    they answer
  teleop/engaged                    std_msgs/Bool   true while the human has taken over
  teleop/event                      std_msgs/String  takeover | release (scripted), success |
                                    failure | reset (operator keys)
  actor/evaluating                  std_msgs/Bool  latched; true during evaluation episodes,
                                    when no intervention is allowed
Learning:
  learner/transitions               std_msgs/UInt8MultiArray  codec payload, kind TRANSITIONS
  learner/policy                    std_msgs/UInt8MultiArray  codec payload, kind POLICY,
                                    transient_local so a late actor gets the newest policy
  learner/progress                  std_msgs/Int64  steps the learner has trained on at its
                                    update-to-data ratio (sim: the actor may wait for it)
  learner/deploy                    std_msgs/String  the operator's deploy request to a gated
                                    learner (robot-rl deploy): "7", "rollback", "latest" or JSON
                                    {"cmd", "version", "id"}; answered on /diagnostics
                                    (status "learner_gate"). Not latched: a restarted learner
                                    must not obey an old request again
  /diagnostics                      diagnostic_msgs/DiagnosticArray  actor/learner/twin status
  /clock                            rosgraph_msgs/Clock  published by the twin in sim
Safety:
  estop                             std_msgs/Bool  reliable, latched; true = hold every command
                                    until cleared (false on the topic + an explicit clear)
"""
from __future__ import annotations

from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Int64, String, UInt8MultiArray

from robot_rl.names import (  # noqa: F401  re-exported: the ROS-free spellings live there
    BASE_FRAME,
    CLOCK,
    COMMAND_GRIPPER,
    COMMAND_TWIST,
    DEPLOY,
    DIAGNOSTICS,
    EE_POSE,
    ESTOP,
    EVALUATING,
    GRIPPER_JOINT,
    JOINT_STATES,
    LEARNER_PROGRESS,
    OBJECT_POSES,
    POLICY,
    TASK_STATUS,
    TELEOP_ENGAGED,
    TWIN_GROUND_TRUTH,
    TELEOP_EVENT,
    TELEOP_GRIPPER,
    TELEOP_TWIST,
    TRANSITIONS,
    camera_frame,
    camera_info_topic,
    camera_topic,
)


@dataclass(frozen=True)
class Qos:
    """A QoS profile as plain data; nodes/ros.py turns it into an rclpy QoSProfile."""

    depth: int
    reliable: bool = True
    transient_local: bool = False


# Observations must not be dropped in sim (lock-step); a real camera driver that publishes
# best-effort is matched by setting the actor's `sensor_reliability` parameter to best_effort.
SENSOR_QOS = Qos(depth=10)
SENSOR_QOS_BEST_EFFORT = Qos(depth=10, reliable=False)
COMMAND_QOS = Qos(depth=10)
# Reliable and latched with a deep history: a slow learner costs learning time, never
# transitions, and a learner that (re)starts late still gets the last `depth` steps (older ones
# are in the actor's zarr store, which a learner can load with its `demos`/store parameter).
TRANSITIONS_QOS = Qos(depth=1000, transient_local=True)
# Latched: a late actor gets the newest policy, a late subscriber the current engaged state.
POLICY_QOS = Qos(depth=1, transient_local=True)
STATE_QOS = Qos(depth=1, transient_local=True)
PROGRESS_QOS = Qos(depth=1, transient_local=True)
EVENT_QOS = Qos(depth=50)
DIAGNOSTICS_QOS = Qos(depth=20)
CLOCK_QOS = Qos(depth=1)


@dataclass(frozen=True)
class Topic:
    """What a node needs to open a topic: its message type and QoS (the name is the key)."""

    type: type
    qos: Qos


# The topic table: every fixed topic of the graph. Nodes open topics by name only
# (nodes/ros.py: publisher/subscription), so a name's type and QoS are spelled once.
TOPICS = {
    JOINT_STATES: Topic(JointState, SENSOR_QOS),
    EE_POSE: Topic(PoseStamped, SENSOR_QOS),
    OBJECT_POSES: Topic(PoseArray, SENSOR_QOS),
    TASK_STATUS: Topic(DiagnosticArray, SENSOR_QOS),
    TWIN_GROUND_TRUTH: Topic(DiagnosticArray, SENSOR_QOS),
    COMMAND_TWIST: Topic(TwistStamped, COMMAND_QOS),
    COMMAND_GRIPPER: Topic(JointState, COMMAND_QOS),
    TELEOP_TWIST: Topic(TwistStamped, COMMAND_QOS),
    TELEOP_GRIPPER: Topic(JointState, COMMAND_QOS),
    TELEOP_ENGAGED: Topic(Bool, STATE_QOS),
    TELEOP_EVENT: Topic(String, EVENT_QOS),
    EVALUATING: Topic(Bool, STATE_QOS),
    ESTOP: Topic(Bool, STATE_QOS),
    TRANSITIONS: Topic(UInt8MultiArray, TRANSITIONS_QOS),
    POLICY: Topic(UInt8MultiArray, POLICY_QOS),
    LEARNER_PROGRESS: Topic(Int64, PROGRESS_QOS),
    DEPLOY: Topic(String, EVENT_QOS),
    DIAGNOSTICS: Topic(DiagnosticArray, DIAGNOSTICS_QOS),
    CLOCK: Topic(Clock, CLOCK_QOS),
}


def topic(name: str) -> Topic:
    """The table's entry for a name, including the per-camera topics (camera/<name>/...)."""
    if name in TOPICS:
        return TOPICS[name]
    if name.startswith("camera/") and name.endswith("/image_raw"):
        return Topic(Image, SENSOR_QOS)
    if name.startswith("camera/") and name.endswith("/camera_info"):
        return Topic(CameraInfo, SENSOR_QOS)
    raise KeyError(f"{name!r} is not a topic of the contract (robot_rl/contract.py)")


def sensor_qos(reliability: str = "reliable") -> Qos:
    if reliability not in ("reliable", "best_effort"):
        raise ValueError(f"sensor_reliability must be reliable or best_effort, not {reliability!r}")
    return SENSOR_QOS if reliability == "reliable" else SENSOR_QOS_BEST_EFFORT
