"""NumPy <-> ROS messages, and the bulk payloads that travel in std_msgs/UInt8MultiArray.

Payload wire format (little endian):
    magic  4s   b"RRLP"
    version u16 PAYLOAD_VERSION
    kind   u16  TRANSITIONS | EPISODE_END | POLICY
    length u64  number of body bytes that follow
    crc32  u32  zlib.crc32 of the body
    body   = array pack: u32 json length, json {"meta": {...}, "arrays": [{key, dtype, shape}]},
             then each array's raw C-order bytes in that order.
Anything that does not match (truncated, wrong magic/version/kind, checksum, unknown dtype,
sizes that do not add up, shapes the receiver did not expect) raises PayloadError with the
reason; receivers log it and keep running.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, TwistStamped
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import UInt8MultiArray

from robot_rl.names import GRIPPER_JOINT
from robot_rl.spec import BOOKKEEPING, ObsSpec, canonical_quat, object_vector, proprio_vector

MAGIC = b"RRLP"
PAYLOAD_VERSION = 1
TRANSITIONS, EPISODE_END, POLICY = 1, 2, 3
KIND_NAMES = {TRANSITIONS: "transitions", EPISODE_END: "episode_end", POLICY: "policy"}
_HEADER = struct.Struct("<4sHHQI")
_ALLOWED_DTYPES = {"|u1", "|i1", "<u2", "<i2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8", "|b1"}
# Per-step bookkeeping carried with every transition besides the obs keys and "action": the
# same table the store uses (robot_rl.spec), so a transition and a stored step are one thing.
STEP_SCALARS = BOOKKEEPING


class CodecError(ValueError):
    """A message that cannot be turned into NumPy (wrong encoding, sizes, NaN...)."""


class PayloadError(CodecError):
    """A bulk payload that is rejected; the message says why."""


# ---------------------------------------------------------------------------- payload framing
def encode_payload(kind: int, body: bytes) -> bytes:
    if kind not in KIND_NAMES:
        raise PayloadError(f"unknown payload kind {kind}")
    return _HEADER.pack(MAGIC, PAYLOAD_VERSION, kind, len(body), zlib.crc32(body)) + body


def decode_payload(buf, expect_kind: int | None = None) -> tuple[int, bytes]:
    buf = bytes(buf)
    if len(buf) < _HEADER.size:
        raise PayloadError(f"truncated: {len(buf)} bytes, header needs {_HEADER.size}")
    magic, version, kind, length, crc = _HEADER.unpack_from(buf)
    if magic != MAGIC:
        raise PayloadError(f"wrong magic {magic!r}, expected {MAGIC!r}")
    if version != PAYLOAD_VERSION:
        raise PayloadError(f"payload version {version}, this build reads {PAYLOAD_VERSION}")
    if kind not in KIND_NAMES:
        raise PayloadError(f"unknown payload kind {kind}")
    if expect_kind is not None and kind != expect_kind:
        raise PayloadError(f"payload kind {KIND_NAMES[kind]}, expected {KIND_NAMES[expect_kind]}")
    body = buf[_HEADER.size :]
    if len(body) != length:
        raise PayloadError(f"truncated: body has {len(body)} bytes, header says {length}")
    if zlib.crc32(body) != crc:
        raise PayloadError("checksum mismatch (crc32 of body)")
    return kind, body


def payload_msg(kind: int, body: bytes) -> UInt8MultiArray:
    msg = UInt8MultiArray()
    msg.data = encode_payload(kind, body)
    return msg


def payload_from_msg(msg: UInt8MultiArray, expect_kind: int | None = None) -> tuple[int, bytes]:
    return decode_payload(msg.data.tobytes() if hasattr(msg.data, "tobytes") else msg.data, expect_kind)


# ---------------------------------------------------------------------------- array packs
def pack_arrays(meta: dict, arrays: dict) -> bytes:
    entries, blobs = [], []
    for key, value in arrays.items():
        a = np.ascontiguousarray(value)
        if a.dtype.str not in _ALLOWED_DTYPES:
            raise PayloadError(f"array {key!r} has unsupported dtype {a.dtype}")
        entries.append({"key": key, "dtype": a.dtype.str, "shape": list(a.shape)})
        blobs.append(a.tobytes())
    head = json.dumps({"meta": meta, "arrays": entries}).encode()
    return struct.pack("<I", len(head)) + head + b"".join(blobs)


def unpack_arrays(body: bytes) -> tuple[dict, dict]:
    if len(body) < 4:
        raise PayloadError("truncated: no array header")
    (n,) = struct.unpack_from("<I", body)
    if 4 + n > len(body):
        raise PayloadError("truncated: array header runs past the body")
    try:
        head = json.loads(body[4 : 4 + n])
        meta, entries = head["meta"], head["arrays"]
    except (ValueError, KeyError, TypeError) as e:
        raise PayloadError(f"unreadable array header: {e}") from None
    arrays, offset = {}, 4 + n
    for e in entries:
        dtype = str(e.get("dtype"))
        if dtype not in _ALLOWED_DTYPES:
            raise PayloadError(f"array {e.get('key')!r} has unsupported dtype {dtype}")
        shape = tuple(int(s) for s in e["shape"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if offset + nbytes > len(body):
            raise PayloadError(f"truncated: array {e['key']!r} runs past the body")
        arrays[e["key"]] = np.frombuffer(body, dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        offset += nbytes
    if offset != len(body):
        raise PayloadError(f"{len(body) - offset} stray bytes after the arrays")
    return meta, arrays


# ---------------------------------------------------------------------------- transitions
def encode_transitions(steps: list[dict], meta: dict) -> UInt8MultiArray:
    """steps: dicts with the obs keys, "action" and STEP_SCALARS; meta: run/episode ids."""
    keys = list(steps[0].keys())
    arrays = {k: np.stack([np.asarray(s[k]) for s in steps]) for k in keys}
    return payload_msg(TRANSITIONS, pack_arrays(meta, arrays))


def decode_bulk(msg) -> tuple[int, dict, dict]:
    """One pass over a bulk message of any kind: (kind, meta, arrays), the header and crc read
    once. A receiver that takes several kinds on one topic (the learner) decodes with this and
    hands the arrays to transitions_from / episode_end_from."""
    kind, body = payload_from_msg(msg)
    meta, arrays = unpack_arrays(body)
    return kind, meta, arrays


def transitions_from(meta: dict, arrays: dict, obs_spec: ObsSpec, action_dim: int) -> tuple[dict, list[dict]]:
    """Unpacked transitions -> (meta, steps); raises PayloadError naming the first key that is
    missing or has another shape than expected."""
    expected = {k: tuple(s) for k, s in obs_spec.shapes.items()}
    expected["action"] = (action_dim,)
    expected.update({k: () for k in STEP_SCALARS})
    n = None
    for key, shape in expected.items():
        if key not in arrays:
            raise PayloadError(f"transitions lack key {key!r}")
        a = arrays[key]
        if tuple(a.shape[1:]) != shape or (n is not None and a.shape[0] != n):
            raise PayloadError(f"transitions key {key!r} has shape {a.shape}, expected (N, *{shape})")
        n = a.shape[0]
    steps = [{k: arrays[k][i] for k in expected} for i in range(n)]
    return meta, steps


def decode_transitions(msg, obs_spec: ObsSpec, action_dim: int) -> tuple[dict, list[dict]]:
    """-> (meta, steps); raises PayloadError unless every key has the expected shape."""
    _, body = payload_from_msg(msg, TRANSITIONS)
    return transitions_from(*unpack_arrays(body), obs_spec, action_dim)


def encode_episode_end(final_obs: dict, meta: dict) -> UInt8MultiArray:
    return payload_msg(EPISODE_END, pack_arrays(meta, {k: np.asarray(v) for k, v in final_obs.items()}))


def episode_end_from(meta: dict, arrays: dict, obs_spec: ObsSpec) -> tuple[dict, dict]:
    """Unpacked episode end -> (meta, final obs); PayloadError unless it fits obs_spec."""
    try:
        obs_spec.check(arrays)
    except ValueError as e:
        raise PayloadError(f"episode end: {e}") from None
    return meta, arrays


def decode_episode_end(msg, obs_spec: ObsSpec) -> tuple[dict, dict]:
    _, body = payload_from_msg(msg, EPISODE_END)
    return episode_end_from(*unpack_arrays(body), obs_spec)


# ---------------------------------------------------------------------------- policies
def encode_policy(onnx_bytes: bytes, version: int, meta: dict | None = None, *,
                  sha256: str | None = None) -> UInt8MultiArray:
    """sha256: the bytes' hash when the caller already has it (the learner's export takes it once)."""
    m = dict(meta or {}, version=int(version), sha256=sha256 or hashlib.sha256(onnx_bytes).hexdigest())
    return payload_msg(POLICY, pack_arrays(m, {"onnx": np.frombuffer(onnx_bytes, np.uint8)}))


def decode_policy(msg) -> tuple[int, bytes, dict]:
    """-> (version, onnx bytes, meta); the sha256 in the meta must match the bytes."""
    _, body = payload_from_msg(msg, POLICY)
    meta, arrays = unpack_arrays(body)
    if "onnx" not in arrays or "version" not in meta or "sha256" not in meta:
        raise PayloadError("policy payload lacks onnx bytes, version or sha256")
    blob = arrays["onnx"].tobytes()
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise PayloadError("policy sha256 does not match its bytes")
    return int(meta["version"]), blob, meta


# ---------------------------------------------------------------------------- time
def to_stamp(t: float) -> Time:
    # Whole nanoseconds first: rounding the fraction alone turns 6.9999999999 into 6 s + 0 ns.
    sec, nanosec = divmod(int(round(t * 1e9)), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def from_stamp(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_key(stamp) -> int:
    """Exact integer nanoseconds, for matching messages that answer one observation."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


