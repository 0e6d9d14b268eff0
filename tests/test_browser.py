"""The first five minutes, in a real browser: open the dashboard, see the demo dataset, queue two
tiny runs, watch them finish without reloading, compare them with heatmaps, predict on an
uploaded image and download the mask.

Needs Chromium at /usr/bin/chromium (Debian's ``chromium`` package; ``scripts/test.sh`` installs it
as root). Skipped with a reason where it is absent outside CI; a failure in CI.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest

CHROMIUM = "/usr/bin/chromium"
PROJECT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing; install Debian's chromium package")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard(workspace, tmp_path, *args: str, port: int | None = None):
    """A dashboard server on ``port`` (a free one by default) over ``workspace`` (extra ``streamlit run`` arguments
    in ``args``); yields its URL. Afterwards any training is stopped, the server too, and the end of its log printed."""
    port = port or _free_port()
    env = dict(os.environ, SEGCORE_WORKSPACE=str(workspace.root))
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(PROJECT / "streamlit_app.py"), "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1", *args],
        cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the dashboard did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        yield url
    finally:
        from segcore import queue as run_queue
        from segcore import runs

        for s in runs.list_runs(workspace):
            if s.state in ("queued", "running"):
                run_queue.stop(s.run_id, workspace, wait=30)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        print((tmp_path / "server.log").read_text()[-3000:])


@pytest.fixture
def server(workspace, tmp_path):
    """A dashboard server on a free port over a fresh workspace; stopped (with any training) afterwards."""
    with dashboard(workspace, tmp_path) as url:
        yield url


def wait_idle(page, timeout=60_000) -> None:
    """Wait until the Streamlit script has finished its run."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_timeout(300)


def nav(page, label: str) -> None:
    """Open a page from the sidebar and wait until its title is shown and its script has run."""
    from playwright.sync_api import expect

    page.locator('[data-testid="stSidebarNav"]').get_by_text(label, exact=True).click()
    page.wait_for_url(re.compile(rf"/{label.lower()}(\?.*)?$"))  # pages keep their selection in the query
    expect(page.get_by_role("heading", name=label, exact=True)).to_be_visible(timeout=60_000)
    wait_idle(page)


def at_least(page, selector: str, n: int, timeout=60_000) -> None:
    """Wait until ``selector`` matches at least ``n`` elements."""
    page.locator(selector).nth(n - 1).wait_for(timeout=timeout)


def slider_move(page, key: str, steps: int) -> None:
    """Move a slider by ``steps`` options with the keyboard (negative: to the left)."""
    thumb = page.locator(f".st-key-{key} input[type='range']")
    thumb.focus()
    for _ in range(abs(steps)):
        thumb.press("ArrowLeft" if steps < 0 else "ArrowRight")
    wait_idle(page)


