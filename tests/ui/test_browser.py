"""End to end in a real browser: ``streamlit run app.py`` on 127.0.0.1 with a finished run,
driven by Playwright with Debian's Chromium. Prints slider latency and page render times."""

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from nsclc_engine import access
from nsclc_engine.access import local_admin_token
from tests.helpers import PROJECT, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]

PAGES = {"runs": "", "dataset": "dataset", "train": "train", "threshold": "threshold"}
PAGES |= {"calibration": "calibration", "patient": "patient"}


def require_browser() -> None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Chromium is not installed: `apt-get install chromium` (Debian) to run this")
    pytest.importorskip("playwright", reason="`pip install playwright` to run the browser test")


@pytest.fixture(scope="module")
def server(dashboard_artifacts, tmp_path_factory):
    """One server for this module's tests (a start and its caches' warm-up cost seconds each
    time): they write apart, notes in one test, verdicts in another, nothing in the third."""
    require_browser()
    # only the classification run, so that every new browser session selects it
    artifacts = tmp_path_factory.mktemp("served") / "artifacts"
    (artifacts / "runs").mkdir(parents=True)
    (artifacts / "runs" / "fixture").symlink_to(dashboard_artifacts / "runs" / "fixture")
    env = dict(os.environ, NSCLC_ARTIFACTS_DIR=str(artifacts), NSCLC_NO_AUTOSTART="1")
    served = Server(env)
    served.admin_link = f"?token={local_admin_token(artifacts)}"  # what the server printed
    served.artifacts = artifacts
    yield served
    served.stop()


class Server:
    """A ``streamlit run app.py`` (:func:`serve`) that a test can restart; ``url`` is its
    address now."""

    def __init__(self, env: dict):
        self.env = env
        self.start()

    def start(self) -> None:
        self.running = serve(self.env)
        self.url = next(self.running)

    def stop(self) -> None:
        next(self.running, None)

    def restart(self) -> None:
        self.stop()
        self.start()


def serve(env: dict):
    """``streamlit run app.py`` on a free port of 127.0.0.1 until the test ends (or the
    generator is resumed once more); yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true"]
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode} before it answered")
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
        except OSError:
            return False
        return True

    try:
        wait_until(healthy, 60, "streamlit to answer /_stcore/health")
    except BaseException:
        process.kill()
        raise
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


# the confusion matrix at threshold 0: no patient in the "predicted negative" column
ALL_CALLED_POSITIVE = """() => {
    const cells = [...document.querySelectorAll("[data-role='confusion-matrix'] td")];
    const negatives = cells.filter(cell => ["tn", "fn"].includes(cell.dataset.cell));
    return negatives.length === 2 && negatives.every(cell => cell.innerText.endsWith(" 0"));
}"""


def wait_for_admin_cookie(page, timeout_ms: int = 30_000) -> None:
    """Until the admin link's session cookie is set: a page loaded before it would open a new
    session as a viewer (the cookie is written by the page's script, after its run)."""
    page.wait_for_function(
        f"() => document.cookie.includes('{access.ADMIN_COOKIE}=')", timeout=timeout_ms
    )


def wait_for_run(page, timeout_ms: int = 60_000) -> None:
    """Until the page's script run (begun when its title appeared) has finished."""
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout_ms)
    page.wait_for_selector(
        "[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms
    )


