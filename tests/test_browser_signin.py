"""Sign-in for real: Streamlit's st.login against an OpenID Connect provider this test serves on localhost,
in real Chromium. An unsigned visitor sees only the sign-in page; a viewer can browse and write notes but
not launch, stop, resume or delete; a trainer can launch, and act on their own runs only.

Needs Chromium at /usr/bin/chromium (see tests/test_browser.py) and Authlib (requirements-core.txt).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_browser import _free_port, chromium, dashboard, nav, wait_idle  # noqa: F401 (chromium is a fixture)
from tests.test_pages import make_dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest.importorskip("authlib", reason="st.login needs Authlib (requirements-core.txt)")

SHOTS = Path(os.environ.get("SEGCORE_SCREENSHOTS", "")) if os.environ.get("SEGCORE_SCREENSHOTS") else None
USERS = {"vera@lab.org": {"name": "Vera Viewer"}, "tom@lab.org": {"name": "Tom Trainer", "groups": ["ml-team"]},
         "tina@lab.org": {"name": "Tina Trainer", "groups": ["ml-team"]}}


@pytest.fixture
def signed_server(workspace, tmp_path):
    """A dashboard with sign-in against a provider on localhost; roles in server.json; two stopped runs."""
    from tests._oidc_provider import OIDCProvider

    from segcore import queue as run_queue
    from segcore.access import Actor
    from segcore.config import ModelConfig, RunConfig, TrainConfig

    make_dataset(workspace, n=8, size=32)
    (workspace.settings_path).write_text('{"roles": {"group:ml-team": "trainer"}, "default_role": "viewer"}')
    cfg = RunConfig(model=ModelConfig(depth=3, filters=8), train=TrainConfig(dataset="demo", epochs=1, image_size=32))
    run_ids = {}
    for who in ("tom@lab.org", "tina@lab.org"):
        actor = Actor(who=who, role="trainer", signed_in=True)
        from dataclasses import replace

        run_id = run_queue.launch(replace(cfg, name=f"run-of-{who.split('@')[0]}"), workspace, start_worker=False, actor=actor)
        run_queue.stop(run_id, workspace, actor=actor)
        run_ids[who] = run_id
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with OIDCProvider("segcore-test", "s3cret", USERS) as idp:
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "{url}/oauth2callback"\n'
            'cookie_secret = "a-long-random-cookie-secret-for-the-test"\n'
            'client_id = "segcore-test"\nclient_secret = "s3cret"\n'
            f'server_metadata_url = "{idp.metadata_url}"\n'
        )
        with dashboard(workspace, tmp_path, "--secrets.files", str(secrets_file), port=port):
            yield url, run_ids, idp


def shot(page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, url: str, email: str) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    wait_idle(page, 120_000)
    page.get_by_role("button", name="Log in").click()
    page.locator("#email").fill(email)
    page.locator("#signin").click()
    page.wait_for_url(url + "/", timeout=60_000)
    wait_idle(page, 120_000)
    expect(page.get_by_text(f"Signed in as {USERS[email]['name']}")).to_be_visible(timeout=60_000)


def open_run(page, url: str, run_id: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/runs?run={run_id}")
    wait_idle(page, 120_000)
    expect(page.get_by_text(f"Run id {run_id}")).to_be_visible(timeout=60_000)


def test_an_unsigned_visitor_sees_only_the_sign_in_page(chromium, signed_server):
    from playwright.sync_api import expect, sync_playwright

    url, run_ids, _ = signed_server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            for path in ("", "/runs", f"/runs?run={run_ids['tom@lab.org']}", "/train", "/data"):
                page.goto(url + path)
                wait_idle(page, 120_000)
                expect(page.get_by_text("This dashboard is shared: log in to use it.")).to_be_visible(timeout=60_000)
                assert page.locator('[data-testid="stSidebarNav"]').count() == 0
                body = page.locator('[data-testid="stApp"]').inner_text()
                assert "run-of-tom" not in body and "Workspace:" not in body and "Queue this run" not in body, body
                assert page.get_by_role("button").filter(has_text="Log in").count() == 1
                assert "Page not found" not in body  # a bookmarked page gets the sign-in page, not an error
            shot(page, "signin-unsigned")
        finally:
            browser.close()


def test_a_viewer_browses_and_notes_but_cannot_launch_stop_or_delete(chromium, signed_server, workspace):
    from playwright.sync_api import expect, sync_playwright

    from segcore import runs

    url, run_ids, idp = signed_server
    tom_run = run_ids["tom@lab.org"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            sign_in(page, url, "vera@lab.org")
            assert idp.tokens_issued[-1]["email"] == "vera@lab.org"
            expect(page.get_by_text("A viewer: browse, compare, predict, notes.")).to_be_visible()
            open_run(page, url, tom_run)
            for key in (f"runs_resume_{tom_run}", f"rerun_{tom_run}"):
                expect(page.locator(f".st-key-{key} button").first).to_be_disabled()
            expect(page.locator('[data-testid="stPopover"] button').first).to_be_disabled()
            # notes are a viewer's to write, and the History says who wrote them
            page.locator(f".st-key-notes_{tom_run} textarea").fill("the disc edges look soft")
            page.locator(f".st-key-notes_{tom_run} textarea").press("Control+Enter")
            wait_idle(page)
            page.locator(f".st-key-save_notes_{tom_run} button").first.click()
            wait_idle(page)
            expect(page.get_by_text("History (3)")).to_be_visible(timeout=30_000)
            page.get_by_text("History (3)").scroll_into_view_if_needed()
            shot(page, "signin-viewer-runs")
            entries = runs.open_run(tom_run, workspace).read_audit()
            assert [(e.who, e.action) for e in entries] == [("tom@lab.org", "launch"), ("tom@lab.org", "stop"), ("vera@lab.org", "notes")]
            nav(page, "Train")
            expect(page.locator(".st-key-train_launch button").first).to_be_disabled()
            expect(page.get_by_text("is a viewer; launch needs the trainer role")).to_be_visible()
            shot(page, "signin-viewer-train")
            assert len(runs.list_runs(workspace)) == 2  # nothing was launched
        finally:
            browser.close()


def test_a_trainer_launches_and_acts_on_their_own_runs_only(chromium, signed_server, workspace):
    from playwright.sync_api import expect, sync_playwright

    from segcore import runs

    url, run_ids, _ = signed_server
    tom_run, tina_run = run_ids["tom@lab.org"], run_ids["tina@lab.org"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            sign_in(page, url, "tom@lab.org")
            expect(page.get_by_text("A trainer: browse, compare, predict, notes, import, launch;")).to_be_visible()
            open_run(page, url, tina_run)  # a teammate's run: no resume or delete
            expect(page.locator(f".st-key-runs_resume_{tina_run} button").first).to_be_disabled()
            expect(page.locator('[data-testid="stPopover"] button').first).to_be_disabled()
            open_run(page, url, tom_run)  # their own
            expect(page.locator(f".st-key-runs_resume_{tom_run} button").first).to_be_enabled()
            expect(page.locator('[data-testid="stPopover"] button').first).to_be_enabled()
            nav(page, "Train")
            expect(page.locator(".st-key-train_launch button").first).to_be_enabled()
            open_run(page, url, tom_run)
            page.locator(f".st-key-rerun_{tom_run} button").first.click()  # a launch
            wait_idle(page)
            expect(page.get_by_text("with the settings and split of")).to_be_visible(timeout=30_000)
            new = [s.run_id for s in runs.list_runs(workspace) if s.run_id not in (tom_run, tina_run)]
            assert len(new) == 1
            (entry,) = runs.open_run(new[0], workspace).read_audit()
            assert (entry.who, entry.role, entry.action, entry.detail) == ("tom@lab.org", "trainer", "launch", f"re-run of {tom_run}")
            expect(page.get_by_text("History (1)")).to_be_visible()
            page.get_by_text("History (1)").scroll_into_view_if_needed()
            shot(page, "signin-trainer-runs")
        finally:
            browser.close()
