"""Gated deployment (robot_rl/training/gate.py, twin_scorer.py, the learner's wiring,
`robot-rl deploy`): the decision rule on numbers, the off-policy estimate on a critic trained on
a toy, the twin scorer on a good and an inverted policy, the gate's pipeline, and the learner
node over DDS publishing only what the gate accepts and obeying a rollback."""
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from robot_rl.training.gate import (EPS, Figures, Gate, GateSettings, ScorerError, ScorerProcess, decide,
                                    onnx_actions, onnx_session, ope, recent_states, snapshot)

S = GateSettings(enabled=True, success_margin=0.1, value_margin=0.05)


# ---------------------------------------------------------------------------- policies as ONNX
def _onnx(module: nn.Module, obs_dims=(("proprio", 8), ("object", 7))) -> bytes:
    f = io.BytesIO()
    args = tuple(torch.zeros(2, d) for _, d in obs_dims)
    names = [n for n, _ in obs_dims]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, f, input_names=names, output_names=["actions"],
                          dynamic_axes={**{n: {0: "b"} for n in names}, "actions": {0: "b"}}, opset_version=17,
                          dynamo=False)
    return f.getvalue()


class Constant(nn.Module):
    """The same chunk everywhere."""

    def __init__(self, value: float, H: int = 2, A: int = 4):
        super().__init__()
        self.register_buffer("chunk", torch.full((1, H, A), float(value)))

    def forward(self, proprio, object):
        return self.chunk.expand(proprio.shape[0], -1, -1) + 0 * proprio[:, :1, None]


class StatelessPick(nn.Module):
    """pick_cube without memory: hover above the cube, descend, close on it, lift. Chunks of H
    repeated actions at a gain (2/s) that a 4-step open-loop chunk does not overshoot. 10/10 in
    the twin here (seeds 1000..1009); sign=-1 is the deliberately broken candidate: every action
    inverted, it drives away from the cube with the gripper closed."""

    def __init__(self, sign: float = 1.0, H: int = 4, gain: float = 2.0, max_lin_vel: float = 0.2):
        super().__init__()
        self.sign, self.H, self.k = float(sign), H, gain / max_lin_vel
        self.register_buffer("hover", torch.tensor([0.0, 0.0, 0.06]))
        self.register_buffer("up", torch.tensor([0.0, 0.0, 1.0]))

    def forward(self, proprio, object):
        ee, width, cube = proprio[:, 0:3], proprio[:, 7:8], object[:, 0:3]
        dist = (ee - cube).norm(dim=1, keepdim=True)
        dxy = (ee[:, :2] - cube[:, :2]).norm(dim=1, keepdim=True)
        target = torch.where(dxy < 0.01, cube, cube + self.hover)
        v = self.k * (target - ee)
        v = v / torch.clamp(v.abs().amax(1, keepdim=True), min=1.0)
        at, held = dist < 0.008, (dist < 0.02) & (width < 0.06)
        v = torch.where(at & ~held, torch.zeros_like(v), v)
        v = torch.where(held, self.up.expand_as(v), v)
        grip = torch.where(at | held, torch.ones_like(width), -torch.ones_like(width))
        return (self.sign * torch.cat([v, grip], 1))[:, None, :].expand(-1, self.H, -1)


# ---------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("cand, dep, accepted", [
    (0.6, 0.7, True),    # exactly the margin below: not worse by more than it
    (0.5, 0.7, False),   # one episode in ten more
    (0.9, 0.7, True),
    (0.0, 0.0, True),    # equal
    (0.8, 1.0, False),
])
def test_twin_success_margin_boundary(cand, dep, accepted):
    f = Figures(candidate=2, deployed=1, candidate_success=cand, deployed_success=dep)
    assert decide(f, S)[0] is accepted


@pytest.mark.parametrize("q_cand, accepted", [(1.0 - 0.05, True), (1.0 - 0.05 - 1e-6, False), (1.2, True)])
def test_value_margin_boundary(q_cand, accepted):
    f = Figures(candidate=2, deployed=1, candidate_success=1.0, deployed_success=1.0, q_candidate=q_cand,
                q_deployed=1.0)
    ok, why = decide(f, S)
    assert ok is accepted and "value" in why


