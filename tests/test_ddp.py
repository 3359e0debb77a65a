"""Data-parallel learner updates (robot_rl/training/ddp.py): two gloo processes on localhost, each
on half of one fixed global batch, take the same step as one process on the whole batch; the
learner's mode (spawn_data_parallel, `robot-rl learner --nproc N`) drives them through the
training loop, starts the workers identical to a warm-started agent and fails, not hangs, when
a worker dies or stalls."""
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robot_rl.data.replay import MixedReplay
from robot_rl.data.synthetic import make_schema, step_at
from robot_rl.learn import make_agent
from robot_rl.learn.export import run_onnx
from robot_rl.learn.synthetic import STATE_SPEC, random_batch, random_obs
from robot_rl.training.ddp import (DataParallelAgent, DataParallelError, free_port, shard_batch, shard_indices,
                                   spawn_data_parallel, state_fingerprint)
from robot_rl.training.loop import TrainingLoop
from robot_rl.training.settings import LearnerSettings

H, A, B, UTD = 2, 3, 32, 2
CFG = {"chunk_len": H, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "n_critics": 3, "flow_steps": 3}
# Where the whole-batch step is exactly defined for a data-parallel run (see ddp.py): no per-row
# randomness reaches a gradient and no per-rank normaliser differs.
EXACT = {**CFG, "target_subset": 3, "alpha": 0.0}  # target min over all critics: the subset draw is moot


def exact_batch():
    """Online rows only (no BC term); both halves see the same observations in the same order
    (FQL's mean |Q| normaliser is then the same on each rank) but different actions, rewards,
    discounts and next observations, so each rank's critic gradient is its own."""
    b = random_batch(STATE_SPEC, B, H, A, seed=3, demo_fraction=0.0)
    order = shard_indices(B, 0, 2, UTD)
    for key, v in b["obs"].items():  # rank 1's rows get rank 0's observations
        v[shard_indices(B, 1, 2, UTD)] = v[order]
    return b


def exact_agent():
    agent = make_agent("flow", STATE_SPEC, A, EXACT, device="cpu")
    with torch.no_grad():  # mu(s, z) ignores z: the next-action and actor noise drop out
        first = agent.nets["onestep"].net[0]
        first.weight[:, -agent.flat_dim:] = 0.0
    return agent