# ---------------------------------------------------------------------------- images
def image_msg(img: np.ndarray, t: float, frame_id: str) -> Image:
    img = np.ascontiguousarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise CodecError(f"image must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
    msg = Image()
    msg.header.stamp, msg.header.frame_id = to_stamp(t), frame_id
    msg.height, msg.width = img.shape[:2]
    msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, img.shape[1] * 3
    msg.data = img.tobytes()
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise CodecError(f"image encoding {msg.encoding!r}, expected rgb8 or bgr8")
    h, w, step = msg.height, msg.width, msg.step
    if step < w * 3 or len(msg.data) != h * step:
        raise CodecError(f"image data has {len(msg.data)} bytes, expected {h}x{step} (w={w})")
    raw = np.frombuffer(msg.data, np.uint8).reshape(h, step)[:, : w * 3].reshape(h, w, 3)
    return np.ascontiguousarray(raw[..., ::-1] if msg.encoding == "bgr8" else raw)


def camera_info_msg(info: dict, t: float) -> CameraInfo:
    """info: dict(width, height, K 3x3, D, frame_id) as the twin's camera_info() returns."""
    msg = CameraInfo()
    msg.header.stamp, msg.header.frame_id = to_stamp(t), info["frame_id"]
    msg.width, msg.height = int(info["width"]), int(info["height"])
    K = np.asarray(info["K"], np.float64).reshape(3, 3)
    msg.k = K.reshape(-1).tolist()
    msg.d = [float(x) for x in info.get("D", [0.0] * 5)]
    msg.distortion_model = "plumb_bob"
    msg.r = np.eye(3).reshape(-1).tolist()
    P = np.zeros((3, 4))
    P[:, :3] = K
    msg.p = P.reshape(-1).tolist()
    return msg


# ---------------------------------------------------------------------------- robot state
def joint_state_msg(names, pos, vel, t: float, effort=None) -> JointState:
    msg = JointState()
    msg.header.stamp = to_stamp(t)
    msg.name = list(names)
    msg.position = [float(x) for x in pos]
    msg.velocity = [float(x) for x in vel]
    if effort is not None:
        msg.effort = [float(x) for x in effort]
    return msg


def pose_stamped_msg(pos, quat_wxyz, t: float, frame_id: str) -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = to_stamp(t), frame_id
    _fill_pose(msg.pose, pos, quat_wxyz)
    return msg


def pose_array_msg(poses, t: float, frame_id: str) -> PoseArray:
    """poses: iterable of (pos, quat wxyz)."""
    msg = PoseArray()
    msg.header.stamp, msg.header.frame_id = to_stamp(t), frame_id
    for pos, quat in poses:
        p = Pose()
        _fill_pose(p, pos, quat)
        msg.poses.append(p)
    return msg


def _fill_pose(p: Pose, pos, quat_wxyz) -> None:
    p.position.x, p.position.y, p.position.z = (float(v) for v in pos)
    q = canonical_quat(quat_wxyz)
    p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (float(v) for v in q)


def pose_from_msg(p: Pose) -> tuple[np.ndarray, np.ndarray]:
    pos = np.array([p.position.x, p.position.y, p.position.z])
    quat = np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z])
    if not (np.isfinite(pos).all() and np.isfinite(quat).all()) or np.linalg.norm(quat) < 1e-6:
        raise CodecError("pose has non-finite values or a zero quaternion")
    return pos, quat


