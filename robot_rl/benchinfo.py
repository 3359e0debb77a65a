"""What every bench records beside its figures: the machine and how loaded it was."""
from __future__ import annotations

import json
import os
import platform


def machine_info(**extra) -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2)}
    info.update(extra)
    return info


def write_results(path: str, machine: dict, rows: list) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine, "rows": rows}, f, indent=1)
    print("machine:", machine)
