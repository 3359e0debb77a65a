"""A bounded soak (issue 18): the sim graph runs for a stretch of robot time with nothing lost
and nothing growing. The hour-long version is bench/bench_soak.py; this is its short cut, with
the same measurements: RSS per node (pids.json, /proc), the actor's latency as an outside ROS
tool sees it, and the step counts of the twin, the store and the learner."""
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_soak import RATE_HZ, soak, window_stats  # noqa: E402

STEPS = 1500  # 2.5 min of robot time at config/sim.yaml's 10 Hz


@pytest.mark.slow
def test_a_bounded_soak_loses_no_step_and_grows_nothing(tmp_path):
    fig = soak(tmp_path / "run", STEPS, wall_s=900, sample_s=5.0, log=lambda *_: None)
    print({k: v for k, v in fig.items() if k not in ("rss", "latency_ms", "stdout_tail")})
    assert fig["returncode"] == 0 and not fig["stopped_early"], fig["stdout_tail"]
    # no lost step: what the twin executed, what the store holds and what the learner trained on
    assert fig["store_rows"] == STEPS == fig["learner_ingested"] == fig["learner_replay_steps"]
    assert fig["store_rows_the_twin_did_not_execute"] == 0 and fig["twin_steps_not_in_store"] == 0
    assert fig["twin_steps_in_store_range"] == STEPS and fig["lost_steps"] == 0
    # steady memory: past the start-up (imports, first batches, the agent's buffers), no node grows
    rss = fig["rss"]
    assert len(rss) >= 6
    settled, last = rss[len(rss) // 3]["mb"], rss[-1]["mb"]
    growth = {n: last[n] - settled[n] for n in last}
    print("RSS growth after the first third (MB):", growth)
    assert all(g < 40 for g in growth.values()), growth
    # no growth in the actor's latency: the last third against the first
    span = STEPS / RATE_HZ / 3
    first, later = window_stats(fig, True, span), window_stats(fig, False, span)
    print("latency first / last third:", first, later)
    assert first["n"] > 300 and later["n"] > 300
    assert later["p50"] <= max(2 * first["p50"], first["p50"] + 10), (first, later)
