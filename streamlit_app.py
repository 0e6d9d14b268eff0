"""The segcore dashboard: ``streamlit run streamlit_app.py``.

This file only routes: it prepares the demo dataset once per server and hands
over to the pages in ``app_pages/``. All state lives in the workspace folder, so a
reload or a server restart loses nothing.
"""

from __future__ import annotations

import streamlit as st

from app_pages import _ui
from segcore.access import NO_ACCESS, allow_open, exposure_problem, role_summary
from segcore.safetext import markdown_text
from segcore.queue.launcher import wake_queue
from segcore.workspace import get_workspace

st.set_page_config(page_title="segcore", page_icon=":material/blur_on:", layout="wide")


PAGE_PATHS = ("data", "train", "runs", "compare", "predict")


def _only(view) -> None:
    """Show ``view`` alone, whatever page the URL names, and stop: the pages and their navigation stay hidden."""
    pages = [st.Page(view, title="segcore", url_path="home", default=True)]
    pages += [st.Page(view, title="segcore", url_path=path) for path in PAGE_PATHS]  # a bookmark gets this view too
    st.navigation(pages, position="hidden").run()
    st.stop()


def _sign_in() -> None:
    st.title("segcore")
    st.info("This dashboard is shared: log in to use it.")
    st.button("Log in", key="login", type="primary", on_click=st.login)


def require_login() -> None:
    """Without sign-in, serve localhost only; with it, every page asks for a sign-in first, then shows who and their role.

    Sign-in is Streamlit's own OpenID Connect login (``st.login``; the
    ``Authlib`` package), configured by an ``[auth]`` section in
    ``.streamlit/secrets.toml``. Roles come from the workspace's
    ``server.json`` (``segcore.access``). See docs/security.md.
    """
    if not _ui.signin_on():
        try:
            problem = exposure_problem(st.get_option("server.address"), False, allow_open())
        except ValueError as exc:
            problem = str(exc)
        if problem:  # started some other way than scripts/start.sh, which refuses before starting
            _only(lambda: (st.title("segcore"), st.error(problem)))
        return
    if not getattr(st.user, "is_logged_in", False):
        _only(_sign_in)
    try:
        who = _ui.actor()
    except ValueError as exc:
        message = markdown_text(exc)
        _only(lambda: (st.title("segcore"), st.error(message), st.button("Log out", key="logout", on_click=st.logout)))
    if who.role == NO_ACCESS:
        message = markdown_text(f"You are signed in as {who.who}, who has no role on this server. "
                                "Ask whoever runs it to add you to roles in server.json.")
        _only(lambda: (st.title("segcore"), st.warning(message), st.button("Log out", key="logout", on_click=st.logout)))
    st.sidebar.markdown(f"Signed in as **{markdown_text(who.name)}** · {who.role}")
    st.sidebar.caption(f"{'An' if who.role == 'admin' else 'A'} {role_summary(who.role)}.")
    st.sidebar.button("Log out", key="logout", on_click=st.logout)


require_login()


@st.cache_resource(show_spinner="Preparing the demo dataset (first start only)…")
def prepare_demo(root: str) -> str | None:
    """Create the demo dataset in the workspace at ``root`` if it is missing; return an error message or None."""
    from segcore.data.demo import ensure_demo

    try:
        ensure_demo(get_workspace(root))
    except (ValueError, OSError) as exc:
        return str(exc)
    return None


try:
    _problem = prepare_demo(str(get_workspace().root))
except Exception as exc:  # a broken demo must not take the dashboard down
    _problem = f"{type(exc).__name__}: {exc}"
if _problem:
    st.sidebar.warning(f"Demo dataset not available: {_problem}")

# Runs waiting with no worker (one may have been killed) start one: once per page load, here at the entry.
wake_queue(get_workspace())

page = st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("app_pages/data.py", title="Data", icon=":material/photo_library:", url_path="data"),
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/table_chart:", url_path="runs"),
        st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page("app_pages/predict.py", title="Predict", icon=":material/auto_fix_high:", url_path="predict"),
    ]
)
st.sidebar.caption(f"Workspace: `{get_workspace().root}`")
page.run()