def proprio_from_msgs(joints: JointState, ee: PoseStamped, gripper_joints=(GRIPPER_JOINT,)) -> np.ndarray:
    """The spec's proprio vector from the robot's own messages (gripper width = sum of joints)."""
    index = {n: i for i, n in enumerate(joints.name)}
    missing = [j for j in gripper_joints if j not in index]
    if missing or len(joints.position) != len(joints.name):
        raise CodecError(f"joint_states lacks gripper joints {missing} or positions")
    width = sum(joints.position[index[j]] for j in gripper_joints)
    pos, quat = pose_from_msg(ee.pose)
    out = proprio_vector(pos, quat, width)
    if not np.isfinite(out).all():
        raise CodecError("proprio has non-finite values")
    return out


def observation_from_msgs(msgs: dict, cameras=(), with_object: bool = True,
                          gripper_joints=(GRIPPER_JOINT,)) -> dict:
    """The spec's observation dict from one observation's messages (topic -> message, the
    contract's topic names). Raises CodecError."""
    from robot_rl import names as C  # the contract's topic names (ROS-free spellings)

    obs = {"proprio": proprio_from_msgs(msgs[C.JOINT_STATES], msgs[C.EE_POSE], gripper_joints)}
    if with_object:
        obs["object"] = object_from_msg(msgs[C.OBJECT_POSES])
    for cam in cameras:
        obs[cam] = image_from_msg(msgs[C.camera_topic(cam)])
    return obs