def _worker(rank, world, port, out, exact, hook_on):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        if exact:
            agent, batch = exact_agent(), exact_batch()
        else:
            agent = make_agent("flow", STATE_SPEC, A, CFG, device="cpu")
            batch = random_batch(STATE_SPEC, B, H, A, seed=4)
        ddp = DataParallelAgent(agent)
        if not hook_on:
            agent.grad_hook = None  # the broken variant the test must catch
        shard = shard_batch(batch, rank, world, UTD)
        metrics = [ddp.update(shard, n_critic_steps=UTD) for _ in range(1 if exact else 3)]
        torch.save({"nets": agent.nets.state_dict(), "metrics": metrics}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ranks(tmp_path, exact, hook_on=True, world=2):
    # fork: the children inherit the imported modules (a spawned child re-imports torch and the
    # package, tens of seconds on a loaded 2-core machine); they start no threads before gloo
    mp.start_processes(_worker, args=(world, free_port(), str(tmp_path), exact, hook_on), nprocs=world, join=True,
                       start_method="fork")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def test_shards_are_slices_of_the_global_minibatches():
    for k in (1, 2, 4):
        shards = [shard_indices(32, r, 2, k) for r in range(2)]
        assert sorted(np.concatenate(shards)) == list(range(32))
        for j in range(k):  # the rank's minibatch j (Agent.update: rows j::k) is inside global minibatch j
            for s in shards:
                assert set(s[j::k]) <= set(range(32)[j::k])
    assert list(shard_indices(8, 1, 2)) == [1, 3, 5, 7]  # k = 1: interleaved, keeps the demo mix
    with pytest.raises(ValueError, match="split"):
        shard_indices(30, 0, 2, 4)


def _assert_nets_close(got, want, atol):
    flat = H * A
    for name, w in want.items():
        if not w.dtype.is_floating_point:
            continue
        g = got[name]
        if name == "onestep.net.0.weight":
            # the zeroed noise columns still get gradient z * dL/dh, from each run's own z draws;
            # Adam is elementwise, so they touch nothing else in this one update
            g, w = g[:, :-flat], w[:, :-flat]
        torch.testing.assert_close(g, w, atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("hook_on", [True, False])
def test_two_ranks_take_the_single_process_step_on_the_whole_batch(tmp_path, hook_on):
    ranks = run_ranks(tmp_path, exact=True, hook_on=hook_on)
    ref = exact_agent()
    ref_metrics = ref.update(exact_batch(), n_critic_steps=UTD)  # fits its normaliser on the whole batch too
    want = ref.nets.state_dict()
    before = exact_agent().nets.state_dict()
    moved = [n for n, w in want.items() if w.dtype.is_floating_point and not torch.equal(w, before[n])]
    assert any(n.startswith("critic.") for n in moved) and any(n.startswith("onestep.") for n in moved)
    if not hook_on:  # without the all-reduce each rank follows its own half: the check must see it
        with pytest.raises(AssertionError):
            _assert_nets_close(ranks[0]["nets"], want, 1e-5)
        return
    for r in ranks:
        _assert_nets_close(r["nets"], want, 1e-5)
    assert ranks[0]["metrics"][0]["critic_loss"] == pytest.approx(ref_metrics["critic_loss"], rel=1e-5)


def test_ranks_stay_identical_with_noise_and_subsets(tmp_path):
    """Default flow config (per-row noise, random target subset, BC on demo rows): the ranks'
    weights stay bitwise equal over several updates and match neither rank's solo update."""
    ranks = run_ranks(tmp_path, exact=False)
    for name, w in ranks[0]["nets"].items():
        assert torch.equal(w, ranks[1]["nets"][name]), name
    assert all(np.isfinite(list(m.values())).all() for m in ranks[0]["metrics"])
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # averaged over ranks
    # nobody fitted the state normaliser: it is fitted on the whole batch, as one process would
    whole = make_agent("flow", STATE_SPEC, A, CFG, device="cpu")
    whole.fit_obs_normalizer(random_batch(STATE_SPEC, B, H, A, seed=4)["obs"])
    for name in ("encoder.vec_mean", "encoder.vec_std"):
        torch.testing.assert_close(ranks[0]["nets"][name], whole.nets.state_dict()[name], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------- the learner's mode
SCHEMA = make_schema(cameras=(), action_dim=A)  # proprio + object, as STATE_SPEC


def _replay(constant_obs: bool) -> MixedReplay:
    """A real replay of synthetic online steps (4 episodes of 12). constant_obs: every step
    has the same observation (actions and rewards still differ), so both ranks' rows have the
    same FQL mean |Q| normaliser, which the exact comparison needs (see exact_batch)."""
    replay = MixedReplay.create(SCHEMA, 1000, chunk=H, gamma=0.99)
    for i in range(48):
        step = step_at(SCHEMA, i, terminated=i % 12 == 11)
        if constant_obs:
            step.update(proprio=np.linspace(-1, 1, 8, dtype=np.float32), object=np.linspace(1, -1, 7, dtype=np.float32))
        replay.add_step(step)
        if i % 12 == 11:
            replay.end_episode({k: step[k] for k in ("proprio", "object")})
    return replay


def _loop(agent, replay) -> TrainingLoop:
    return TrainingLoop(agent, replay, utd=UTD, batch_size=B // UTD, seed=5)  # global batch B: as above


@pytest.fixture
def no_process_group():
    yield
    assert not dist.is_initialized(), "close() must leave the process group"


def test_two_processes_through_the_training_loop_equal_one_process(tmp_path, no_process_group):
    """spawn_data_parallel's rank 0 in place of the agent: N loop updates (sampled from a real
    replay) leave rank 0 equal to one process on the same global batches, the worker bitwise
    equal to rank 0, and export and checkpoints work through it."""
    normaliser_obs = random_obs(STATE_SPEC, 256, np.random.default_rng(1))
    ref, agent = exact_agent(), exact_agent()
    for a in (ref, agent):  # as the learner fits it on demos before wrapping: it travels with the agent
        a.fit_obs_normalizer(normaliser_obs)
    replay = _replay(constant_obs=True)
    updater = spawn_data_parallel(agent, 2, tmp_path, timeout_s=60)
    try:
        loop, ref_loop = _loop(updater, replay), _loop(ref, replay)
        for _ in range(3):
            loop.update()
            ref_loop.update()
        fingerprints = updater.fingerprints()
        blob, sha = loop.export()
        checkpoint = updater.state_dict()
    finally:
        updater.close()
    assert fingerprints[0] == fingerprints[1] == state_fingerprint(agent)  # the worker is in step
    assert agent.num_updates == 3 and loop.critic_steps == 3 * UTD
    # The noise columns learn from each run's own draws (see _assert_nets_close) and feed back
    # slightly from the second update on: allclose, not exact, over several updates.
    _assert_nets_close(agent.nets.state_dict(), ref.nets.state_dict(), 1e-5)
    assert loop.metrics["critic_loss"] == pytest.approx(ref_loop.metrics["critic_loss"], rel=1e-4)
    assert sha == hashlib.sha256(blob).hexdigest()
    obs = random_obs(STATE_SPEC, 4, np.random.default_rng(2))
    np.testing.assert_allclose(run_onnx(blob, obs), agent.act(obs), atol=1e-5)
    assert checkpoint["counters"]["num_updates"] == 3 and checkpoint["nets"].keys() == ref.nets.state_dict().keys()
    assert agent.grad_hook is None  # after close the agent is a single-process one again
    assert not list(tmp_path.iterdir())  # the start checkpoint is gone once the workers read it


def _warm_agent():
    """Trained a little in this process: Adam moments, RNG and counters are no longer a fresh
    agent's, and the normaliser is fitted."""
    agent = make_agent("flow", STATE_SPEC, A, CFG, device="cpu")
    for seed in (4, 5):
        agent.update(random_batch(STATE_SPEC, B, H, A, seed=seed), n_critic_steps=UTD)
    return agent


def test_the_fingerprint_sees_optimiser_state_not_only_weights(tmp_path):
    """What a weight broadcast alone would leave a worker with: the same weights, buffers and
    RNG, a fresh Adam. The fingerprint the next test compares ranks by tells the two apart."""
    warm = _warm_agent()
    assert warm.optims["critic"].state and warm.optims["actor"].state
    weights_only = make_agent("flow", STATE_SPEC, A, CFG, device="cpu")
    weights_only.nets.load_state_dict(warm.nets.state_dict())
    weights_only.gen.set_state(warm.gen.get_state())
    weights_only.num_updates, weights_only.num_critic_steps = warm.num_updates, warm.num_critic_steps
    assert state_fingerprint(weights_only) != state_fingerprint(warm)
    warm.save(tmp_path / "agent.pt")  # what the workers start from
    assert state_fingerprint(make_agent("flow", STATE_SPEC, A, CFG, device="cpu").load(tmp_path / "agent.pt")) == \
        state_fingerprint(warm)


def test_a_warm_started_agent_is_the_same_on_every_rank(tmp_path, no_process_group):
    """Default flow config (per-row noise, demo and online rows): a warm-started agent's Adam
    moments, RNG and counters reach the worker, and the ranks stay bitwise equal while training."""
    agent = _warm_agent()
    updater = spawn_data_parallel(agent, 2, tmp_path, timeout_s=60)
    try:
        at_start = updater.fingerprints()
        loop = _loop(updater, _replay(constant_obs=False))
        for _ in range(2):
            loop.update()
        after = updater.fingerprints()
    finally:
        updater.close()
    assert at_start[0] == at_start[1] == state_fingerprint(_warm_agent())
    assert after[0] == after[1] != at_start[0]
    assert agent.num_updates == 4


def _hold_in_update(updater, kill_after_s=None):
    """update() with the worker stopped (SIGSTOP: alive, silent), optionally killed meanwhile;
    returns (the error update raised, seconds it took)."""
    worker = updater.workers[0]
    os.kill(worker.pid, signal.SIGSTOP)
    if kill_after_s is not None:
        threading.Timer(kill_after_s, os.kill, (worker.pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(DataParallelError) as e:
        updater.update(random_batch(STATE_SPEC, B, H, A, seed=4), n_critic_steps=UTD)
    return e.value, time.monotonic() - t0


def test_a_worker_killed_mid_update_fails_the_update(tmp_path, no_process_group):
    updater = spawn_data_parallel(make_agent("flow", STATE_SPEC, A, CFG, device="cpu"), 2, tmp_path, timeout_s=120)
    try:
        error, took = _hold_in_update(updater, kill_after_s=0.5)
        assert took < 60, "a dead worker must end the collective, not wait out the timeout"
        assert "rank 1 exited with code -9" in str(error)
        with pytest.raises(DataParallelError, match="failed before"):  # the group stays failed
            updater.update(random_batch(STATE_SPEC, B, H, A, seed=4), n_critic_steps=UTD)
    finally:
        t0 = time.monotonic()
        updater.close()
    assert time.monotonic() - t0 < 10


def test_a_stalled_worker_times_the_update_out(tmp_path, no_process_group):
    updater = spawn_data_parallel(make_agent("flow", STATE_SPEC, A, CFG, device="cpu"), 2, tmp_path, timeout_s=5)
    try:
        error, took = _hold_in_update(updater)
        assert 4 < took < 30 and "update failed" in str(error)
    finally:
        updater.close(join_s=1)  # the stopped worker is killed
    assert not updater.workers[0].is_alive()


PROBE = """import sys
open(sys.argv[1], "a").write(__name__ + "\\n")  # every process that imports this module
if __name__ == "__main__":
    from robot_rl.learn import make_agent
    from robot_rl.learn.synthetic import STATE_SPEC
    from robot_rl.training.ddp import spawn_data_parallel

    agent = make_agent("flow", STATE_SPEC, 3, {"chunk_len": 2, "actor_hidden": [16], "critic_hidden": [16],
                                                "n_critics": 2}, device="cpu")
    updater = spawn_data_parallel(agent, 2, sys.argv[2])
    assert len(set(updater.fingerprints())) == 1
    updater.close()
"""


def test_workers_do_not_import_the_main_module(tmp_path):
    """Spawned workers skip the parent's __main__: for the learner node (python -m
    robot_rl.nodes.learner) that module imports rclpy, which a worker must not load."""
    (tmp_path / "ddp_probe.py").write_text(PROBE)
    marker = tmp_path / "imports.txt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    subprocess.run([sys.executable, "-m", "ddp_probe", str(marker), str(tmp_path)], env=env, check=True,
                   timeout=120)
    assert marker.read_text().split() == ["__main__"]


def test_learner_nproc_setting_and_cli(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="nproc"):
        LearnerSettings(nproc=0)
    with pytest.raises(ValueError, match="divide batch_size"):
        LearnerSettings(nproc=3, batch_size=64)
    assert LearnerSettings(nproc=4).nproc == 4
    from robot_rl import cli
    from robot_rl.bringup import node_overrides

    seen = {}

    def run_graph(name, params, overrides, *args, **kwargs):  # the graph's overrides, no graph
        seen.update(overrides)
        return 0, "done"

    monkeypatch.setattr(cli, "run_graph", run_graph)
    cli.main(["learner", "--nproc", "2", "--run-dir", str(tmp_path)])
    assert node_overrides(seen, "learner")["nproc"] == 2 and "nproc" not in node_overrides(seen, "actor")
    seen.clear()
    cli.main(["learner", "--run-dir", str(tmp_path)])
    assert "nproc" not in node_overrides(seen, "learner")  # the params file's value stands
    seen.clear()
    cli.main(["robot", "--twin", "--learner", "--nproc", "2", "--run-dir", str(tmp_path)])
    assert node_overrides(seen, "learner")["nproc"] == 2 and "nproc" not in node_overrides(seen, "actor")
    with pytest.raises(SystemExit, match="--learner"):  # no local learner to split
        cli.main(["robot", "--twin", "--nproc", "2", "--run-dir", str(tmp_path)])
