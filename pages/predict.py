"""Predict page."""

import streamlit as st

st.title("Predict")
st.info("This page is not ready yet.")
