"""A new user's journey with their own data, in a real browser: upload two real dataset zips
(ISBI membrane and the CamVid subset), open Train with each, queue a tiny run on the second, stop
and resume it, re-run it from the Runs page (the panel follows each action without a reload),
fetch every download on Runs, Compare and Predict and open each file, and follow a shared
``?run=`` link in a new browser context.

Needs Chromium at /usr/bin/chromium and the real datasets (``shared_datasets``). Screenshots of
each step go to ``$SEGCORE_SCREENSHOTS`` when set (else the test's temporary folder).
"""

from __future__ import annotations

import json
import os
import re
import time
import zipfile
from pathlib import Path

import cv2
import pytest

from test_browser import chromium, nav, server, slider_move, wait_idle  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CAMVID_CLASSES = "Sky Building Pole Road Pavement Tree SignSymbol Fence Car Pedestrian Bicyclist".split()
ENDED = ("finished", "failed", "stopped", "interrupted")


def make_zip(src: Path, out: Path) -> Path:
    """A zip of folder ``src`` as a user would make it (PNGs stored: they are compressed already)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src))
    return out


class Journey:
    """The browser page plus the checks every step makes."""

    def __init__(self, page, workspace, shots: Path):
        self.page, self.ws, self.shots, self.n = page, workspace, shots, 0

    def shot(self, name: str, at=None) -> None:
        """A screenshot of the window, scrolled to ``at`` (a locator) when given."""
        if at is not None:
            at.first.scroll_into_view_if_needed()
            self.page.wait_for_timeout(700)
        self.n += 1
        self.page.screenshot(path=str(self.shots / f"{self.n:02d}-{name}.png"), full_page=True)

    def no_exception(self) -> None:
        errors = self.page.locator('[data-testid="stException"]')
        assert not errors.count(), errors.first.inner_text()[:2000]

    def choose(self, key: str, option: str) -> None:
        """Pick ``option`` (its shown text, or the start of it) in selectbox ``key``."""
        options = self.page.locator("[role='option']").filter(has_text=option)
        for _ in range(3):  # the list opens on a click of its button; a rerun under way may close it again
            self.page.locator(f".st-key-{key} button[aria-label='Open']").first.click()
            try:
                options.first.wait_for(timeout=5_000)
                break
            except Exception:
                wait_idle(self.page)
        options.first.click()
        wait_idle(self.page)

    def button(self, key: str):
        """The visible button of widget ``key`` (a horizontal container may hold hidden copies)."""
        return self.page.locator(f".st-key-{key} button:visible").first

    def chosen(self, key: str, page=None) -> str:
        """The text selectbox ``key`` shows."""
        return (page or self.page).locator(f".st-key-{key} [role='combobox']").input_value()

    def wait_state(self, run_id: str, states: tuple[str, ...], timeout: float = 300):
        from segcore import runs

        deadline = time.time() + timeout
        while time.time() < deadline:
            state = runs.open_run(run_id, self.ws).true_status().get("state")
            if state in states:
                return state
            self.page.wait_for_timeout(250)
        raise AssertionError(f"run {run_id} is {state} after {timeout} s, not one of {states}")

    def download(self, key: str, to: Path) -> Path:
        """Press download button ``key``; the file must arrive, non-empty."""
        button = self.button(key)
        with self.page.expect_download(timeout=30_000) as info:
            button.click()
        dl = info.value
        assert dl.failure() is None, f"{key}: the download failed: {dl.failure()}"
        path = to / dl.suggested_filename
        dl.save_as(path)
        assert path.stat().st_size > 0, f"{key}: {path.name} is empty"
        return path


def test_own_data_train_stop_resume_compare_predict_share(chromium, server, workspace, shared_datasets, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from segcore import runs

    shots = Path(os.environ.get("SEGCORE_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    isbi_zip = make_zip(shared_datasets / "isbi2012-membrane", tmp_path / "isbi.zip")
    camvid_zip = make_zip(shared_datasets / "camvid-subset", tmp_path / "camvid.zip")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        j = Journey(page, workspace, shots)
        try:
            page.goto(server)
            wait_idle(page, 120_000)
            expect(page.get_by_text("The demo dataset is ready:")).to_be_visible(timeout=60_000)
            j.shot("home")

            # ---------------------------------------------------------------- Data: two real zips
            nav(page, "Data")
            for archive, options, name in ((isbi_zip, None, "isbi"), (camvid_zip, {"classes": CAMVID_CLASSES, "ignore": 11}, "camvid")):
                expander = page.locator("details").filter(has_text="Import a dataset").first
                if expander.get_attribute("open") is None:
                    expander.locator("summary").first.click()
                page.locator(".st-key-import_zip input[type='file']").set_input_files(str(archive))
                wait_idle(page)
                if options:
                    inner = page.locator("details").filter(has_text="Import options (optional)").last
                    if inner.get_attribute("open") is None:
                        inner.locator("summary").first.click()
                    page.locator(".st-key-import_options textarea").fill(json.dumps(options))
                    page.locator(".st-key-import_options textarea").press("Tab")
                    wait_idle(page)
                j.button("import_go").click()
                expect(page.get_by_text(f"Imported {name}")).to_be_visible(timeout=120_000)
                wait_idle(page)
                j.no_exception()
                j.shot(f"data-imported-{name}")
            # the ISBI problems say in full what to do; no "0 files" for a problem about the whole dataset
            j.choose("dataset", "isbi")
            page.get_by_role("tab", name="Problems").click()
            wait_idle(page)
            expect(page.get_by_text("\"Invert binary masks\" ticked on the Data page")).to_be_visible()
            j.shot("data-isbi-problems", page.get_by_text("\"Invert binary masks\" ticked on the Data page"))
            page.get_by_role("tab", name="Class frequencies").click()
            wait_idle(page)
            j.shot("data-isbi-frequencies", page.locator('[data-testid="stPlotlyChart"]'))
            # CamVid has train and val folders but no test folder: the subset split warns
            j.choose("dataset", "camvid")
            page.get_by_role("tab", name="Split").click()
            wait_idle(page)
            j.choose("split_method", "subset")
            expect(page.get_by_text("no test images").first).to_be_visible()
            j.shot("data-camvid-subset-split", page.get_by_text("no test images"))
            j.no_exception()

            # ---------------------------------------------------------------- Train: each dataset, a tiny run on the second
            nav(page, "Train")
            for name in ("isbi", "demo", "camvid"):
                j.choose("train_dataset", name)
                j.no_exception()
                expect(page.get_by_text(f"{name}: ").first).to_be_visible()
            slider_move(page, "train_depth", -1)  # 4 -> 3
            slider_move(page, "train_filters", -2)  # 32 -> 8
            slider_move(page, "train_size", -3)  # 128 -> 32
            page.locator(".st-key-train_epochs input").fill("4")
            page.locator(".st-key-train_epochs input").press("Enter")
            page.locator(".st-key-train_batch input").fill("16")
            page.locator(".st-key-train_batch input").press("Enter")
            page.locator(".st-key-train_name input").fill("camvid-tiny")
            page.locator(".st-key-train_name input").press("Enter")
            wait_idle(page)
            j.shot("train-form-camvid")
            j.button("train_launch").click()
            expect(page.get_by_text("Queued 1 run(s): camvid-tiny")).to_be_visible()
            (first,) = [s.run_id for s in runs.list_runs(workspace)]
            cfg = runs.open_run(first, workspace).read_config()
            assert (cfg.train.dataset, cfg.model.depth, cfg.model.filters, cfg.train.image_size, cfg.train.epochs) == ("camvid", 3, 8, 32, 4)
            # stop it while it trains, from the live panel: the panel follows without a reload
            j.wait_state(first, ("running",) + ENDED)
            stop = j.button(f"stop_{first}")
            stop.wait_for(timeout=30_000)
            stop.click()
            j.wait_state(first, ENDED)
            assert runs.open_run(first, workspace).true_status()["state"] == "stopped"
            resume = j.button(f"resume_{first}")
            resume.wait_for(timeout=15_000)
            j.shot("train-stopped", resume)
            resume.click()
            j.wait_state(first, ("finished",))
            # what next: the test Dice and links to this run's predictions
            expect(page.get_by_text("camvid-tiny has finished: test Dice")).to_be_visible(timeout=15_000)
            expect(page.get_by_role("link", name="See its predictions (Predict)")).to_be_visible()
            j.no_exception()
            j.shot("train-finished-what-next", page.get_by_text("has finished: test Dice"))

            # ---------------------------------------------------------------- Runs: re-run, stop, resume; the panel is never stale
            nav(page, "Runs")
            j.choose("run_detail", "camvid-tiny")
            j.button(f"rerun_{first}").click()
            wait_idle(page)
            second = next(s.run_id for s in runs.list_runs(workspace) if s.run_id != first)
            # the new run is in the selector, chosen (both are called camvid-tiny: the id's suffix tells them apart)
            # (the worker may pick it up before the page redraws: queued or running)
            expect(page.locator(".st-key-run_detail [role='combobox']")).to_have_value(
                re.compile(rf"camvid-tiny · {second.rsplit('-', 1)[-1]} · (queued|running)"), timeout=15_000)
            j.shot("runs-rerun-selected")
            j.wait_state(second, ("running",) + ENDED)
            j.button(f"runs_stop_{second}").wait_for(timeout=30_000)
            j.button(f"runs_stop_{second}").click()
            wait_idle(page)
            status = page.locator('[data-testid="stMetric"]').first
            expect(status).not_to_contain_text("running")  # "stopping", then "stopped"
            j.wait_state(second, ENDED)
            expect(status).to_contain_text("stopped", timeout=15_000)
            j.shot("runs-stopped")
            j.button(f"runs_resume_{second}").click()
            wait_idle(page)
            expect(status).not_to_contain_text("stopped")  # "queued" or "running" at once
            j.wait_state(second, ("finished",))
            expect(status).to_contain_text("finished", timeout=15_000)
            j.no_exception()
            j.shot("runs-finished")
            # every download of the run arrives and opens
            got = {k: j.download(f"{k}_{second}", downloads) for k in ("dl_model", "dl_cfg", "dl_hist", "dl_eval")}
            import keras
            import pandas as pd

            import segcore.losses  # noqa: F401  (the custom objects a .keras file names, as a user's script imports them)
            import segcore.metrics  # noqa: F401
            import segcore.models.layers  # noqa: F401

            model = keras.models.load_model(got["dl_model"], compile=False)
            assert model.output_shape[-1] == len(CAMVID_CLASSES)
            assert json.loads(got["dl_cfg"].read_text())["config"]["train"]["dataset"] == "camvid"
            assert len(pd.read_csv(got["dl_hist"])) == 4
            assert "per_class" in json.loads(got["dl_eval"].read_text())
            # the results table refreshes every 5 s while runs are active: the finished re-run joins it
            deadline = time.time() + 30
            while len(results := pd.read_csv(j.download("study_csv", downloads), index_col=0)) < 2 and time.time() < deadline:
                page.wait_for_timeout(2_000)
            assert len(results) == 2 and results["Dice"].between(0, 1).all()
            assert j.download("study_md", downloads).read_text().startswith("| run |")

            # ---------------------------------------------------------------- Compare: both runs, downloads, a narrow screen
            nav(page, "Compare")
            expect(page.get_by_text("heatmap / prediction").first).to_be_visible(timeout=60_000)
            wait_idle(page)
            j.no_exception()
            j.shot("compare")
            table = pd.read_csv(j.download("cmp_csv", downloads), index_col=0)
            assert list(table.index[-2:]) == ["macro", "micro"] and table.shape[1] == 2
            per_image = pd.read_csv(j.download("cmp_diff_csv", downloads), index_col=0)
            assert len(per_image) > 0
            page.set_viewport_size({"width": 420, "height": 900})
            wait_idle(page)
            row = page.locator(".st-key-cmp_grid [data-testid='stHorizontalBlock']").nth(1)
            tops = [row.locator("[data-testid='stImage']").nth(k).bounding_box()["y"] for k in range(3)]
            assert max(tops) - min(tops) < 5, tops  # input and both runs side by side, not stacked
            j.shot("compare-narrow", row)
            page.set_viewport_size({"width": 1400, "height": 1000})

            # ---------------------------------------------------------------- Predict: a dataset sample, the mask downloaded
            nav(page, "Predict")
            j.choose("pred_run", "camvid-tiny")
            page.locator(".st-key-pred_source").get_by_text("Dataset samples").click()
            expect(page.get_by_text("predicted mask over the image", exact=True)).to_be_visible(timeout=120_000)
            wait_idle(page, 120_000)
            j.no_exception()
            j.shot("predict")
            mask_key = page.locator("[class*='st-key-dl_0_']").first.get_attribute("class").split("st-key-")[1].split()[0]
            mask = cv2.imread(str(j.download(mask_key, downloads)), cv2.IMREAD_UNCHANGED)
            assert mask is not None and mask.shape == (360, 480) and mask.max() < len(CAMVID_CLASSES)
            shared = page.url
            assert "run=" in shared
            chosen_run = shared.split("run=")[1].split("&")[0]

            # ---------------------------------------------------------------- a teammate follows the shared link
            other = browser.new_context(viewport={"width": 1400, "height": 1000})
            try:
                mate = other.new_page()
                mate.goto(shared)
                wait_idle(mate, 120_000)
                expect(mate.get_by_role("heading", name="Predict", exact=True)).to_be_visible(timeout=60_000)
                label = j.chosen("pred_run", mate)
                assert chosen_run.rsplit("-", 1)[-1] in label, (label, chosen_run)
                mate.goto(f"{server}/compare?run={first}")
                wait_idle(mate, 120_000)
                expect(mate.get_by_text("heatmap / prediction").first).to_be_visible(timeout=60_000)
                assert j.chosen("cmp_dataset", mate) == "camvid"
                mate.screenshot(path=str(shots / "shared-link-compare.png"), full_page=True)
                assert not mate.locator('[data-testid="stException"]').count()
            finally:
                other.close()
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
