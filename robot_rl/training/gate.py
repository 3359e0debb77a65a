"""Gated deployment: a candidate policy reaches the actor only after it proves itself.

ROS-free; the learner node wires it (robot_rl/nodes/learner.py), docs/deployment.md tells the
operator's side. Three parts:

1. The decision rule (`decide`): a candidate is published only if it is not worse than the
   deployed policy by more than the configured margins, on both
   - its success rate in N seeded twin episodes (`success_margin`, in success-rate units), and
   - the off-policy estimate (`value_margin`, in the critic's units: discounted return): the
     critic's value of the candidate's action chunks against the deployed policy's on the states
     of the most recent online steps. A kind without a critic (bc) has no estimate; the twin
     score alone decides.
   With nothing deployed (the first candidate of a run) the bar is `first_min_success` on the
   twin score alone; at 0 (the default) the first candidate is published at once, unscored: the
   actor has nothing to run until then, and the first candidate is the warm-start policy (a twin
   pretrain checkpoint) or an untrained network that no earlier policy could beat anyway.
2. The off-policy estimate (`OpeInputs`, `ope`): taken in the trainer thread when a candidate
   is exported (the agent is idle then): a CPU copy of the critic and its encoder and the
   observations of the last `ope_states` online steps. The candidate's and the deployed
   policy's actions on those states come from their own ONNX files (what the actor would run),
   so the estimate works for any deployed version, also one from before a restart.
3. The twin scorer process (`ScorerProcess`, robot_rl/training/twin_scorer.py): MuJoCo runs in a
   process of its own, never in the learner's; the learner keeps training while it scores.
   Protocol: JSON lines. The scorer writes {"ready": true} once its imports are done; then per
   request line {"id", "path", "task", "episodes", "seed", "twin"} one answer line {"id",
   "success_rate", "successes", "episodes", "mean_steps", "mean_return", "wall_s"} or {"id",
   "error"}. One request at a time; a scorer that dies or overruns `timeout_s` is restarted and
   the candidate is rejected ("cannot prove itself").

`Gate` runs the pipeline in a thread of its own: candidates are archived as
run_dir/policies/v{N}.onnx (every one, also the rejected), the newest waiting candidate is
scored (an older one still waiting is superseded: logged, never scored), scores are cached per
version (the deployed one is scored once), and every decision goes to run_dir/gate_log.jsonl
and to `on_decision` (the node puts it on /diagnostics and into TensorBoard). The operator's
requests (`request`: a version, rollback, latest) publish at once, bypassing the rule.

Version numbers on the wire: the actor takes only a version newer than the one it runs, so a
rollback cannot resend an old number. Every publish gets `max(candidate, last published + 1)`:
the candidate's own number normally, a fresh one for a redeploy (the payload's meta and the log
name the candidate it carries). run_dir/gate_state.json keeps what is deployed across restarts.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

EPS = 1e-9  # success rates are k/N: 0.7 - 0.1 must count as 0.6, the boundary passes


@dataclass
class GateSettings:
    """The learner's `gate` section; defaults are config/sim.yaml's (off: the sim curve is the
    ungated one), config/robot.yaml turns it on."""

    enabled: bool = False
    episodes: int = 10  # seeded twin episodes per candidate (the same seeds for every one)
    seed: int = 1000  # seed of the first scored episode; away from the twin node's and pretrain's
    success_margin: float = 0.1  # publish if twin success >= deployed's - this
    value_margin: float = 0.05  # ... and critic value of its chunks >= deployed's - this (return units)
    first_min_success: float = 0.0  # nothing deployed: twin success needed (0 = publish unscored)
    ope_states: int = 256  # most recent online steps whose states the estimate averages over
    timeout_s: float = 300.0  # one scoring request; longer: the scorer restarts, the candidate fails

    def __post_init__(self):
        if self.episodes < 1 or self.ope_states < 1 or self.timeout_s <= 0:
            raise ValueError(f"gate needs episodes >= 1, ope_states >= 1 and timeout_s > 0; got episodes="
                             f"{self.episodes}, ope_states={self.ope_states}, timeout_s={self.timeout_s}")


# ---------------------------------------------------------------------------- the rule
@dataclass
class Figures:
    """What one decision is made on (None: not measured)."""

    candidate: int
    deployed: int | None = None
    candidate_success: float | None = None
    deployed_success: float | None = None
    candidate_steps: float | None = None
    deployed_steps: float | None = None
    q_candidate: float | None = None
    q_deployed: float | None = None
    ope_states: int = 0
    # the best twin score among the policies deployed so far (the deployed one included): the bar
    best: int | None = None
    best_success: float | None = None

    @property
    def q_gap(self) -> float | None:
        if self.q_candidate is None or self.q_deployed is None:
            return None
        return self.q_candidate - self.q_deployed


def decide(f: Figures, s: GateSettings) -> tuple[bool, str]:
    """(accepted, why). Not worse by more than a margin than the deployed policy on the
    off-policy estimate (where there is one), and than the best policy deployed so far on the
    twin score; a boundary case passes.

    Why the best and not the deployed one: a rule against the deployed policy lets every step
    lose up to the margin, and the losses add up. A 12k-step sloppy-demo run (bench/bench_gate_long.py)
    went 0.85 -> 0.80 -> 0.70 -> 0.60 through four accepted candidates, each within 0.1 of the one
    before. Against the best, the deployed policy stays within the margin of the best one seen."""
    if f.deployed is None:
        if s.first_min_success <= 0:
            return True, "first candidate (nothing deployed): published unscored"
        if f.candidate_success is None:
            return False, "first candidate: no twin score"
        ok = f.candidate_success >= s.first_min_success - EPS
        return ok, (f"first candidate: twin success {f.candidate_success:.2f} "
                    f"{'>=' if ok else '<'} first_min_success {s.first_min_success:.2f}")
    if f.candidate_success is None or f.deployed_success is None:
        return False, "no twin score"
    (twin_ok, twin_why), (ope_ok, ope_why) = twin_check(f, s), value_check(f, s)
    return twin_ok and ope_ok, f"{twin_why}; {ope_why}"


def twin_check(f: Figures, s: GateSettings) -> tuple[bool, str]:
    """The twin half of the rule: success >= the bar - success_margin, the bar being the best
    deployed policy's score where it is higher than the deployed one's."""
    bar, bar_name = f.deployed_success, "deployed"
    if f.best_success is not None and f.best_success > f.deployed_success:
        bar, bar_name = f.best_success, f"best deployed v{f.best}"
    ok = f.candidate_success >= bar - s.success_margin - EPS
    return ok, (f"twin success {f.candidate_success:.2f} {'>=' if ok else '<'} {bar_name} "
                f"{bar:.2f} - {s.success_margin:g}")


def value_check(f: Figures, s: GateSettings) -> tuple[bool, str]:
    """The off-policy half: Q(candidate) >= Q(deployed) - value_margin; passes without an estimate."""
    gap = f.q_gap
    if gap is None:
        return True, "no value estimate"
    ok = gap >= -s.value_margin - EPS
    return ok, f"value {f.q_candidate:.4g} {'>=' if ok else '<'} deployed {f.q_deployed:.4g} - {s.value_margin:g}"


# ---------------------------------------------------------------------------- the estimate
def recent_states(buffer, n: int) -> dict | None:
    """Observations of the last n steps in a robot_rl.data.replay.ReplayBuffer (the online
    side: what the deployed policies met lately), oldest first; None if it holds none. Reads
    the ring under its lock: the replay has no public "newest rows" view."""
    with buffer._lock:
        lo = max(0, buffer._next - buffer.capacity)
        g = np.arange(max(lo, buffer._next - 2 * int(n)), buffer._next)  # room for terminal rows
        g = g[buffer._is_step[g % buffer.capacity]][-int(n):]
        if not len(g):
            return None
        out = {}
        for k, arr in buffer._obs.arrays.items():
            v = arr[g % buffer.capacity]
            out[k] = v.cpu().numpy() if hasattr(v, "cpu") else np.array(v)
    return out


class CriticSnapshot:
    """A CPU copy of an agent's critic ensemble and its encoder: values the gate can compute in
    its own thread while the trainer goes on changing the agent."""

    def __init__(self, agent):
        import torch

        with torch.no_grad():
            self.spec = agent.spec
            self.encoder = copy.deepcopy(agent.nets["encoder"]).cpu().float().eval()
            self.critic = copy.deepcopy(agent.nets["critic"]).cpu().float().eval()
            self.hl = copy.deepcopy(agent.hl).cpu().float() if agent.hl is not None else None

    def values(self, obs: dict, chunks: np.ndarray) -> np.ndarray:
        """(B,) ensemble-mean Q of action chunks (B, H, A) at observations {key: (B, ...)}."""
        import torch

        from robot_rl.learn.batch import obs_to_tensors

        with torch.no_grad():
            o, _ = obs_to_tensors(self.spec, obs, "cpu")
            feats = self.encoder(o)
            a = torch.as_tensor(np.asarray(chunks, np.float32)).reshape(len(feats), -1)
            out = self.critic(torch.cat([feats, a], -1))
            q = self.hl.value(out) if self.hl is not None else out.squeeze(-1)
            return q.mean(0).numpy().astype(np.float64)


@dataclass
class OpeInputs:
    """Taken when a candidate is exported: the critic of that moment and the recent states."""

    critic: CriticSnapshot
    states: dict


def snapshot(agent, replay, n: int) -> OpeInputs | None:
    """In the thread that owns the agent (the trainer's, at publish time); None for an agent
    without a critic (bc) or before any online step."""
    if getattr(agent, "kind", None) == "bc" or "critic" not in agent.nets:
        return None
    states = recent_states(replay.online, n)
    if states is None:
        return None
    keys = tuple(agent.spec.shapes)
    return OpeInputs(CriticSnapshot(agent), {k: states[k] for k in keys})


def onnx_session(source):
    """An onnxruntime session on one thread (the learner's CPU is for training)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    model = source if isinstance(source, bytes) else os.fspath(source)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def onnx_actions(session, states: dict, batch: int = 256) -> np.ndarray:
    """The chunks (B, H, A) an ONNX actor plans at each state, clipped as the actor clips them."""
    from robot_rl.learn.export import run_onnx

    n = len(next(iter(states.values())))
    parts = [run_onnx(session, {k: v[i:i + batch] for k, v in states.items()}) for i in range(0, n, batch)]
    return np.clip(np.concatenate(parts).astype(np.float32), -1.0, 1.0)


def ope(inputs: OpeInputs, candidate_actions: np.ndarray, deployed_actions: np.ndarray) -> dict:
    """The critic's mean value of each policy's chunks on the same states, and the share of
    states where the candidate's is higher."""
    qc = inputs.critic.values(inputs.states, candidate_actions)
    qd = inputs.critic.values(inputs.states, deployed_actions)
    return {"q_candidate": float(qc.mean()), "q_deployed": float(qd.mean()),
            "better_share": float((qc > qd).mean()), "states": int(len(qc))}


# ---------------------------------------------------------------------------- the scorer process
class ScorerError(RuntimeError):
    pass


class ScorerProcess:
    """Client of robot_rl.training.twin_scorer in a child process (JSON lines, module doc).
    One caller at a time (the gate's thread)."""

    def __init__(self, command: list[str] | None = None, env: dict | None = None, start_timeout_s: float = 120.0):
        self.command = command or [sys.executable, "-m", "robot_rl.training.twin_scorer"]
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env.setdefault("MUJOCO_GL", "egl")
        self.start_timeout_s = start_timeout_s
        self.proc = None
        self._lines: queue.Queue = queue.Queue()
        self._id = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=self.env, bufsize=1)
        lines = self._lines = queue.Queue()  # a fresh queue: nothing of a dead scorer is read

        def read(out=self.proc.stdout):
            for line in out:
                lines.put(line)
            lines.put(None)  # the process closed its output: it died

        threading.Thread(target=read, name="scorer-reader", daemon=True).start()
        self._answer(lambda d: d.get("ready"), self.start_timeout_s, "start")

    def _answer(self, match, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        proc = self.proc  # close() from another thread may clear it meanwhile
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.0, left)) if left > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                code = proc.poll() if proc is not None else None
                self.close()
                raise ScorerError(f"twin scorer {'died' if code is not None else 'timed out'} during {what}"
                                  + (f" (exit {code})" if code is not None else f" ({timeout:g} s)"))
            try:
                d = json.loads(line)
            except ValueError:
                continue  # not ours (the scorer's stdout is the protocol; stray lines are skipped)
            if match(d):
                return d

    def score(self, path, *, task: str, episodes: int, seed: int, twin: dict | None = None,
              timeout: float = 300.0) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self._id += 1
        rid = self._id
        req = {"id": rid, "path": os.fspath(path), "task": task, "episodes": int(episodes), "seed": int(seed),
               "twin": dict(twin or {})}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            self.close()
            raise ScorerError(f"twin scorer is gone: {e}") from None
        d = self._answer(lambda d: d.get("id") == rid, timeout, f"scoring {os.path.basename(os.fspath(path))}")
        if "error" in d:
            raise ScorerError(f"twin scorer: {d['error']}")
        return d

    def close(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            p.stdin.close()  # an idle scorer ends on this; a busy one would finish its episodes first
        except OSError:
            pass
        try:
            p.wait(1)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------------------- the gate
@dataclass
class _Candidate:
    version: int
    path: Path
    sha256: str
    ready_at: float  # when it was exported (the clock of the decision latency)
    ope: OpeInputs | None = field(default=None, repr=False)


class Gate:
    """The pipeline (module doc). publish(onnx_bytes, sha256, wire_version, meta) sends a policy;
    scorer: anything with ScorerProcess.score's signature; on_decision(record) sees each logged
    record (a dict with "event": decision | superseded | deploy | restore)."""

    def __init__(self, settings: GateSettings, run_dir, task: str, publish, *, twin: dict | None = None,
                 scorer=None, on_decision=None, log=None, clock=time.monotonic):
        self.s = settings
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "policies"
        self.task, self.twin = task, dict(twin or {})
        self.publish = publish
        self.scorer = scorer if scorer is not None else ScorerProcess()
        self.on_decision = on_decision or (lambda record: None)
        self.log = log or (lambda level, text: None)
        self.clock = clock
        self.lock = threading.RLock()  # deployed/history/published and the log file
        self.scores: dict[int, dict] = {}  # version -> the scorer's answer (a policy never changes)
        self._sessions: dict[int, object] = {}  # onnx sessions of the deployed versions (OPE)
        self._pending: _Candidate | None = None  # the newest candidate not yet taken
        self._current: _Candidate | None = None  # the one being decided
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gate", daemon=True)
        self.accepted = self.rejected = self.superseded = 0
        self.latencies: list[float] = []
        self.last: dict = {}
        state = self._read_state()
        self.deployed: int | None = state.get("deployed")  # candidate number the actor runs
        self.history: list[int] = list(state.get("history", []))  # deployed candidates, oldest first
        self.published = int(state.get("published", -1))  # last version number sent

    # ---------------------------------------------------------------- state on disk
    def _read_state(self) -> dict:
        try:
            return json.loads((self.run_dir / "gate_state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self) -> None:
        path = self.run_dir / "gate_state.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"deployed": self.deployed, "history": self.history, "published": self.published}))
        os.replace(tmp, path)

    def _record(self, record: dict) -> dict:
        record = {"time": time.time(), **record}
        with self.lock:
            with open(self.run_dir / "gate_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self.last = record
        self.on_decision(record)
        return record

    def path(self, version: int) -> Path:
        return self.dir / f"v{int(version)}.onnx"

    def versions(self) -> list[int]:
        """Candidate versions archived in run_dir/policies, ascending."""
        out = []
        for p in self.dir.glob("v*.onnx"):
            try:
                out.append(int(p.stem[1:]))
            except ValueError:
                continue
        return sorted(out)

    # ---------------------------------------------------------------- life
    def start(self) -> None:
        """Create the archive; after a restart, send the deployed policy again (a restarted actor
        has nothing else to run: the dead learner's latched message is gone)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.deployed is not None and self.path(self.deployed).is_file():
            self._deploy(self.deployed, "restore", "the learner restarted: the deployed policy is sent again")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self.scorer.close()  # a scoring in progress ends at once (its candidate is not decided)
        if self._thread.is_alive():
            self._thread.join(10)

    # ---------------------------------------------------------------- in
    def submit(self, onnx_bytes: bytes, sha256: str, version: int, ope_inputs: OpeInputs | None = None) -> None:
        """A candidate (any thread): archived at once, then queued; a candidate still waiting is
        superseded by it (scoring every one would fall further and further behind training)."""
        version = int(version)
        path = self.path(version)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(onnx_bytes)
        os.replace(tmp, path)
        cand = _Candidate(version, path, sha256, self.clock(), ope_inputs)
        with self._wake:
            old, self._pending = self._pending, cand
            self._wake.notify_all()
        if old is not None:
            self.superseded += 1
            self._record({"event": "superseded", "candidate": old.version, "by": version})

    def request(self, text: str) -> tuple[bool, str]:
        """An operator's deploy request: "rollback", "latest", or a version ("7", "version 7",
        "v7"), or the same as JSON {"cmd": ..., "version": N}. Published at once, past the rule."""
        cmd, version = _parse_request(text)
        with self.lock:
            if cmd == "rollback":
                if len(self.history) < 2:
                    return False, f"nothing to roll back to (deployed: {self._name(self.deployed)})"
                target = self.history[-2]
            elif cmd == "latest":
                have = self.versions()
                if not have:
                    return False, "no candidate archived yet"
                target = have[-1]
            elif cmd == "version":
                target = version
            else:
                # cut: a flood of garbage must not become as many megabytes of log
                return False, (f"unknown deploy request {text[:80]!r}: rollback | latest | a version number")
            if not self.path(target).is_file():
                return False, f"no candidate v{target} in {self.dir} (have: {_ranges(self.versions())})"
            wire = self._deploy(target, cmd, f"operator: {cmd}" + (f" {target}" if cmd == "version" else ""),
                                rollback=cmd == "rollback")
            return True, f"v{target} deployed (policy version {wire} on the wire)"

    # ---------------------------------------------------------------- out
    def _deploy(self, version: int, how: str, why: str, rollback: bool = False, figures: dict | None = None) -> int:
        """Send candidate `version` as the next version number; the deployed one from now on."""
        with self.lock:
            data = self.path(version).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            wire = max(int(version), self.published + 1)
            self.publish(data, sha, wire, {"candidate": int(version), "deploy": how})
            self.published = wire
            previous = self.deployed
            self.deployed = int(version)
            if rollback:
                self.history = self.history[:-1]  # the rolled-back version leaves the stack
            elif not self.history or self.history[-1] != version:
                self.history.append(int(version))
            self._write_state()
        if how != "gate":  # the gate's own publishes are logged with their decision
            self._record({"event": "deploy" if how != "restore" else "restore", "how": how, "candidate": int(version),
                          "published_as": wire, "previous": previous, "reason": why, **(figures or {})})
        return wire

    # ---------------------------------------------------------------- the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                while self._pending is None and not self._stop.is_set():
                    self._wake.wait(0.5)
                cand, self._pending = self._pending, None
                self._current = cand
            if cand is None:
                continue
            try:
                self._decide(cand)
            except Exception as e:  # noqa: BLE001  one candidate's failure must not end the gate
                if self._stop.is_set():
                    break  # closing: the scorer was stopped under it; nothing was decided
                self.rejected += 1
                self.log("error", f"gate: candidate v{cand.version} failed: {type(e).__name__}: {e}")
                self._record({"event": "decision", "candidate": cand.version, "accepted": False,
                              "reason": f"gate error: {type(e).__name__}: {e}",
                              "latency_s": round(self.clock() - cand.ready_at, 4)})
            finally:
                with self._wake:
                    self._current = None

    def _score(self, version: int) -> dict:
        if version not in self.scores:
            self.scores[version] = self.scorer.score(self.path(version), task=self.task, episodes=self.s.episodes,
                                                     seed=self.s.seed, twin=self.twin, timeout=self.s.timeout_s)
        return self.scores[version]

    def _best_deployed(self, deployed: int) -> tuple[int, float]:
        """The best twin score among the versions deployed so far (history; all scored on the
        same seeds, so the comparison is paired), the deployed one included."""
        with self.lock:
            versions = [v for v in dict.fromkeys([*self.history, deployed]) if self.path(v).is_file()]
        scores = {v: self._score(v)["success_rate"] for v in versions}
        best = max(scores, key=lambda v: (scores[v], v))
        return best, scores[best]

    def _session(self, version: int):
        if version not in self._sessions:
            self._sessions = {version: onnx_session(self.path(version))}  # the deployed one only
        return self._sessions[version]

    def _decide(self, cand: _Candidate) -> None:
        while True:
            with self.lock:
                deployed = self.deployed
            fig, note = Figures(candidate=cand.version, deployed=deployed), ""
            if deployed is not None or self.s.first_min_success > 0:  # else published unscored
                try:
                    c = self._score(cand.version)
                    fig.candidate_success, fig.candidate_steps = c["success_rate"], c["mean_steps"]
                    if deployed is not None:
                        d = self._score(deployed)
                        fig.deployed_success, fig.deployed_steps = d["success_rate"], d["mean_steps"]
                        fig.best, fig.best_success = self._best_deployed(deployed)
                except ScorerError as e:  # it cannot prove itself: rejected, the reason logged
                    if self._stop.is_set():
                        return  # closing: the scorer was stopped under it; nothing is decided
                    note = f"; {e}"
                    self.log("error", f"gate: {e}")
                if deployed is not None and cand.ope is not None and not note:
                    states = cand.ope.states
                    est = ope(cand.ope, onnx_actions(onnx_session(cand.path), states),
                              onnx_actions(self._session(deployed), states))
                    fig.q_candidate, fig.q_deployed, fig.ope_states = (est["q_candidate"], est["q_deployed"],
                                                                       est["states"])
            with self.lock:
                if self.deployed != deployed:
                    continue  # an operator deployed another version meanwhile: compare with that one
                accepted, reason = decide(fig, self.s)
                reason += note
                wire = self._deploy(cand.version, "gate", reason) if accepted else None
                latency = self.clock() - cand.ready_at
                self.latencies.append(latency)
                self.accepted += accepted
                self.rejected += not accepted
            break
        self._record({"event": "decision", "candidate": cand.version, "accepted": accepted, "published_as": wire,
                      "reason": reason, "latency_s": round(latency, 4), **_plain(fig)})
        self.log("info" if accepted else "warn",
                 f"gate: v{cand.version} {'accepted' if accepted else 'rejected'} ({reason}; {latency:.2f} s)")

    # ---------------------------------------------------------------- reports
    def status(self) -> dict:
        """Figures for /diagnostics (flat, strings or numbers)."""
        with self.lock:
            last = self.last
            out = {"gate_deployed": self._name(self.deployed), "gate_published": self.published,
                   "gate_accepted": self.accepted, "gate_rejected": self.rejected,
                   "gate_superseded": self.superseded}
        if self.latencies:
            out["gate_latency_median_s"] = f"{float(np.median(self.latencies)):.3f}"
        if last.get("event") == "decision":
            out.update({"gate_last_candidate": last["candidate"], "gate_last_accepted": last["accepted"],
                        "gate_last_reason": last["reason"]})
        return out

    def wait_idle(self, timeout: float) -> bool:
        """True once no candidate waits or is being decided (tests, benches)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._wake:
                if self._pending is None and self._current is None:
                    return True
            time.sleep(0.02)
        return False

    @staticmethod
    def _name(version) -> str:
        return "none" if version is None else f"v{version}"


def _plain(f: Figures) -> dict:
    d = asdict(f)
    d.pop("candidate")
    d["q_gap"] = f.q_gap
    return d


def _parse_request(text: str) -> tuple[str, int | None]:
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            d = json.loads(text)
            return str(d.get("cmd", "")), (int(d["version"]) if d.get("version") is not None else None)
        except (ValueError, TypeError):
            return "", None
    words = text.lower().replace("version", " ").split()
    if len(words) == 1 and words[0] in ("rollback", "latest"):
        return words[0], None
    if len(words) == 1 and words[0].lstrip("v").isdigit():
        return "version", int(words[0].lstrip("v"))
    return "", None


def _ranges(versions: list[int]) -> str:
    if not versions:
        return "none"
    return f"v{versions[0]}..v{versions[-1]} ({len(versions)})" if len(versions) > 3 else \
        ", ".join(f"v{v}" for v in versions)
