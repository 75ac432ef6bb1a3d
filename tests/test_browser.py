"""End to end in a real browser: ``streamlit run app.py`` on 127.0.0.1 with a finished run,
driven by Playwright with Debian's Chromium. Prints slider latency and page render times."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PROJECT = Path(__file__).resolve().parents[1]
PAGES = {"runs": "", "dataset": "dataset", "train": "train", "threshold": "threshold"}
PAGES |= {"calibration": "calibration", "patient": "patient"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(dashboard_artifacts, tmp_path):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Chromium is not installed: `apt-get install chromium` (Debian) to run this")
    pytest.importorskip("playwright", reason="`pip install playwright` to run the browser test")
    port = _free_port()
    # only the classification run, so that every new browser session selects it
    artifacts = tmp_path / "artifacts"
    (artifacts / "runs").mkdir(parents=True)
    (artifacts / "runs" / "fixture").symlink_to(dashboard_artifacts / "runs" / "fixture")
    env = dict(os.environ, NSCLC_ARTIFACTS_DIR=str(artifacts), NSCLC_NO_AUTOSTART="1")
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("streamlit did not answer /_stcore/health within 60 s")
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=20)


def confusion_text(page) -> str:
    return page.locator("[data-testid='stTable']").first.inner_text()


@pytest.mark.slow
def test_browser_slider_and_every_page(server, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    timings = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # a deep link on the fresh server goes through app.py: navigation and run picker
        page.goto(f"{server}/patient")
        page.wait_for_selector("[data-testid='stImage'] img", timeout=60_000)
        navigation = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Runs" in navigation and "common" not in navigation, navigation
        for name, path in PAGES.items():
            page.goto(f"{server}/{path}")  # first visit: caches warm up
            page.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
            page.wait_for_timeout(500)
            started = time.perf_counter()
            page.goto(f"{server}/{path}")
            page.wait_for_selector("[data-testid='stMain'] h1", timeout=30_000)
            page.wait_for_load_state("networkidle")
            timings[name] = time.perf_counter() - started
            assert page.locator("[data-testid='stException']").count() == 0, name
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        page.goto(f"{server}/threshold")
        page.wait_for_selector("[data-testid='stTable']", timeout=30_000)
        slider = page.get_by_role("slider").first
        slider.focus()
        latencies = []
        # threshold 0 (all positive) and 1 (all negative): each press must change the matrix
        slider.press("Home")
        page.wait_for_timeout(1000)
        for key in ("End", "Home") * 3:
            current = confusion_text(page)
            started = time.perf_counter()
            slider.press(key)
            page.wait_for_function(
                "old => document.querySelector(\"[data-testid='stTable']\").innerText !== old",
                arg=current,
                timeout=10_000,
            )
            latencies.append(time.perf_counter() - started)
        page.screenshot(path=str(tmp_path / "threshold_moved.png"), full_page=True)
        # the patient page's CT planes and network input render as real, decoded images
        page.goto(f"{server}/patient")
        page.wait_for_selector("[data-testid='stImage'] img", timeout=30_000)
        page.wait_for_load_state("networkidle")
        widths = page.eval_on_selector_all(
            "[data-testid='stImage'] img", "images => images.map(i => i.naturalWidth)"
        )
        assert len(widths) == 4 and min(widths) > 0, widths
        page.screenshot(path=str(tmp_path / "patient.png"), full_page=True)
        browser.close()
    with capsys.disabled():
        print(f"\nbrowser: screenshots in {tmp_path}")
        print(
            "first render with a warm cache: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        )
        latency = sorted(latencies)[len(latencies) // 2]
        print(f"slider key press -> new confusion matrix: median {latency * 1000:.0f} ms")
    assert max(timings.values()) < 10  # generous for CI; the note reports the measured values
