"""Look into an episode store: a summary, one line per episode, an episode as videos + a plot.

Backs `robot-rl data info|ls|export`. Every function takes an EpisodeStore or a path."""
from __future__ import annotations

import importlib.util
import os
from collections import Counter
from pathlib import Path

import numpy as np

from robot_rl.data.schema import is_image
from robot_rl.data.store import EpisodeStore


def _as_store(store) -> EpisodeStore:
    return store if isinstance(store, EpisodeStore) else EpisodeStore.open(store, "r")


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _per_episode(values: np.ndarray, ends: np.ndarray, reduce=np.add) -> np.ndarray:
    """reduce over each episode's rows (ends: cumulative episode ends)."""
    if len(ends) == 0:
        return np.zeros(0, values.dtype)
    starts = np.concatenate([[0], ends[:-1]])
    return reduce.reduceat(values[: ends[-1]], starts)


def info(store) -> str:
    """Multi-line summary: size, schema, episodes by source, lengths, success, interventions."""
    s = _as_store(store)
    t = s.episode_table()
    ends = t["end"]
    lines = [f"store      {s.path}  ({_disk_bytes(s.path) / 1e6:.1f} MB on disk)",
             "keys       " + ", ".join(f"{k} {tuple(shape)} {np.dtype(d).name}" for k, (shape, d) in s.schema.items()),
             f"episodes   {s.n_episodes} closed, {s.n_steps} steps"]
    if s.n_episodes:
        lengths = t["length"]
        intervened = s.read("intervened", 0, int(ends[-1]))
        ep_interv = _per_episode(intervened.astype(np.int64), ends)
        lines += [
            f"length     min {lengths.min()}  mean {lengths.mean():.1f}  max {lengths.max()}",
            f"success    {int(t['success'].sum())}/{s.n_episodes} ({100 * t['success'].mean():.0f} %)",
            "sources    " + ", ".join(
                f"{src}: {n} ({int(t['success'][t['source'] == src].sum())} successful)"
                for src, n in sorted(Counter(t["source"].tolist()).items())),
            f"interventions  {int(intervened.sum())} steps in {int((ep_interv > 0).sum())} episodes",
            f"interrupted    {int(t['interrupted'].sum())} episodes (writer died mid-episode)",
        ]
        tasks = sorted(set(t["task"].tolist()))
        lines.append("tasks      " + ", ".join(tasks))
        versions = s.read("policy_version", 0, int(ends[-1]))
        lines.append(f"policy versions  {versions.min()} .. {versions.max()}")
    op = s.open_episode
    if op is not None:
        state = "being written" if s.writer_active else "left open, no writer (closed as interrupted on the next append-open)"
        lines.append(f"open episode  {op['n_steps']} steps, {state}")
    return "\n".join(lines)


def ls(store) -> str:
    """One line per closed episode."""
    s = _as_store(store)
    t = s.episode_table()
    header = f"{'#':>5} {'start':>8} {'len':>5} {'source':<12} {'task':<16} {'ok':<3} {'int':>4} {'return':>8}  flags"
    if not s.n_episodes:
        return header
    ends = t["end"]
    n = int(ends[-1])
    returns = _per_episode(s.read("reward", 0, n).astype(np.float64), ends)
    interv = _per_episode(s.read("intervened", 0, n).astype(np.int64), ends)
    rows = [header]
    for i in range(s.n_episodes):
        flags = "interrupted" if t["interrupted"][i] else ""
        rows.append(f"{i:>5} {t['start'][i]:>8} {t['length'][i]:>5} {t['source'][i]:<12} {t['task'][i][:16]:<16} "
                    f"{'yes' if t['success'][i] else 'no':<3} {interv[i]:>4} {returns[i]:>8.2f}  {flags}")
    return "\n".join(rows)


def export_episode(store, i: int, out_dir, fps: int = 10) -> list[Path]:
    """Write episode i as one mp4 per camera (frames + the final observation) and a PNG plot of
    actions, proprio and reward vs step. Returns the written paths."""
    import imageio.v2 as imageio
    import matplotlib

    if importlib.util.find_spec("imageio_ffmpeg") is None:  # imageio's mp4 writer
        raise RuntimeError("export_episode writes mp4 with imageio-ffmpeg: pip install imageio-ffmpeg")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = _as_store(store)
    ep = s.episode(i)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"episode_{ep['meta']['index']:05d}"
    written = []
    for key in s.obs_keys:
        shape, dtype = s.schema[key]
        if not is_image(shape, dtype):
            continue
        path = out / f"{stem}_{key}.mp4"
        frames = np.concatenate([ep[key], ep["final_obs"][key][None]])
        # macro_block_size=2: keep the exact size when it is even (no rescaling of small frames)
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=2) as w:
            for frame in frames:
                w.append_data(frame)
        written.append(path)

    steps = np.arange(ep["meta"]["length"])
    panels = [("action", ep["action"])] + [(k, ep[k]) for k in s.obs_keys if len(s.schema[k][0]) == 1]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 2.0 * (len(panels) + 1)), sharex=True)
    for ax, (name, values) in zip(axes, panels):
        ax.plot(steps, values.reshape(len(steps), -1))
        ax.set_ylabel(name)
    ax = axes[-1]
    ax.plot(steps, ep["reward"], label="reward")
    ax.fill_between(steps, 0, ep["intervened"].astype(float), step="mid", alpha=0.3, label="intervened")
    ax.set_ylabel("reward")
    ax.set_xlabel("step")
    ax.legend(loc="upper left", fontsize=8)
    m = ep["meta"]
    fig.suptitle(f"episode {m['index']} - {m['task']} - {m['source']} - "
                 f"{'success' if m['success'] else 'failure'}{' - interrupted' if m['interrupted'] else ''}")
    fig.tight_layout()
    path = out / f"{stem}_plot.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written


if __name__ == "__main__":  # python -m robot_rl.data.inspect STORE [EPISODE OUT_DIR]
    import sys

    if len(sys.argv) == 2:
        print(info(sys.argv[1]))
        print(ls(sys.argv[1]))
    else:
        for p in export_episode(sys.argv[1], int(sys.argv[2]), sys.argv[3]):
            print(os.fspath(p))
