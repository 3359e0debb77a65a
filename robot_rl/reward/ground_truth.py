"""A classifier-rewarded sim run measured against the twin's own success check.

With `robot-rl sim --reward classifier` the reward classifier says when an episode succeeded and
the twin only records what its check said (run_dir/twin_ground_truth.json, one entry per ended
episode, in order). The actor's store holds the same episodes in the same order (each terminal
task/status closes one episode in the store and resets the twin once); the lengths are compared
to make sure of it. Out: the evaluation curve twice (as the classifier declared it, as the twin
judged it) and the classifier's episode-level confusion over the whole run.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def load_truth(run_dir) -> list[dict]:
    path = Path(run_dir) / "twin_ground_truth.json"
    return json.loads(path.read_text())["episodes"] if path.exists() else []


def ground_truth_report(run_dir) -> dict | None:
    """None if the run was not classifier-rewarded (no ground truth file)."""
    from robot_rl.data.store import EpisodeStore

    run_dir = Path(run_dir)
    truth = load_truth(run_dir)
    summary_path = run_dir / "actor_summary.json"
    if not truth or not summary_path.exists():
        return None
    table = EpisodeStore.open(str(run_dir / "store.zarr")).episode_table()
    n = min(len(truth), len(table["length"]))
    # An episode the actor closed without a terminal status (interrupted at shutdown) has no twin
    # entry; everything before must agree step for step.
    lengths_agree = [int(table["length"][i]) == int(truth[i]["steps"]) for i in range(n)]
    if not all(lengths_agree):
        first = lengths_agree.index(False)
        raise ValueError(f"store episode {first} has {int(table['length'][first])} steps, the twin's "
                         f"{truth[first]['steps']}: the two records are not of the same episodes")
    declared = np.array([t["declared_success"] for t in truth[:n]], bool)
    true = np.array([t["twin_success"] for t in truth[:n]], bool)
    is_eval = table["source"][:n] == "eval"
    curve, start = [], 0
    eval_idx = np.flatnonzero(is_eval)
    for block in json.loads(summary_path.read_text()).get("evaluations", []):
        idx = eval_idx[start:start + block["episodes"]]
        start += block["episodes"]
        if len(idx) < block["episodes"]:
            break
        curve.append({"train_steps": block["train_steps"], "declared": float(declared[idx].mean()),
                      "twin": float(true[idx].mean())})
    tp, fp = int((declared & true).sum()), int((declared & ~true).sum())
    fn, tn = int((~declared & true).sum()), int((~declared & ~true).sum())
    return {"episodes": int(n), "curve": curve,
            "episode_confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                                  "precision": tp / (tp + fp) if tp + fp else 1.0,
                                  "recall": tp / (tp + fn) if tp + fn else 0.0}}


def format_report(report: dict) -> str:
    curve = ", ".join(f"{c['declared']:.0%}/{c['twin']:.0%}@{c['train_steps']}" for c in report["curve"])
    c = report["episode_confusion"]
    return (f"eval success declared by the classifier / by the twin's check: {curve or 'no evaluation yet'}; "
            f"classifier per episode over {report['episodes']} episodes: precision {c['precision']:.3f}, "
            f"recall {c['recall']:.3f} (fp {c['fp']}, fn {c['fn']})")
