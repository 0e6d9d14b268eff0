"""The segcore dashboard: ``streamlit run streamlit_app.py``.

This file only routes: it prepares the demo dataset once per server and hands
over to the pages in ``pages/``. All state lives in the workspace folder, so a
reload or a server restart loses nothing.
"""

from __future__ import annotations

import streamlit as st

from segcore.workspace import get_workspace

st.set_page_config(page_title="segcore", page_icon=":material/blur_on:", layout="wide")


def require_login() -> None:
    """With an ``[auth]`` section in ``.streamlit/secrets.toml``, every page asks for a login first.

    Streamlit's own OpenID Connect login (``st.login``; needs the ``Authlib``
    package). Without that section the dashboard is open to whoever can reach
    it: see docs/security.md.
    """
    try:
        configured = "auth" in st.secrets
    except FileNotFoundError:  # no secrets.toml at all
        configured = False
    if not configured:
        return
    if not getattr(st.user, "is_logged_in", False):  # absent where no login context exists (tests)
        st.title("segcore")
        st.info("This dashboard is shared: log in to use it.")
        st.button("Log in", key="login", type="primary", on_click=st.login)
        st.stop()
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

page = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/photo_library:", url_path="data"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:", url_path="train"),
        st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:", url_path="runs"),
        st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
        st.Page("pages/predict.py", title="Predict", icon=":material/auto_fix_high:", url_path="predict"),
    ]
)
st.sidebar.caption(f"Workspace: `{get_workspace().root}`")
page.run()