def test_both_conditions_must_hold():
    good_twin_bad_value = Figures(2, 1, 1.0, 0.5, q_candidate=0.0, q_deployed=1.0)
    bad_twin_good_value = Figures(2, 1, 0.2, 0.5, q_candidate=2.0, q_deployed=1.0)
    assert not decide(good_twin_bad_value, S)[0] and not decide(bad_twin_good_value, S)[0]
    assert decide(Figures(2, 1, 0.5, 0.5), S) == (True, "twin success 0.50 >= deployed 0.50 - 0.1; no value estimate")
    assert not decide(Figures(2, 1, None, 0.5), S)[0]  # no score: it cannot prove itself


def test_the_first_candidate_rule():
    assert decide(Figures(0), S)[0]  # first_min_success 0: published unscored
    bar = GateSettings(first_min_success=0.5)
    assert decide(Figures(0, candidate_success=0.5), bar)[0]
    assert not decide(Figures(0, candidate_success=0.5 - 2 * EPS - 0.1), bar)[0]
    assert not decide(Figures(0), bar)[0]


# ---------------------------------------------------------------------------- the estimate
def _replay(n_steps: int, chunk: int = 2):
    from robot_rl.data.replay import MixedReplay

    schema = {"proprio": ((8,), "<f4"), "object": ((7,), "<f4"), "action": ((4,), "<f4")}
    replay = MixedReplay.create(schema, 64, chunk=chunk)
    rng = np.random.default_rng(0)
    for i in range(n_steps):
        p = rng.normal(size=8).astype(np.float32)
        p[0] = i  # the step's index, to tell the newest rows
        replay.add_step({"proprio": p, "object": rng.normal(size=7).astype(np.float32),
                         "action": np.zeros(4, np.float32), "reward": np.float32(0), "terminated": False,
                         "intervened": False})
        if i % 10 == 9:
            replay.end_episode({"proprio": p, "object": np.zeros(7, np.float32)})
    return replay


def test_recent_states_are_the_newest_steps_of_the_online_side():
    replay = _replay(100)  # a 64-row ring: it has wrapped, and holds terminal rows among the steps
    states = recent_states(replay.online, 5)
    assert states["proprio"][:, 0].tolist() == [95, 96, 97, 98, 99]
    assert recent_states(_replay(0).online, 5) is None


def test_ope_prefers_the_candidate_whose_actions_the_critic_values_more(tmp_path):
    """A critic trained briefly on a toy bandit (reward 1 when the first action of the chunk
    pushes +x, else 0; one step, no bootstrap) values a policy that always pushes +x above one
    that pushes -x; the estimate says so, and the gate's rule rejects the worse one."""
    from robot_rl.learn import make_agent
    from robot_rl.learn.synthetic import random_batch
    from robot_rl.spec import ObsSpec

    torch.manual_seed(0)
    spec = ObsSpec({"proprio": (8,), "object": (7,)}, {"proprio": "<f4", "object": "<f4"})
    agent = make_agent("flow", spec, 4, {"chunk_len": 2, "actor_hidden": (32, 32), "critic_hidden": (64, 64),
                                         "n_critics": 3, "seed": 0}, device="cpu")
    for i in range(300):
        b = random_batch(spec, 64, 2, 4, seed=i)
        b["mask"][:] = 1.0
        b["actions"] = np.random.default_rng(i).uniform(-1, 1, (64, 2, 4)).astype(np.float32)
        b["reward"] = (b["actions"][:, 0, 0] > 0).astype(np.float32)
        b["discount"][:] = 0.0
        agent.update(b)
    inputs = snapshot(agent, _replay(40), 32)
    assert inputs is not None and len(inputs.states["proprio"]) == 32
    plus, minus = onnx_session(_onnx(Constant(0.8))), onnx_session(_onnx(Constant(-0.8)))
    a_plus, a_minus = onnx_actions(plus, inputs.states), onnx_actions(minus, inputs.states)
    assert a_plus.shape == (32, 2, 4)
    est = ope(inputs, a_plus, a_minus)
    assert est["q_candidate"] > est["q_deployed"] + 0.1 and est["better_share"] > 0.9, est
    worse = ope(inputs, a_minus, a_plus)
    f = Figures(2, 1, 1.0, 1.0, q_candidate=worse["q_candidate"], q_deployed=worse["q_deployed"])
    assert not decide(f, S)[0]
    f = Figures(2, 1, 1.0, 1.0, q_candidate=est["q_candidate"], q_deployed=est["q_deployed"])
    assert decide(f, S)[0]
    # the snapshot is a copy: training on does not change the estimate taken at export time
    before = inputs.critic.values(inputs.states, a_plus)
    agent.update(random_batch(spec, 64, 2, 4, seed=999))
    assert np.array_equal(before, inputs.critic.values(inputs.states, a_plus))
    assert snapshot(make_agent("bc", spec, 4, {"chunk_len": 2, "actor_hidden": (16,)}, device="cpu"),
                    _replay(40), 8) is None  # no critic: the twin score alone decides


