"""The twin scorer: N seeded episodes of an ONNX candidate in the MuJoCo twin, in a process of its
own (robot_rl/training/gate.py starts it and speaks its JSON-lines protocol; the learner never
imports MuJoCo).

    python -m robot_rl.training.twin_scorer      # then one JSON request per line on stdin

Request {"id", "path", "task", "episodes", "seed", "twin": {TwinConfig overrides}} -> answer
{"id", "success_rate", "successes", "episodes", "mean_steps", "mean_return", "wall_s"} or
{"id", "error"}. The first line out is {"ready": true}. Only answers go to stdout (whatever a
library prints lands on stderr), so the gate never misreads a line.

Episodes are run as the actor runs a policy: each planned chunk executes open loop to its end
(or the episode's), then the next chunk is planned from the newest observation
(robot_rl/control/actor_core.py, ChunkQueue); episode i starts from env.reset(seed=seed + i), so
every candidate meets the same N starts. The policy sees only its own ONNX inputs; cameras and
image size are read from those inputs (a pixel policy's "front" (64, 64, 3) renders the front
camera at 64 px), the task and the action scaling come with the request.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def policy_inputs(session) -> tuple[dict, tuple[str, ...], int | None]:
    """({input: shape}, camera names, image size) of an ONNX actor."""
    shapes = {i.name: tuple(int(d) for d in i.shape[1:]) for i in session.get_inputs()}
    cameras = tuple(k for k, s in shapes.items() if len(s) == 3)
    size = shapes[cameras[0]][0] if cameras else None
    return shapes, cameras, size


def run_episodes(session, env, episodes: int, seed: int) -> dict:
    """Success rate, mean episode length (steps) and mean return of an ONNX actor on `env`."""
    from robot_rl.data.record import step_success

    keys = [i.name for i in session.get_inputs()]
    successes, steps, returns = 0, [], []
    for i in range(int(episodes)):
        obs, _ = env.reset(seed=int(seed) + i)
        done, success, n, ret = False, False, 0, 0.0
        while not done:
            (chunk,) = session.run(["actions"], {k: np.asarray(obs[k])[None] for k in keys})
            for action in np.clip(np.asarray(chunk[0], np.float32), -1.0, 1.0):  # the whole chunk, open loop
                obs, reward, terminated, truncated, info = env.step(action)
                n, ret = n + 1, ret + float(reward)
                success = success or step_success(info, reward)
                done = bool(terminated or truncated)
                if done:
                    break
        successes += success
        steps.append(n)
        returns.append(ret)
    return {"success_rate": successes / max(1, int(episodes)), "successes": int(successes),
            "episodes": int(episodes), "mean_steps": float(np.mean(steps)), "mean_return": float(np.mean(returns))}


class Scorer:
    """Keeps one env per (task, cameras, image size, overrides): building a MuJoCo scene costs
    more than a short episode."""

    def __init__(self, env_fn=None):
        self.env_fn = env_fn  # (task, cameras, image_size, twin overrides) -> env; default the twin
        self.envs: dict = {}

    def _env(self, task: str, cameras, size, twin: dict):
        key = (task, cameras, size, json.dumps(twin, sort_keys=True))
        if key not in self.envs:
            if self.env_fn is not None:
                self.envs[key] = self.env_fn(task, cameras, size, twin)
            else:
                from robot_rl.twin import make_env

                kw = dict(twin)
                if size is not None:
                    kw["image_size"] = size
                self.envs[key] = make_env(task, cameras=cameras, **kw)
        return self.envs[key]

    def score(self, req: dict) -> dict:
        from robot_rl.training.gate import onnx_session

        t0 = time.monotonic()
        session = onnx_session(req["path"])
        _, cameras, size = policy_inputs(session)
        env = self._env(req.get("task", "pick_cube"), cameras, size, dict(req.get("twin") or {}))
        out = run_episodes(session, env, int(req.get("episodes", 10)), int(req.get("seed", 0)))
        return {"id": req.get("id"), **out, "wall_s": round(time.monotonic() - t0, 3)}


def serve(lines, write, scorer: Scorer | None = None) -> None:
    scorer = scorer or Scorer()
    write({"ready": True})
    for line in lines:
        if not line.strip():
            continue
        req = {}
        try:
            req = json.loads(line)
            answer = scorer.score(req)
        except Exception as e:  # noqa: BLE001  one bad request is answered, the scorer goes on
            answer = {"id": req.get("id") if isinstance(req, dict) else None, "error": f"{type(e).__name__}: {e}"}
        write(answer)


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The protocol owns stdout: keep a private copy of it, and send fd 1 (C libraries' prints
    # included) to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import robot_rl.twin  # noqa: F401  MuJoCo loaded before "ready": the first answer is not the slow one

    robot_rl.twin.make_env  # noqa: B018  (PEP 562: this imports the factory and MuJoCo)

    def write(d):
        out.write(json.dumps(d) + "\n")
        out.flush()

    serve(sys.stdin, write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
