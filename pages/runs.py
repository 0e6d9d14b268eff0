"""Runs page."""

import streamlit as st

st.title("Runs")
st.info("This page is not ready yet.")
