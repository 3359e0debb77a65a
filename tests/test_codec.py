"""Codec: round trips for every message kind, and every way a payload is rejected."""
import struct

import numpy as np
import pytest

from robot_rl import codec
from robot_rl.spec import ActionSpec, ObsSpec

SPEC = ObsSpec({"proprio": (8,), "object": (7,), "front": (4, 5, 3)}, {"proprio": "<f4", "object": "<f4", "front": "|u1"})


def _step(i=0):
    rng = np.random.default_rng(i)
    return {
        "proprio": rng.normal(size=8).astype(np.float32),
        "object": rng.normal(size=7).astype(np.float32),
        "front": rng.integers(0, 255, (4, 5, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, 4).astype(np.float32),
        "reward": np.float32(i), "terminated": False, "truncated": i == 2, "intervened": i % 2 == 1,
        "policy_version": np.int32(3), "timestamp": 0.1 * i, "eval": False,
    }


def test_transitions_round_trip():
    steps = [_step(i) for i in range(3)]
    msg = codec.encode_transitions(steps, {"episode": 4, "index": 10})
    meta, out = codec.decode_transitions(msg, SPEC, 4)
    assert meta == {"episode": 4, "index": 10}
    assert len(out) == 3
    for a, b in zip(steps, out):
        for k in a:
            np.testing.assert_array_equal(np.asarray(a[k]), b[k])


def test_policy_and_episode_end_round_trip():
    blob = bytes(range(256)) * 10
    version, out, meta = codec.decode_policy(codec.encode_policy(blob, 7, {"kind": "flow"}))
    assert (version, out, meta["kind"]) == (7, blob, "flow")
    final = {k: v for k, v in _step().items() if k in SPEC.shapes}
    meta, obs = codec.decode_episode_end(codec.encode_episode_end(final, {"success": True}), SPEC)
    assert meta == {"success": True}
    np.testing.assert_array_equal(obs["front"], final["front"])


def _raw(msg):
    return bytes(msg.data)


def _msg(raw):
    from std_msgs.msg import UInt8MultiArray
    m = UInt8MultiArray()
    m.data = raw
    return m


def _rejects(raw, match, **kw):
    with pytest.raises(codec.PayloadError, match=match):
        codec.decode_transitions(_msg(raw), SPEC, kw.get("action_dim", 4))


def test_rejects_truncated_payloads():
    raw = _raw(codec.encode_transitions([_step()], {}))
    _rejects(raw[:10], "truncated")
    _rejects(raw[:-1], "truncated")
    # A consistent header over a truncated body still fails inside the array pack.
    body = raw[24:-5]
    _rejects(codec.encode_payload(codec.TRANSITIONS, body), "truncated|runs past")


def test_rejects_wrong_magic_version_kind():
    raw = bytearray(_raw(codec.encode_transitions([_step()], {})))
    _rejects(b"XXXX" + bytes(raw[4:]), "magic")
    bad_version = bytes(raw[:4]) + struct.pack("<H", 99) + bytes(raw[6:])
    _rejects(bad_version, "version 99")
    policy = _raw(codec.encode_policy(b"abc", 1))
    _rejects(policy, "kind policy, expected transitions")


def test_rejects_bad_checksum():
    raw = bytearray(_raw(codec.encode_transitions([_step()], {})))
    raw[-1] ^= 0xFF
    _rejects(bytes(raw), "checksum")


def test_rejects_wrong_shape_and_missing_key():
    good = _step()
    bad = dict(good, proprio=np.zeros(9, np.float32))
    _rejects(_raw(codec.encode_transitions([bad], {})), "'proprio' has shape")
    _rejects(_raw(codec.encode_transitions([good], {})), "'action' has shape", action_dim=7)
    missing = {k: v for k, v in good.items() if k != "object"}
    _rejects(_raw(codec.encode_transitions([missing], {})), "lack key 'object'")


def test_rejects_policy_with_wrong_sha():
    from robot_rl.codec import pack_arrays
    body = pack_arrays({"version": 1, "sha256": "0" * 64}, {"onnx": np.frombuffer(b"abc", np.uint8)})
    with pytest.raises(codec.PayloadError, match="sha256"):
        codec.decode_policy(_msg(codec.encode_payload(codec.POLICY, body)))


def test_rejects_object_dtype_and_stray_bytes():
    body = codec.pack_arrays({}, {"x": np.zeros(3, np.float32)}) + b"\x00"
    with pytest.raises(codec.PayloadError, match="stray"):
        codec.unpack_arrays(body)
    with pytest.raises(codec.PayloadError, match="unsupported dtype"):
        codec.pack_arrays({}, {"x": np.array(["a"], dtype=object)})


def test_image_round_trip_and_rejections():
    img = np.random.default_rng(0).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    msg = codec.image_msg(img, 1.25, "front_optical_frame")
    np.testing.assert_array_equal(codec.image_from_msg(msg), img)
    msg.encoding = "bgr8"
    np.testing.assert_array_equal(codec.image_from_msg(msg), img[..., ::-1])
    msg.encoding = "mono8"
    with pytest.raises(codec.CodecError, match="encoding"):
        codec.image_from_msg(msg)
    msg = codec.image_msg(img, 1.25, "f")
    msg.data = bytes(msg.data)[:-3]
    with pytest.raises(codec.CodecError, match="bytes"):
        codec.image_from_msg(msg)


def test_robot_state_round_trip():
    js = codec.joint_state_msg(["j1", "gripper"], [0.1, 0.04], [0.0, 0.0], 2.0)
    ee = codec.pose_stamped_msg([0.5, 0.0, 0.2], [0.0, 1.0, 0.0, 0.0], 2.0, "base_link")
    p = codec.proprio_from_msgs(js, ee)
    np.testing.assert_allclose(p, [0.5, 0, 0.2, 0, 1, 0, 0, 0.04], atol=1e-6)
    ee.pose.position.x = float("nan")
    with pytest.raises(codec.CodecError, match="non-finite"):
        codec.proprio_from_msgs(js, ee)
    with pytest.raises(codec.CodecError, match="gripper"):
        codec.proprio_from_msgs(codec.joint_state_msg(["j1"], [0.1], [0.0], 2.0), ee)
    arr = codec.pose_array_msg([([0.5, 0.1, 0.02], [1, 0, 0, 0])], 2.0, "base_link")
    np.testing.assert_allclose(codec.object_from_msg(arr, 1), [0.5, 0.1, 0.02, 1, 0, 0, 0], atol=1e-6)
    with pytest.raises(codec.CodecError, match="expected 2"):
        codec.object_from_msg(arr, 2)


def test_commands_round_trip():
    spec = ActionSpec()
    a = np.array([0.5, -1.0, 0.25, 0.8], np.float32)
    twist, grip = spec.to_command(a)
    t = codec.twist_from_msg(codec.twist_msg(twist, 3.0, "base_link"))
    g = codec.gripper_from_msg(codec.gripper_msg(grip, 3.0))
    np.testing.assert_allclose(spec.from_command(t, g), a, atol=1e-6)
    bad = codec.gripper_msg(0.0, 3.0)
    bad.position = [float("nan")]
    with pytest.raises(codec.CodecError):
        codec.gripper_from_msg(bad)


def test_status_round_trip_and_garbage():
    values = dict(reward=1.0, terminated=True, truncated=False, success=True, episode=3, step=9)
    assert codec.status_from_msg(codec.status_msg(1.0, values)) == values
    msg = codec.status_msg(1.0, dict(values, reward="lots"))
    with pytest.raises(codec.CodecError):
        codec.status_from_msg(msg)


def test_stamp_keys_match_exactly():
    t = 0.0
    for _ in range(200):  # sim time accumulated in float steps, as a twin does
        t += 0.1
        st = codec.to_stamp(t)
        assert abs(codec.from_stamp(st) - t) < 1e-9, t  # never a whole second off
        assert codec.stamp_key(codec.to_stamp(codec.from_stamp(st))) == codec.stamp_key(st)
    for t in (0.1, 12.3, 100.0000001, 7 * 0.1, 6.9999999999):
        assert codec.stamp_key(codec.to_stamp(t)) == codec.stamp_key(codec.to_stamp(float(t)))
    assert abs(codec.from_stamp(codec.to_stamp(12.3)) - 12.3) < 1e-9