# ---------------------------------------------------------------------------- the twin scorer
class _CountingEnv:
    """Episodes of 10 steps; counts the steps and the resets' seeds."""

    def __init__(self):
        self.seeds, self.t = [], 0

    def reset(self, seed=None):
        self.seeds.append(seed)
        self.t = 0
        return {"proprio": np.zeros(8, np.float32), "object": np.zeros(7, np.float32)}, {}

    def step(self, action):
        self.t += 1
        obs = {"proprio": np.full(8, self.t, np.float32), "object": np.zeros(7, np.float32)}
        success = bool(action[0] > 0 and self.t == 10)
        return obs, float(success), success, self.t >= 10, {"success": success}


class _CountingSession:
    """An onnxruntime-like session: counts the plans asked for."""

    def __init__(self, H):
        self.H, self.calls = H, 0

    def get_inputs(self):
        class I:  # noqa: E742
            def __init__(self, name):
                self.name = name

        return [I("proprio"), I("object")]

    def run(self, _names, feed):
        self.calls += 1
        return [np.full((1, self.H, 4), 0.5, np.float32)]


def test_scored_episodes_run_each_chunk_open_loop_from_the_seeds():
    from robot_rl.training.twin_scorer import run_episodes

    env, session = _CountingEnv(), _CountingSession(H=4)
    out = run_episodes(session, env, episodes=3, seed=1000)
    assert env.seeds == [1000, 1001, 1002]
    assert session.calls == 3 * 3  # 10 steps in chunks of 4: plans at steps 0, 4, 8
    assert out["success_rate"] == 1.0 and out["mean_steps"] == 10


@pytest.fixture(scope="module")
def pick_policies(tmp_path_factory):
    d = tmp_path_factory.mktemp("policies")
    good, bad = d / "good.onnx", d / "inverted.onnx"
    good.write_bytes(_onnx(StatelessPick()))
    bad.write_bytes(_onnx(StatelessPick(sign=-1.0)))
    return good, bad


def test_the_twin_scorer_process_scores_an_inverted_policy_below_the_original(pick_policies):
    good, bad = pick_policies
    loaded_before = "mujoco" in sys.modules  # other tests of this process may have loaded it
    scorer = ScorerProcess()
    try:
        g = scorer.score(good, task="pick_cube", episodes=4, seed=1000, timeout=120)
        b = scorer.score(bad, task="pick_cube", episodes=4, seed=1000, timeout=120)
        assert g["success_rate"] >= 0.75 and b["success_rate"] == 0.0, (g, b)
        assert g["mean_steps"] < b["mean_steps"]
        with pytest.raises(ScorerError, match="twin scorer: "):  # answered, and the scorer goes on
            scorer.score(good.parent / "missing.onnx", task="pick_cube", episodes=1, seed=0)
        assert scorer.score(good, task="pick_cube", episodes=1, seed=1000)["episodes"] == 1
    finally:
        scorer.close()
    assert ("mujoco" in sys.modules) == loaded_before  # the twin ran in the scorer's process, not this one


class _Published(list):
    """publish() of a gate: (wire version, candidate, sha256) per policy sent."""

    def __call__(self, data, sha, version, meta):
        self.append((version, meta["candidate"], sha))