def test_first_five_minutes(chromium, server, workspace, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from segcore import runs

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            # Home: the demo dataset is there on first start
            page.goto(server)
            wait_idle(page, 120_000)
            expect(page.get_by_text("The demo dataset is ready:")).to_be_visible(timeout=60_000)
            expect(page.get_by_text("No runs yet")).to_be_visible()

            # Data: samples with overlays
            nav(page, "Data")
            expect(page.get_by_text("background (not painted)")).to_be_visible()
            at_least(page, '[data-testid="stImage"]', 12)

            # Train: two tiny U-Nets (depth 3, 8 and 16 filters, 32 px, 2 epochs)
            nav(page, "Train")
            slider_move(page, "train_depth", -1)  # 4 -> 3
            slider_move(page, "train_size", -3)  # 128 -> 32
            page.locator(".st-key-train_epochs input").fill("2")
            page.locator(".st-key-train_epochs input").press("Enter")
            wait_idle(page)
            for filters_steps, name in ((-2, "tiny-a"), (1, "tiny-b")):
                slider_move(page, "train_filters", filters_steps)  # 32 -> 8, then 8 -> 16
                page.locator(".st-key-train_name input").fill(name)
                page.locator(".st-key-train_name input").press("Enter")
                wait_idle(page)
                page.get_by_role("button", name="Queue this run").click()
                wait_idle(page)
                expect(page.get_by_text("Queued 1 run(s)")).to_be_visible()
            cfgs = sorted((s.name, runs.RunFolder(s.path).read_config()) for s in runs.list_runs(workspace))
            got = [(n, c.model.depth, c.model.filters, c.train.image_size, c.train.epochs) for n, c in cfgs]
            assert got == [("tiny-a", 3, 8, 32, 2), ("tiny-b", 3, 16, 32, 2)]

            # ...and watch both finish on the same page, without reloading it
            deadline = time.time() + 420
            while time.time() < deadline:
                states = {s.name: s.state for s in runs.list_runs(workspace)}
                if all(v in ("finished", "failed", "stopped", "interrupted") for v in states.values()):
                    break
                page.wait_for_timeout(2000)
            assert states == {"tiny-a": "finished", "tiny-b": "finished"}, states
            # the live panel (a fragment polling the run folders) shows the finished run by itself
            expect(page.get_by_text("finished 2 epoch(s)").first).to_be_visible(timeout=15_000)
            at_least(page, '[data-testid="stPlotlyChart"]', 1)

            # Compare: both runs, heatmaps and metric tables
            nav(page, "Compare")
            expect(page.get_by_text("heatmap / prediction").first).to_be_visible(timeout=60_000)
            wait_idle(page)
            at_least(page, '[data-testid="stImage"]', 1 + 4 * 3)  # legend + 4 images x (truth + 2 runs)
            expect(page.get_by_text("Metrics on the test split")).to_be_visible()
            page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

            # Predict: upload an image, see the prediction, download the mask
            nav(page, "Predict")
            sample = cv2.imread(str(workspace.dataset_dir("demo") / "images" / "demo_0000.png"), cv2.IMREAD_UNCHANGED)
            upload = tmp_path / "upload.png"
            cv2.imwrite(str(upload), sample)
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
            expect(page.get_by_text("predicted mask over the image", exact=True)).to_be_visible(timeout=120_000)
            wait_idle(page, 120_000)
            with page.expect_download() as download:
                page.get_by_role("button", name="Download mask").click()
            path = tmp_path / "mask.png"
            download.value.save_as(path)
            mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            assert download.value.suggested_filename == "upload_mask.png"
            assert mask.shape == sample.shape[:2] and mask.max() <= 3
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(tmp_path / "predict.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_deep_link_on_a_fresh_server_runs_through_the_router(chromium, server):
    """A bookmark of /data opened first after a restart gets the app's navigation and the demo dataset."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(server + "/data")
            wait_idle(page, 120_000)
            expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=60_000)
            nav_text = page.locator('[data-testid="stSidebarNav"]').inner_text()
            labels = [line.strip() for line in nav_text.splitlines() if line.strip() in ("Home", "Data", "Train", "Runs", "Compare", "Predict", "ui", "streamlit app")]
            assert labels == ["Home", "Data", "Train", "Runs", "Compare", "Predict"]
            assert page.url.split("?")[0].endswith("/data") and page.url.endswith("?dataset=demo")  # the page adds its selection
            expect(page.get_by_text("demo_0000", exact=True).first).to_be_visible()  # the demo, made by the router
        finally:
            browser.close()


def test_review_tools_compare_and_batch_predict(chromium, server, workspace, tmp_path):
    """Compare's confusion matrices, precision-recall curves and disagreement ranking, and Predict's zip of
    images, on two runs whose saved predictions differ on one image's square (no training: fast)."""
    import io
    import zipfile

    import numpy as np
    from playwright.sync_api import expect, sync_playwright

    from test_pages import make_dataset, make_report, make_run, save_tiny_model
    from test_review_pages import write_cache

    import shutil

    shutil.rmtree(workspace.dataset_dir("demo"), ignore_errors=True)  # the server may have made the real demo
    make_dataset(workspace)
    a = make_run(workspace, name="a", evaluation=make_report([0.6, 0.7, 0.2]))
    b = make_run(workspace, name="b", evaluation=make_report([0.8, 0.9, 0.1]))
    write_cache(workspace, a)
    write_cache(workspace, b, swap_square_in=("s018",))
    save_tiny_model(b)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            page.goto(server + "/compare")
            wait_idle(page, 120_000)
            expect(page.get_by_role("heading", name="Where the models go wrong")).to_be_visible(timeout=60_000)
            for run in (a, b):  # one confusion matrix per run, drawn
                expect(page.locator(f".st-key-cmp_cm_{run.run_id} .main-svg").first).to_be_visible(timeout=30_000)
            page.get_by_role("heading", name="Where the models go wrong").scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "compare-confusion.png"), full_page=True)
            page.get_by_role("tab", name="Precision-recall").click()
            expect(page.locator(".st-key-cmp_pr .main-svg").first).to_be_visible(timeout=30_000)
            expect(page.locator(".st-key-cmp_thr .main-svg").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "compare-pr.png"), full_page=True)
            page.get_by_role("tab", name="Where the models disagree").click()
            expect(page.get_by_text("s018 · runs differ on 9.8% · all wrong on 0.0%")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(tmp_path / "compare-disagree.png"), full_page=True)
            assert not page.locator('[data-testid="stException"]').count()

            page.goto(server + f"/predict?run={b.run_id}")
            wait_idle(page, 120_000)
            expect(page.get_by_role("button", name="Model (.keras)")).to_be_enabled(timeout=60_000)
            page.get_by_text("Folder or zip", exact=True).click()
            wait_idle(page)
            buffer = io.BytesIO()
            rng = np.random.default_rng(0)
            with zipfile.ZipFile(buffer, "w") as zf:
                for i in range(3):
                    zf.writestr(f"set/img{i}.png", cv2.imencode(".png", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))[1].tobytes())
                zf.writestr("set/broken.png", b"not a png")
            upload = tmp_path / "set.zip"
            upload.write_bytes(buffer.getvalue())
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
            wait_idle(page)
            page.get_by_role("button", name=re.compile("^Predict all with")).click()
            expect(page.get_by_text("3 of 4 images predicted.")).to_be_visible(timeout=120_000)
            expect(page.get_by_text(re.compile("set/broken.png is not an image"))).to_be_visible()
            wait_idle(page)
            with page.expect_download() as download:
                page.get_by_role("button", name="Download the masks (zip)").click()
            path = tmp_path / "masks.zip"
            download.value.save_as(path)
            with zipfile.ZipFile(path) as zf:
                assert sorted(zf.namelist()) == ["problems.txt", "set/img0_mask.png", "set/img1_mask.png", "set/img2_mask.png"]
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(tmp_path / "predict-batch.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_runs_page_settings_diff_and_parallel_view(chromium, server, workspace, tmp_path):
    """Runs, on runs written by the test: the settings columns of the table, the settings of two runs side by
    side, settings against the score as parallel coordinates, and a running run's pace (no training: fast)."""
    import shutil

    from playwright.sync_api import expect, sync_playwright

    from test_pages import make_dataset
    from test_runs_review_pages import make_run

    shots = Path(os.environ.get("SEGCORE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workspace.dataset_dir("demo"), ignore_errors=True)  # the server may have made the real demo
    make_dataset(workspace)
    make_run(workspace, "baseline", lr=1e-3, loss="dice", all_dice=0.71)
    make_run(workspace, "high-lr", lr=1e-2, loss="focal", batch=4, all_dice=0.58)
    make_run(workspace, "vgg16-ft", lr=1e-4, loss="dice", encoder="vgg16", image_size=64, all_dice=0.83)
    live = make_run(workspace, "live", state="running", epochs=20, done=6, lr=3e-4)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(server + "/runs")
            wait_idle(page, 120_000)
            expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=60_000)
            # The grid draws on a canvas; its accessible copy holds the columns in view, so scroll it sideways.
            table = page.locator('[data-testid="stDataFrame"]').first
            headers = table.locator("th[role=columnheader]")
            expect(headers.first).to_be_attached(timeout=30_000)
            seen = set(headers.all_text_contents())
            page.screenshot(path=str(shots / "runs-table.png"))
            table.hover()
            page.mouse.wheel(3000, 0)
            page.wait_for_timeout(500)
            seen |= set(headers.all_text_contents())
            assert {"learning rate", "image size", "batch", "norm", "loss", "encoder", "max epochs"} <= seen, seen

            diff = page.get_by_role("heading", name="Settings of two runs")
            diff.scroll_into_view_if_needed()
            expect(page.get_by_text(re.compile(r"^\d+ setting\(s\) differ; "))).to_be_visible()
            cells = page.locator('[data-testid="stDataFrame"]').nth(1).locator("td[role=gridcell]")
            expect(cells.filter(has_text="train.learning_rate").first).to_be_attached(timeout=30_000)
            expect(cells.filter(has_text="model.depth")).to_have_count(0)  # equal in both: not shown
            page.screenshot(path=str(shots / "runs-settings-differ.png"))
            page.locator(".st-key-diff_all").get_by_text("All settings", exact=True).click()
            wait_idle(page)
            expect(page.get_by_text(re.compile(r"^\d+ setting\(s\) differ of \d+\.$"))).to_be_visible()
            expect(cells.filter(has_text="model.depth").first).to_be_attached(timeout=30_000)
            page.screenshot(path=str(shots / "runs-settings-diff.png"))

            page.get_by_role("heading", name="Settings against the score").scroll_into_view_if_needed()
            parallel = page.locator(".st-key-settings_parallel")
            expect(parallel.locator(".main-svg").first).to_be_visible(timeout=30_000)
            for axis in ("learning rate (log scale)", "encoder", "test Dice, all classes"):
                expect(parallel.get_by_text(axis, exact=True).first).to_be_attached()
            expect(page.get_by_text("Not drawn: live (no score yet).")).to_be_visible()
            page.screenshot(path=str(shots / "runs-parallel.png"))

            page.goto(server + f"/runs?run={live.run_id}")
            wait_idle(page, 120_000)
            pace = page.get_by_text(re.compile(r"42 s per epoch · about \d+ min left"))
            expect(pace).to_be_visible(timeout=30_000)
            pace.scroll_into_view_if_needed()
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(shots / "runs-one-run.png"))

            # Train's live panel: the same pace, and the curves smoothed on request
            nav(page, "Train")
            expect(page.get_by_text(re.compile(r"42 s per epoch · about \d+ min left"))).to_be_visible(timeout=30_000)
            slider_move(page, "train_curves_smoothing", 80)
            page.locator(".st-key-train_curves_smoothing").scroll_into_view_if_needed()
            expect(page.locator(".st-key-train_curves_smoothing")).to_contain_text("0.80")
            assert not page.locator('[data-testid="stException"]').count()
            page.screenshot(path=str(shots / "train-live.png"))
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
