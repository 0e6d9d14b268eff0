"""The Home page's quick start, timed as a user meets it: from pressing the button to a
finished, evaluated run, through the real queue (worker process, training process, data
loading, checkpoints, test evaluation).

Usage:
    python bench/quick_start.py [--repeats 1] [--workspace DIR]

Prints one line per run and, last, one JSON object: seconds per run, their median,
the epochs trained, the test macro Dice, CPU count and the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--workspace", help="workspace folder (default: a new temporary one)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for one run")
    args = p.parse_args(argv)

    from segcore.data.demo import ensure_demo
    from segcore.quickstart import QUICK_START
    from segcore.runs import open_run
    from segcore.queue import launch, wait_for
    from segcore.workspace import get_workspace

    ws = get_workspace(args.workspace or tempfile.mkdtemp(prefix="segcore-quick-"))
    os.environ["SEGCORE_WORKSPACE"] = str(ws.root)
    ensure_demo(ws)  # the dashboard makes it when the server starts, before anyone presses the button
    load = os.getloadavg()[0]
    rows = []
    for i in range(args.repeats):
        t0 = time.time()
        run_id = launch(QUICK_START, ws)
        status = wait_for([run_id], ws, timeout=args.timeout)[run_id]
        seconds = time.time() - t0
        run = open_run(run_id, ws)
        test = (run.read_evaluation() or {}).get("macro", {}).get("dice")
        row = {"run": run_id, "state": status.get("state"), "seconds": round(seconds, 1), "epochs": status.get("epoch"),
               "test_dice": None if test is None else round(float(test), 4)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    secs = [r["seconds"] for r in rows]
    print(json.dumps({
        "bench": "quick_start", "seconds": secs, "median_seconds": statistics.median(secs),
        "epochs": [r["epochs"] for r in rows], "test_dice": [r["test_dice"] for r in rows],
        "cpus": os.cpu_count(), "load_average_at_start": round(load, 2),
        "settings": QUICK_START.to_dict()["train"] | {"depth": QUICK_START.model.depth, "filters": QUICK_START.model.filters},
    }))
    return 0 if all(r["state"] == "finished" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
