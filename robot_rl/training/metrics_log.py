"""Training scalars for TensorBoard (`tensorboard --logdir runs/`), and rows for a CSV file
(what bench/ and the docs read). One writer for `robot-rl pretrain` and the learner node."""
from __future__ import annotations

import csv
import os
import time


class MetricsLog:
    def __init__(self, log_dir, csv_path=None, csv_fields=None):
        from torch.utils.tensorboard import SummaryWriter  # imported here: torch is heavy

        os.makedirs(log_dir, exist_ok=True)
        self.tb = SummaryWriter(os.fspath(log_dir), flush_secs=10)
        self.csv_path, self.csv_fields = csv_path, tuple(csv_fields or ())
        if csv_path:
            with open(csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self.csv_fields)

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        """Numbers only: strings that parse as numbers are logged, the rest skipped."""
        now = time.time()
        for k, v in values.items():
            try:
                self.tb.add_scalar(f"{prefix}/{k}", float(v), int(step), walltime=now)
            except (TypeError, ValueError):
                continue

    def row(self, row: dict) -> None:
        if self.csv_path:
            with open(self.csv_path, "a", newline="") as f:
                csv.writer(f).writerow([row[k] for k in self.csv_fields])

    def close(self) -> None:
        self.tb.close()


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from the event files in log_dir, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.fspath(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
