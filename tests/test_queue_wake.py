"""The run queue is woken at the entry points: each page load and each command about runs, never by reading the workspace."""

from __future__ import annotations

import pytest

from test_pages import app, demo_ws, make_run  # noqa: F401  (demo_ws is a fixture)


@pytest.fixture
def started(monkeypatch):
    import segcore.queue.launcher as launcher

    calls = []
    monkeypatch.setattr(launcher, "ensure_worker", lambda ws=None: calls.append(ws) or True)
    monkeypatch.setattr(launcher, "worker_running", lambda ws=None: False)
    return calls


def test_a_page_load_starts_a_worker_for_waiting_runs_once(demo_ws, started):
    make_run(demo_ws, state="queued")
    at = app().run()
    assert not at.exception
    assert len(started) == 1  # the entry script woke the queue, once, though the page reads the workspace often


def test_a_page_load_with_nothing_queued_starts_nothing(demo_ws, started):
    make_run(demo_ws, state="finished")
    at = app().run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception and started == []


def test_reading_the_workspace_starts_nothing(demo_ws, started):
    from app_pages import _ui

    make_run(demo_ws, state="queued")
    assert _ui.workspace().root == demo_ws.root
    assert started == []