@pytest.mark.slow
def test_browser_pages_slider_case_viewer_and_a_note_after_a_restart(
    server, dashboard_artifacts, tmp_path, capsys
):
    """Every page renders; the threshold slider moves the matrix; a click on a confusion
    cell's patient opens their case, whose viewer (a 512 px axial plane drawn in the browser)
    paints every keyboard slice change within 300 ms; a review note saved on the page is read
    back after the server restarts."""
    from playwright.sync_api import sync_playwright

    timings = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # a deep link on the fresh server goes through app.py: navigation and run picker; the
        # admin link's session cookie keeps this browser the admin for the pages below
        page.goto(f"{server.url}/patient{server.admin_link}")
        page.wait_for_selector("[data-testid='stImage'] img", timeout=60_000)
        wait_for_admin_cookie(page)
        navigation = page.locator("[data-testid='stSidebarNav']").inner_text()
        assert "Runs" in navigation and "common" not in navigation, navigation
        for name, path in PAGES.items():
            page.goto(f"{server.url}/{path}")  # first visit: caches warm up
            wait_for_run(page)
            started = time.perf_counter()
            page.goto(f"{server.url}/{path}")
            wait_for_run(page, 30_000)
            timings[name] = time.perf_counter() - started
            assert page.locator("[data-testid='stException']").count() == 0, name
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        page.goto(f"{server.url}/threshold")
        slider = page.get_by_role("slider", name="Threshold")
        slider.wait_for(timeout=30_000)
        slider.focus()
        slider.press("Home")  # threshold 0: all called positive, in the page at once
        page.wait_for_function(ALL_CALLED_POSITIVE, timeout=10_000)
        page.wait_for_url("**threshold=0.000**", timeout=30_000)  # and on the server
        page.screenshot(path=str(tmp_path / "threshold_moved.png"), full_page=True)
        # threshold 0 (the last key was Home): every survivor is a false positive; a click on
        # the first one's row opens their case
        predictions = pd.read_csv(dashboard_artifacts / "runs" / "fixture" / "predictions.csv")
        validation = predictions[predictions.split == "validation"]
        first = validation[validation.y_true == 0].sort_values("y_prob").patient_id.iloc[-1]
        page.get_by_role("radio", name=re.compile(r"^FP: ")).click()
        grid = page.locator("[data-testid='stDataFrame']").last
        grid.wait_for(timeout=30_000)
        box = grid.bounding_box()
        page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's selection box
        page.wait_for_url(re.compile(r"/patient\?.*patient="), timeout=30_000)
        heading = page.locator("[data-testid='stMain'] h3").first
        heading.wait_for(timeout=60_000)
        assert heading.inner_text().strip() == first
        # the case viewer
        viewer = page.wait_for_selector("iframe[title='CT case viewer']", timeout=60_000)
        frame = viewer.content_frame()
        frame.wait_for_selector("body[data-ready='1']", timeout=30_000)
        widths = frame.eval_on_selector_all(
            "canvas", "all => all.map(c => c.getBoundingClientRect().width)"
        )
        assert widths[0] >= 512 and len(widths) == 3, widths  # axial, coronal, sagittal
        assert frame.evaluate("document.querySelector('canvas').width") == 512
        axial = frame.locator("canvas").first
        axial.focus()
        walls = []
        for count, key in enumerate(("ArrowUp",) * 3 + ("ArrowDown",) * 6 + ("ArrowUp",) * 3):
            started = time.perf_counter()
            axial.press(key)  # through the browser's input pipeline, as a user's key
            frame.wait_for_function(f"document.body.dataset.changes === '{count + 1}'")
            walls.append(time.perf_counter() - started)
        # from the key event to the next frame after the new slice was drawn, in the page
        slices = frame.evaluate("window.__latencies")
        assert len(slices) == 12 and max(slices) < 300, slices
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
        # a review note, saved through the page, is there after a restart
        note = "necrotic core at the apex; read the contour again"
        page.get_by_label("Note").fill(note)
        page.get_by_role("button", name="Save note").click()
        page.get_by_text("saved.").wait_for(timeout=30_000)
        server.restart()
        page.goto(f"{server.url}/dataset")  # which lists the notes on the run's data
        page.wait_for_function(  # the notes table's cell (kept in the DOM for screen readers)
            "note => document.querySelector(\"[data-testid='stMain']\")"
            "?.textContent.includes(note)",
            arg=note,
            timeout=60_000,
        )
        page.screenshot(path=str(tmp_path / "note_after_restart.png"), full_page=True)
        browser.close()
    with capsys.disabled():
        print(f"\nbrowser: screenshots in {tmp_path}")
        print(
            "first render with a warm cache: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        )
        print(
            f"case viewer: key press -> new slice painted: median "
            f"{sorted(slices)[len(slices) // 2]:.1f} ms, max {max(slices):.1f} ms in the page; "
            f"{1000 * max(walls):.0f} ms at most with Playwright's round trip"
        )


@pytest.mark.slow
def test_first_start_launches_the_demo_and_every_page_shows_its_progress(tmp_path):
    """A new user's first start on an empty artifacts folder: the first session launches the
    two demo jobs in order (classification, then survival), and every page shows the queued or
    preparing run without an error. The time to the first results (6-minute target) is a
    benchmark, ``benchmarks/bench_first_start.py``: a wall-clock assert would test the machine,
    and the full demo takes 5 to 9 minutes on 2 cores."""
    from playwright.sync_api import sync_playwright

    from nsclc_engine.runs import list_runs
    from nsclc_engine.train import jobs

    require_browser()
    artifacts = tmp_path / "artifacts"
    env = {k: v for k, v in os.environ.items() if k != "NSCLC_NO_AUTOSTART"}
    env |= {"NSCLC_ARTIFACTS_DIR": str(artifacts)}
    token = local_admin_token(artifacts)  # the link the starter opens (the Patient page too)
    server = serve(env)
    url = next(server)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/threshold?token={token}")  # the first session launches the demo
            page.wait_for_selector("[data-testid='stProgress']", timeout=60_000)
            wait_for_admin_cookie(page)
            page.screenshot(path=str(tmp_path / "first_start_progress.png"))
            runs = [run["run_id"] for run in list_runs(artifacts)]
            assert runs == ["demo", "demo-survival"]  # classification first: results soonest
            assert jobs.status("demo-survival", artifacts)["state"] == "queued"
            for name, path in PAGES.items():
                page.goto(f"{url}/{path}")
                wait_for_run(page)
                assert page.locator("[data-testid='stException']").count() == 0, name
                page.screenshot(path=str(tmp_path / f"first_start_{name}.png"), full_page=True)
                if name in ("threshold", "calibration", "patient"):  # they wait, and say so
                    assert (
                        "This page fills in when it finishes"
                        in page.locator("[data-testid='stMain']").inner_text()
                    )
            browser.close()
        assert jobs.status("demo", artifacts)["state"] in ("queued", "running")
        assert len(list_runs(artifacts)) == 2  # later sessions launched nothing more
    finally:
        demo_runs = [r for r in ("demo", "demo-survival") if (artifacts / "runs" / r).is_dir()]
        for run_id in demo_runs:
            jobs.cancel(run_id, artifacts)
        next(server, None)  # stops the server
        # the rest of the suite gets its cores back
        wait_until(
            lambda: all(
                jobs.status(r, artifacts)["state"] not in ("queued", "running") for r in demo_runs
            ),
            60,
            "the cancelled demo jobs to stop",
        )


class Forwarder:
    """A TCP forwarder from a free port of 127.0.0.1 to ``port``, as an SSH tunnel or a plain
    TCP proxy is. With ``rewrite``, each HTTP request's head is passed through it first (and
    the connection closed after the response, so every request is rewritten), as a reverse
    proxy that rewrites headers does; WebSocket frames then pass unchanged."""

    def __init__(self, port: int, rewrite=None):
        self.upstream, self.rewrite = port, rewrite
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream)) as server:
            if self.rewrite:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                head, _, rest = head.partition(b"\r\n\r\n")
                server.sendall(self.rewrite(head.decode("latin-1")).encode("latin-1") + rest)
            back = threading.Thread(target=_pipe, args=(server, client), daemon=True)
            back.start()
            _pipe(client, server)
            back.join()

    def close(self) -> None:
        self.listener.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def rewrite_like_a_proxy(upstream: str):
    """nginx's default ``proxy_pass`` (Host set to the upstream, no forwarding header) with the
    page's Origin rewritten to the upstream too, as proxies set up to pass Streamlit's origin
    check do: to the server, the request looks as if it came from a browser on its own
    loopback address."""

    def rewrite(head: str) -> str:
        lines = head.split("\r\n")
        kept = [line for line in lines[1:] if line.split(":")[0].lower() not in {"host", "origin"}]
        upgrade = any(line.lower().startswith("upgrade:") for line in kept)
        if not upgrade:
            kept = [line for line in kept if not line.lower().startswith("connection:")]
            kept.append("Connection: close")
        added = [f"Host: {upstream}"]
        if any(line.lower().startswith("origin:") for line in lines[1:]):
            added.append(f"Origin: http://{upstream}")
        return "\r\n".join([lines[0], *added, *kept]) + "\r\n\r\n"

    return rewrite