def test_an_inverted_candidate_is_never_published_a_good_one_is(tmp_path, pick_policies):
    """The real scorer process: the good policy is deployed first, its inverted copy is rejected
    and never reaches the wire, the good one offered again passes."""
    good, bad = pick_policies
    published = _Published()
    records = []
    gate = Gate(GateSettings(enabled=True, episodes=3), tmp_path, "pick_cube", published, on_decision=records.append)
    gate.start()
    try:
        gate.submit(good.read_bytes(), "g", 0)
        assert gate.wait_idle(60)
        gate.submit(bad.read_bytes(), "b", 1)
        assert gate.wait_idle(120)
        gate.submit(good.read_bytes(), "g", 2)
        assert gate.wait_idle(120)
    finally:
        gate.close()
    assert [(v, c) for v, c, _ in published] == [(0, 0), (2, 2)]
    decisions = {r["candidate"]: r for r in records if r["event"] == "decision"}
    assert decisions[1]["accepted"] is False and decisions[1]["candidate_success"] == 0.0
    assert decisions[1]["deployed_success"] >= 2 / 3 and "twin success 0.00 <" in decisions[1]["reason"]
    assert decisions[2]["accepted"] is True
    log = [json.loads(line) for line in (tmp_path / "gate_log.jsonl").read_text().splitlines()]
    assert [r["accepted"] for r in log if r["event"] == "decision"] == [True, False, True]
    assert sorted(p.name for p in (tmp_path / "policies").iterdir()) == ["v0.onnx", "v1.onnx", "v2.onnx"]


# ---------------------------------------------------------------------------- the pipeline
class FakeScorer:
    """Success rates by the archived file's name, v{N}.onnx -> rates[N] (None: the scorer fails);
    `release` holds a scoring in progress."""

    def __init__(self, rates: dict, delay: float = 0.0):
        self.rates, self.delay, self.asked = rates, delay, []
        self.release = threading.Event()
        self.release.set()

    def score(self, path, **kw):
        v = int(os.path.basename(os.fspath(path))[1:-5])
        self.asked.append(v)
        self.release.wait(30)
        time.sleep(self.delay)
        if self.rates.get(v) is None:
            raise ScorerError("twin scorer: no such policy")
        return {"success_rate": self.rates[v], "mean_steps": 50.0}

    def close(self):
        pass


def _gate(tmp_path, rates, **kw):
    published = _Published()
    gate = Gate(GateSettings(enabled=True, **kw), tmp_path, "pick_cube", published, scorer=FakeScorer(rates))
    gate.start()
    return gate, published


def _submit_in_turn(gate, n):
    """Candidates v0..v(n-1), each decided before the next arrives; then the gate is closed."""
    try:
        for v in range(n):
            gate.submit(b"onnx%d" % v, f"sha{v}", v)
            assert gate.wait_idle(10)
    finally:
        gate.close()


def test_only_accepted_candidates_are_published_and_the_deployed_score_is_cached(tmp_path):
    gate, published = _gate(tmp_path, {0: 0.2, 1: 0.5, 2: 0.3, 3: 0.45, 4: 0.1})
    _submit_in_turn(gate, 5)
    # v0 first (unscored); v1 0.5 >= 0.2 - 0.1; v2 0.3 < 0.5 - 0.1; v3 0.45 >= 0.4; v4 0.1 < 0.35
    assert [c for _, c, _ in published] == [0, 1, 3]
    assert gate.scorer.asked == [1, 0, 2, 3, 4]  # each version scored once: the deployed ones cached
    assert gate.accepted == 3 and gate.rejected == 2


def test_the_bar_is_the_best_deployed_so_far_so_small_losses_cannot_add_up(tmp_path):
    """Each of v2, v3 is within the margin of the policy deployed before it; against the deployed
    one alone the run would drift 0.9 -> 0.8 -> 0.7. Against the best deployed (v1) v3 is out."""
    gate, published = _gate(tmp_path, {0: 0.0, 1: 0.9, 2: 0.8, 3: 0.7, 4: 0.85})
    _submit_in_turn(gate, 5)
    assert [c for _, c, _ in published] == [0, 1, 2, 4]
    rejected = [json.loads(line) for line in (tmp_path / "gate_log.jsonl").read_text().splitlines()]
    v3 = next(r for r in rejected if r.get("candidate") == 3 and r["event"] == "decision")
    assert not v3["accepted"] and "best deployed v1 0.90" in v3["reason"] and v3["best"] == 1


