"""Train page."""

import streamlit as st

st.title("Train")
st.info("This page is not ready yet.")
