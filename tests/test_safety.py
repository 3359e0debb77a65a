"""The safety filter: NaN, bounds, rate limits, workspace box, stale observations, e-stop."""
import numpy as np
import pytest

from robot_rl.safety import SafetyConfig, SafetyFilter, within_bounds

CFG = SafetyConfig(max_lin_vel=0.25, max_ang_vel=1.0, max_lin_accel=100.0, max_ang_accel=100.0,
                   workspace_min=(0.2, -0.3, 0.0), workspace_max=(0.8, 0.3, 0.5), stale_timeout_s=0.5)
CENTER = np.array([0.5, 0.0, 0.25])


def test_nan_command_holds():
    f = SafetyFilter(CFG, control_dt=0.1)
    r = f.filter([np.nan, 0, 0, 0, 0, 0], 1.0, CENTER, 0.0)
    assert r.held and np.all(r.twist == 0) and "non-finite" in r.reasons[0]
    r = f.filter([0.1, 0, 0, 0, 0, 0], np.nan, CENTER, 0.0)
    assert r.held


def test_out_of_bounds_speed_is_clipped():
    f = SafetyFilter(CFG, control_dt=0.1)
    r = f.filter([3.0, 4.0, 0, 0, 0, 9.0], 0.5, CENTER, 0.0)
    assert not r.held
    assert np.linalg.norm(r.twist[:3]) == pytest.approx(0.25)
    assert np.linalg.norm(r.twist[3:]) == pytest.approx(1.0)
    np.testing.assert_allclose(r.twist[:2] / np.linalg.norm(r.twist[:2]), [0.6, 0.8])  # direction kept
    assert within_bounds(r.twist, CFG)
    assert not within_bounds([3.0, 4.0, 0, 0, 0, 0], CFG)


def test_stale_observation_holds():
    f = SafetyFilter(CFG, control_dt=0.1)
    assert f.filter([0.1, 0, 0, 0, 0, 0], 0.0, CENTER, 0.6).held
    assert f.filter([0.1, 0, 0, 0, 0, 0], 0.0, CENTER, float("inf")).held
    assert not f.filter([0.1, 0, 0, 0, 0, 0], 0.0, CENTER, 0.4).held


def test_estop_and_bad_ee_hold():
    f = SafetyFilter(CFG, control_dt=0.1)
    assert f.filter([0.1, 0, 0, 0, 0, 0], 0.0, CENTER, 0.0, estop=True).reasons == ("estop",)
    assert f.filter([0.1, 0, 0, 0, 0, 0], 0.0, [np.nan, 0, 0], 0.0).held


def test_hold_keeps_gripper():
    f = SafetyFilter(CFG, control_dt=0.1)
    f.filter([0, 0, 0, 0, 0, 0], 1.0, CENTER, 0.0)  # closed on an object
    r = f.filter([np.nan] * 6, -1.0, CENTER, 0.0)
    assert r.held and r.grip == 1.0  # a fault must not drop what it holds


def test_workspace_box():
    f = SafetyFilter(CFG, control_dt=0.1)
    near = np.array([0.79, 0.0, 0.25])  # 1 cm from the +x face
    r = f.filter([0.25, 0, 0, 0, 0, 0], 0.0, near, 0.0)
    assert r.twist[0] == pytest.approx(0.1) and "workspace" in r.reasons  # lands on the face
    outside = np.array([0.9, 0.0, 0.25])
    r = f.filter([0.2, 0.1, 0, 0, 0, 0], 0.0, outside, 0.0)
    assert r.twist[0] == 0.0 and r.twist[1] == pytest.approx(0.1)
    r = f.filter([-0.2, 0, 0, 0, 0, 0], 0.0, outside, 0.0)
    assert r.twist[0] == pytest.approx(-0.2)  # back in is allowed


def test_rate_limit():
    cfg = SafetyConfig(**{**CFG.__dict__, "max_lin_accel": 1.0})
    f = SafetyFilter(cfg, control_dt=0.1)
    r = f.filter([0.25, 0, 0, 0, 0, 0], 0.0, CENTER, 0.0)
    assert r.twist[0] == pytest.approx(0.1) and "rate limited" in r.reasons
    r = f.filter([0.25, 0, 0, 0, 0, 0], 0.0, CENTER, 0.0)
    assert r.twist[0] == pytest.approx(0.2)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown safety keys"):
        SafetyConfig.from_dict({"max_speed": 1})
    with pytest.raises(ValueError, match="below"):
        SafetyConfig.from_dict({"workspace_min": [1, 1, 1], "workspace_max": [0, 0, 0]})
    with pytest.raises(ValueError, match="3 values"):
        SafetyConfig.from_dict({"workspace_min": [1, 1]})
