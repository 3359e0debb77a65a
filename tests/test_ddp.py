"""Data-parallel learner updates (robot_rl/training/ddp.py): two gloo processes on localhost, each
on half of one fixed global batch, take the same step as one process on the whole batch."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robot_rl.learn import make_agent
from robot_rl.learn.synthetic import STATE_SPEC, random_batch
from robot_rl.training.ddp import DataParallelAgent, shard_batch, shard_indices

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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp_path, exact, hook_on=True, world=2):
    # fork: the children inherit the imported modules (a spawned child re-imports torch and the
    # package, tens of seconds on a loaded 2-core machine); they start no threads before gloo
    mp.start_processes(_worker, args=(world, _free_port(), str(tmp_path), exact, hook_on), nprocs=world, join=True,
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