@pytest.mark.slow
def test_through_a_forwarder_or_a_proxy_a_browser_is_a_viewer_and_the_link_makes_the_admin(
    tmp_path,
):
    """Without sign-in, where a request seems to come from decides nothing: a browser reaching
    the server on 127.0.0.1 through a plain TCP forwarder, or through a proxy that rewrites
    Host and Origin to the server's loopback address, is a viewer. The link the server
    printed (with the token in ``<artifacts>/.local-admin-token``) makes it the admin; the
    token leaves the address bar, and a reload keeps the admin through the session cookie."""
    from playwright.sync_api import sync_playwright

    require_browser()
    artifacts = tmp_path / "artifacts"
    token = local_admin_token(artifacts)  # as the server would make it at its first session
    server = serve(dict(os.environ, NSCLC_ARTIFACTS_DIR=str(artifacts), NSCLC_NO_AUTOSTART="1"))
    upstream = next(server).removeprefix("http://")
    plain = Forwarder(int(upstream.rsplit(":", 1)[1]))
    proxy = Forwarder(int(upstream.rsplit(":", 1)[1]), rewrite_like_a_proxy(upstream))

    def who(page) -> str:
        caption = page.locator("[data-testid='stSidebar']").get_by_text(" · ")
        caption.wait_for(timeout=60_000)
        return caption.inner_text()

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for through in (plain, proxy):
                page = browser.new_context().new_page()  # no cookie from another session
                page.goto(through.url)
                assert who(page).startswith("anyone · viewer"), through.url
                navigation = page.locator("[data-testid='stSidebarNav']").inner_text()
                assert "Train" not in navigation and "Access" not in navigation
                page.screenshot(path=str(tmp_path / f"viewer_{through.url[-5:]}.png"))
            page = browser.new_context().new_page()
            page.goto(f"{proxy.url}/?token={token}")
            assert who(page).startswith("local · admin"), who(page)
            page.wait_for_function("() => !location.search.includes('token')")
            wait_for_admin_cookie(page)
            page.goto(f"{proxy.url}/train")  # a new session: the cookie, not the token
            assert who(page).startswith("local · admin")
            navigation = page.locator("[data-testid='stSidebarNav']").inner_text()
            assert "Train" in navigation and "Access and audit" in navigation
            page.screenshot(path=str(tmp_path / "admin.png"))
            browser.close()
    finally:
        plain.close()
        proxy.close()
        next(server, None)