def object_from_msg(msg: PoseArray, n_objects: int | None = None) -> np.ndarray:
    if n_objects is not None and len(msg.poses) != n_objects:
        raise CodecError(f"object_poses has {len(msg.poses)} poses, expected {n_objects}")
    return object_vector([pose_from_msg(p) for p in msg.poses])


# ---------------------------------------------------------------------------- commands
def twist_msg(twist6, t: float, frame_id: str) -> TwistStamped:
    msg = TwistStamped()
    msg.header.stamp, msg.header.frame_id = to_stamp(t), frame_id
    v = [float(x) for x in np.asarray(twist6).reshape(6)]
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = v[:3]
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = v[3:]
    return msg


def twist_from_msg(msg: TwistStamped) -> np.ndarray:
    lin, ang = msg.twist.linear, msg.twist.angular
    return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z])


def gripper_msg(grip: float, t: float) -> JointState:
    """grip in [-1, 1] (> 0 closes) -> opening fraction 0 (closed) .. 1 (open)."""
    msg = JointState()
    msg.header.stamp = to_stamp(t)
    msg.name = [GRIPPER_JOINT]
    msg.position = [float(np.clip((1.0 - grip) / 2.0, 0.0, 1.0))]
    return msg


def gripper_from_msg(msg: JointState) -> float:
    if list(msg.name) != [GRIPPER_JOINT] or len(msg.position) != 1:
        raise CodecError(f"gripper command must name [{GRIPPER_JOINT!r}] with one position")
    frac = float(msg.position[0])
    if not np.isfinite(frac):
        raise CodecError("gripper command is not finite")
    return float(np.clip(1.0 - 2.0 * frac, -1.0, 1.0))


# ---------------------------------------------------------------------------- task status
STATUS_NAME = "task"


def status_msg(t: float, values: dict) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = to_stamp(t)
    st = DiagnosticStatus(level=DiagnosticStatus.OK, name=STATUS_NAME)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    msg.status = [st]
    return msg


def status_from_msg(msg: DiagnosticArray) -> dict:
    """-> dict(reward float, terminated/truncated/success bool, episode/step int)."""
    for st in msg.status:
        if st.name == STATUS_NAME:
            raw = {kv.key: kv.value for kv in st.values}
            try:
                return {
                    "reward": float(raw["reward"]),
                    "terminated": raw["terminated"] == "True",
                    "truncated": raw["truncated"] == "True",
                    "success": raw["success"] == "True",
                    "episode": int(raw["episode"]),
                    "step": int(raw["step"]),
                }
            except (KeyError, ValueError) as e:
                raise CodecError(f"task status lacks or garbles {e}") from None
    raise CodecError(f"no {STATUS_NAME!r} entry in the task status")


def diagnostics_msg(t: float, name: str, values: dict, level: int = 0, message: str = "") -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = to_stamp(t)
    st = DiagnosticStatus(level=bytes([level]), name=name, message=message)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    msg.status = [st]
    return msg


def diagnostics_values(msg: DiagnosticArray, name: str) -> dict | None:
    for st in msg.status:
        if st.name == name:
            return {kv.key: kv.value for kv in st.values}
    return None