def test_the_best_bar_in_the_rule():
    f = Figures(candidate=3, deployed=2, candidate_success=0.75, deployed_success=0.8, best=1, best_success=0.9)
    ok, why = decide(f, S)
    assert not ok and "best deployed v1" in why
    assert decide(Figures(3, 2, 0.8, 0.8, best=1, best_success=0.9), S)[0]  # exactly the margin
    assert decide(Figures(3, 2, 0.75, 0.8), S)[0]  # no best given: the deployed one is the bar


def test_a_candidate_still_waiting_is_superseded_by_a_newer_one(tmp_path):
    gate, published = _gate(tmp_path, {0: 0.0, 1: 0.5, 2: 0.5, 3: 0.9})
    try:
        gate.submit(b"0", "s", 0)
        assert gate.wait_idle(10)
        gate.scorer.release.clear()  # the scorer is busy with v1 ...
        gate.submit(b"1", "s", 1)
        time.sleep(0.2)
        gate.submit(b"2", "s", 2)  # ... while v2 and then v3 arrive: v2 is never scored
        gate.submit(b"3", "s", 3)
        gate.scorer.release.set()
        assert gate.wait_idle(10)
    finally:
        gate.close()
    assert 2 not in gate.scorer.asked and [c for _, c, _ in published] == [0, 1, 3]
    log = [json.loads(line) for line in (tmp_path / "gate_log.jsonl").read_text().splitlines()]
    assert {"event": "superseded", "candidate": 2, "by": 3}.items() <= next(
        r for r in log if r["event"] == "superseded").items()


def test_a_scorer_failure_rejects_the_candidate(tmp_path):
    gate, published = _gate(tmp_path, {0: 0.5, 1: None})
    try:
        gate.submit(b"0", "s", 0)
        gate.wait_idle(10)
        gate.submit(b"1", "s", 1)
        assert gate.wait_idle(10)
    finally:
        gate.close()
    assert [c for _, c, _ in published] == [0] and "no such policy" in gate.last["reason"]


def test_operator_requests_force_roll_back_and_survive_a_restart(tmp_path):
    gate, published = _gate(tmp_path, {0: 0.0, 1: 0.5, 2: 0.0, 3: 0.6})
    try:
        for v in range(4):
            gate.submit(b"p%d" % v, "s", v)
            assert gate.wait_idle(10)
        assert [(w, c) for w, c, _ in published] == [(0, 0), (1, 1), (3, 3)]  # v2 rejected
        assert gate.request("rollback") == (True, "v1 deployed (policy version 4 on the wire)")
        assert gate.request("version 2")[0] and gate.deployed == 2  # forced past the rule
        assert gate.request("rollback")[0] and gate.deployed == 1
        assert gate.request("latest")[0] and gate.deployed == 3
        assert gate.request('{"cmd": "version", "version": 0, "id": "x"}')[0] and gate.deployed == 0
        ok, why = gate.request("version 9")
        assert not ok and "no candidate v9" in why
        assert not gate.request("deploy everything")[0]
        # malformed requests on learner/deploy are refused with a short reason, nothing deployed
        for bad in ("", "\x00", "version -1", "version 1e999", '{"cmd":', "[1, 2]", "null", "v-3", "7.5",
                    '{"cmd": "version", "version": "abc"}', "x" * 200_000):
            ok, why = gate.request(bad)
            assert not ok and len(why) < 200 and gate.deployed == 0, (bad[:20], why[:100])
    finally:
        gate.close()
    wire = [w for w, _, _ in published]
    assert wire == sorted(set(wire)), wire  # always newer: the actor takes only a newer version
    assert [c for _, c, _ in published][3:] == [1, 2, 1, 3, 0]
    # a restarted learner's gate sends the deployed policy again, under a newer number
    again = _Published()
    gate2 = Gate(GateSettings(enabled=True), tmp_path, "pick_cube", again, scorer=FakeScorer({}))
    gate2.start()
    gate2.close()
    assert again[0][1] == 0 and again[0][0] > wire[-1] and again[0][2] == hashlib.sha256(b"p0").hexdigest()


