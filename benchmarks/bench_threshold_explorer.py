"""The Threshold page's explorer against a bare Streamlit app, in Chromium: key press to new
confusion counts on the page.

    python benchmarks/bench_threshold_explorer.py [--artifacts DIR] [--run RUN_ID] [--presses 16]

Serves the dashboard on the artifacts folder (default ``artifacts/``, a finished
classification run: the demo's by default) and a bare Streamlit app (one slider, a table,
three metrics and a heatmap: the baseline named in issue 29), presses End and Home in turn on
each slider and prints the median wall time from the key press to changed counts, through
Playwright, for both, with the ratio, and the explorer's own in-page time (key event to the
next painted frame). Needs Chromium (/usr/bin/chromium) and Playwright.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from nsclc_engine.access import local_admin_token  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]
BARE_APP = """
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

rng = np.random.default_rng(0)
y, p = rng.integers(0, 2, 80), rng.random(80)
t = st.slider("Threshold", 0.0, 1.0, 0.5, step=0.001)
tp, fp = int(((p >= t) & (y == 1)).sum()), int(((p >= t) & (y == 0)).sum())
fn, tn = int(((p < t) & (y == 1)).sum()), int(((p < t) & (y == 0)).sum())
st.table(pd.DataFrame({"neg": [tn, fn], "pos": [fp, tp]}, index=["true 0", "true 1"]))
a, b, c = st.columns(3)
a.metric("sensitivity", f"{tp / max(tp + fn, 1):.3f}")
b.metric("specificity", f"{tn / max(tn + fp, 1):.3f}")
c.metric("accuracy", f"{(tp + tn) / 80:.3f}")
st.plotly_chart(go.Figure(go.Heatmap(z=[[tn, fp], [fn, tp]])))
"""


def serve(script: str, port: int, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"streamlit on port {port} did not answer")


def key_to_counts(page, slider, selector: str, presses: int) -> list[float]:
    walls = []
    for key in ("End", "Home") * (presses // 2):
        before = page.locator(selector).first.inner_text()
        started = time.perf_counter()
        slider.press(key)
        page.wait_for_function(
            "([selector, old]) => document.querySelector(selector).innerText !== old",
            arg=[selector, before],
            timeout=10_000,
        )
        walls.append(1000 * (time.perf_counter() - started))
    return walls


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", default=str(PROJECT / "artifacts"))
    parser.add_argument("--run", default="demo")
    parser.add_argument("--presses", type=int, default=16)
    args = parser.parse_args()
    env = os.environ | {"NSCLC_ARTIFACTS_DIR": args.artifacts, "NSCLC_NO_AUTOSTART": "1"}
    bare = Path(tempfile.mkdtemp(prefix="bare-app-")) / "bare_app.py"
    bare.write_text(BARE_APP)
    dashboard, baseline = serve("app.py", 8611, env), serve(str(bare), 8612, env)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            token = local_admin_token(args.artifacts)
            page.goto(f"http://127.0.0.1:8611/threshold?run={args.run}&token={token}")
            matrix = "[data-role='confusion-matrix']"
            page.wait_for_selector(matrix, timeout=60_000)
            slider = page.get_by_role("slider", name="Threshold")
            slider.focus()
            explorer = key_to_counts(page, slider, matrix, args.presses)
            in_page = page.evaluate("document.querySelector('.tx-root').__latencies")
            page.goto("http://127.0.0.1:8612")
            page.wait_for_selector("[data-testid='stTable']", timeout=60_000)
            slider = page.get_by_role("slider").first
            slider.focus()
            bare_walls = key_to_counts(page, slider, "[data-testid='stTable']", args.presses)
            browser.close()
    finally:
        dashboard.terminate()
        baseline.terminate()
    print(f"key press -> new confusion counts, median of {args.presses} (End/Home alternated):")
    print(f"  bare Streamlit app (baseline): {median(bare_walls):.0f} ms through Playwright")
    print(
        f"  threshold explorer:            {median(explorer):.0f} ms through Playwright "
        f"({median(explorer) / median(bare_walls):.2f}x the baseline); "
        f"{median(in_page):.1f} ms in the page (target <= 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