MATRIX = "[data-role='confusion-matrix']"


def key_to_new_counts(page, slider, selector: str, presses: int = 16) -> list[float]:
    """Key press (End, Home alternated) to new confusion counts on the page, in ms, through
    Playwright: what a user's key costs until the page shows it, round trip included."""
    walls = []
    for key in ("End", "Home") * (presses // 2):
        current = page.locator(selector).first.inner_text()
        started = time.perf_counter()
        slider.press(key)
        page.wait_for_function(
            "([selector, old]) => document.querySelector(selector).innerText !== old",
            arg=[selector, current],
            timeout=10_000,
        )
        walls.append(1000 * (time.perf_counter() - started))
    return walls


def median(values) -> float:
    return sorted(values)[len(values) // 2]


@pytest.mark.slow
def test_links_the_instant_threshold_explorer_and_a_review_queue_by_keyboard(
    server, dashboard_artifacts, tmp_path, capsys
):
    """A link opens exactly its view and the address bar follows the view; the threshold
    explorer repaints the matrix on a key press without the server (latency against a bare
    Streamlit app's, measured the same way); ten cases of a review queue get a verdict with
    the keyboard only, one of them from inside the case viewer, and the verdicts are in the
    review database."""
    from playwright.sync_api import sync_playwright

    from nsclc_engine.review import store

    predictions = pd.read_csv(
        dashboard_artifacts / "runs" / "fixture" / "predictions.csv", dtype={"patient_id": str}
    )
    validation = predictions[predictions.split == "validation"]
    patient = sorted(validation.patient_id)[1]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}/{server.admin_link}")
        wait_for_run(page)
        wait_for_admin_cookie(page)
        # a link to a case
        page.goto(f"{server.url}/patient?run=fixture&patient={patient}&split=validation")
        # (wait for the patient's own heading: another h3 may show while the page loads)
        heading = page.locator("[data-testid='stMain'] h3", has_text=patient).first
        heading.wait_for(timeout=60_000)
        assert heading.inner_text().strip() == patient
        assert f"patient={patient}" in page.url and "run=fixture" in page.url
        # a link to a threshold: the matrix at 0.250 is the validation counts there
        page.goto(f"{server.url}/threshold?run=fixture&threshold=0.250&split=validation")
        page.wait_for_selector(MATRIX, timeout=60_000)
        wanted = metrics_at(validation, 0.25)
        cells = page.locator(f"{MATRIX} td").all_inner_texts()
        assert cells == [
            f"TN {wanted['tn']}",
            f"FP {wanted['fp']}",
            f"FN {wanted['fn']}",
            f"TP {wanted['tp']}",
        ], cells
        # the explorer: keys repaint the matrix in the page; the address bar follows
        slider = page.get_by_role("slider", name="Threshold")
        slider.focus()
        walls = key_to_new_counts(page, slider, MATRIX)
        in_page = page.evaluate("document.querySelector('.tx-root').__latencies")
        slider.press("Home")
        page.wait_for_url("**threshold=0.000**", timeout=30_000)
        page.screenshot(path=str(tmp_path / "threshold_explorer.png"), full_page=True)
        # an unknown run is one line on the page
        page.goto(f"{server.url}/threshold?run=no-such-run")
        wait_for_run(page)
        assert (
            "The link names run 'no-such-run', which is not here"
            in page.locator("[data-testid='stMain']").inner_text()
        )
        assert page.locator("[data-testid='stException']").count() == 0
        # a review queue of ten training cases, walked with the keyboard only
        page.goto(f"{server.url}/patient?run=fixture&split=train")
        page.get_by_role("button", name="All train patients").click()
        page.get_by_text("case 1 of").wait_for(timeout=60_000)
        for case in range(1, 11):
            page.get_by_text(f"case {case} of").wait_for(timeout=60_000)
            wait_for_run(page)
            if case == 5:  # from inside the case viewer: its keys go on to the page
                viewer = page.wait_for_selector("iframe[title='CT case viewer']")
                frame = viewer.content_frame()
                frame.wait_for_selector("body[data-ready='1']", timeout=30_000)
                frame.locator("canvas").first.focus()
                frame.locator("canvas").first.press("2")
            else:
                page.locator("body").press("1")
        page.get_by_text("case 11 of").wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "review_queue.png"), full_page=True)
        browser.close()
    verdicts = store.verdicts(store.review_url(server.artifacts), run_id="fixture")
    assert len(verdicts) == 10 and verdicts.patient_id.nunique() == 10
    assert verdicts.verdict.tolist().count("disagree") == 1
    assert set(verdicts.author) == {"local"}
    with capsys.disabled():
        print(
            f"\nthreshold explorer: key press -> new counts painted: median "
            f"{median(in_page):.1f} ms in the page, {median(walls):.0f} ms with Playwright's "
            "round trip (a bare Streamlit app: python benchmarks/bench_threshold_explorer.py)"
        )
    assert median(in_page) <= 50


def metrics_at(frame: pd.DataFrame, threshold: float) -> dict:
    from nsclc_engine.stats.metrics import metrics_at_threshold

    return metrics_at_threshold(frame.y_true, frame.y_prob, threshold)
