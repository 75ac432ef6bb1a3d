"""A new user's first start, timed: from an empty artifacts folder to the demo's first
classification results, against the product's 6-minute target.

    python benchmarks/bench_first_start.py [--keep]

It does what the dashboard's first session does (``dashboard.runs.first_start``: the demo
jobs, which build the demo cohort, preprocess it and train the house protocol), follows the
classification run's status and prints the time each stage began, the time to the finished
run (its results are then on every page) and its ratio to the 360 s target. The survival job
queued behind it is cancelled at the end. Takes 5 to 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nsclc_engine.dashboard.runs import first_start
from nsclc_engine.train import jobs

TARGET_S = 360.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the artifacts folder")
    args = parser.parse_args()
    artifacts = Path(tempfile.mkdtemp(prefix="first-start-"))
    os.environ.pop("NSCLC_NO_AUTOSTART", None)
    started = time.monotonic()
    run_id = first_start(artifacts)
    stage, state = None, "queued"
    try:
        while state in ("queued", "running"):
            current = jobs.status(run_id, artifacts)
            state = current["state"]
            if current.get("stage") != stage:
                stage = current.get("stage")
                print(f"{time.monotonic() - started:6.0f} s  {state}: {stage or ''}", flush=True)
            time.sleep(1.0)
        elapsed = time.monotonic() - started
    finally:
        for other in ("demo", "demo-survival"):
            if (artifacts / "runs" / other).is_dir():
                jobs.cancel(other, artifacts)
    print(f"first start -> {run_id} {state} after {elapsed:.0f} s")
    print(f"ratio to the {TARGET_S:.0f} s target: {elapsed / TARGET_S:.2f}x")
    if args.keep:
        print(f"artifacts kept in {artifacts}")
    else:
        shutil.rmtree(artifacts, ignore_errors=True)
    return 0 if state == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