# ---------------------------------------------------------------------------- the node over DDS
@pytest.mark.slow
def test_the_gated_learner_publishes_only_accepted_versions_and_obeys_a_rollback(tmp_path):
    """A learner with its gate on, fed random transitions over DDS: every candidate must beat the
    deployed one by 0.5 in the twin (a margin of -0.5), which no random network does, so after
    the first (published unscored) nothing reaches the policy topic; `robot-rl deploy --version`
    forces a rejected one out, `robot-rl deploy --rollback` brings the first back."""
    pytest.importorskip("rclpy")
    from conftest import SpunNode, spawn_node, stop_process

    from robot_rl import codec, contract as C
    from robot_rl.nodes.ros import publisher, subscription

    seen = []
    actor = SpunNode("fake_actor")
    pub = publisher(actor.node, C.TRANSITIONS)
    subscription(actor.node, C.POLICY, lambda m: seen.append(codec.decode_policy(m)[::2]))
    actor.start()
    learner = spawn_node("robot_rl.nodes.learner", tmp_path / "learner.log", {
        "run_dir": str(tmp_path), "min_steps": 10, "publish_every": 10, "checkpoint_every": 0,
        "gate.enabled": "true", "gate.episodes": 2, "gate.success_margin": -0.5, "gate.ope_states": 64})
    rng = np.random.default_rng(0)

    def deploy(*args):
        return subprocess.run([sys.executable, "-m", "robot_rl.cli", "deploy", *args, "--namespace", "",
                               "--timeout", "30"], capture_output=True, text=True, timeout=60)

    def decisions():
        path = tmp_path / "gate_log.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r["event"] == "decision"]

    try:
        deadline, i = time.monotonic() + 150, 0
        while len([d for d in decisions() if not d["accepted"]]) < 2 and time.monotonic() < deadline:
            assert learner.poll() is None, (tmp_path / "learner.log").read_text()[-3000:]
            step = {"proprio": rng.normal(size=8).astype(np.float32), "object": rng.normal(size=7).astype(np.float32),
                    "action": rng.uniform(-1, 1, 4).astype(np.float32), "reward": np.float32(0), "terminated": False,
                    "truncated": False, "intervened": False, "policy_version": np.int32(0), "timestamp": 0.0,
                    "eval": False}
            pub.publish(codec.encode_transitions([step], {"episode": i // 20, "index": i}))  # index: the store row
            if i % 20 == 19:
                pub.publish(codec.encode_episode_end({"proprio": step["proprio"], "object": step["object"]},
                                                     {"episode": i // 20, "end_row": i + 1}))
            i += 1
            time.sleep(0.02)
        rejected = [d for d in decisions() if not d["accepted"]]
        assert len(rejected) >= 2, (tmp_path / "learner.log").read_text()[-3000:]
        assert all(d["q_candidate"] is not None and d["candidate_success"] == 0.0 for d in rejected), rejected
        time.sleep(1.0)
        assert [meta["candidate"] for _, meta in seen] == [0], seen  # nothing rejected went out
        r = deploy("--version", str(rejected[0]["candidate"]))
        assert r.returncode == 0 and f"v{rejected[0]['candidate']} deployed" in r.stdout, r.stdout + r.stderr
        r = deploy("--rollback")
        assert r.returncode == 0 and "v0 deployed" in r.stdout, r.stdout + r.stderr
        r = deploy("--version", "100000")
        assert r.returncode == 1 and "no candidate v100000" in r.stdout, r.stdout
        t = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < t:
            time.sleep(0.1)
        assert [meta["candidate"] for _, meta in seen] == [0, rejected[0]["candidate"], 0], seen
        versions = [v for v, _ in seen]
        assert versions == sorted(set(versions))  # each newer: the actor takes them
    finally:
        actor.close()
        stop_process(learner)
    summary = json.loads((tmp_path / "learner_summary.json").read_text())
    assert summary["versions_published"] == [v for v, _ in seen]
