#!/usr/bin/env bash
# Install segcore into ./.venv (first time only) and open the dashboard.
# The demo dataset is generated and registered on first start.
#
# The Keras backend follows the machine: with an NVIDIA GPU (nvidia-smi lists
# one) it installs requirements-gpu.txt and trains on JAX with CUDA; otherwise
# requirements.txt, TensorFlow on the CPU. SEGCORE_ACCELERATOR=nvidia|cpu
# overrides the detection, KERAS_BACKEND the backend.
#
# The server binds to localhost (.streamlit/config.toml). Bound beyond it
# (--server.address 0.0.0.0) it refuses to start unless sign-in is configured
# ([auth] in .streamlit/secrets.toml) or --allow-open (SEGCORE_ALLOW_OPEN=1)
# says to serve without it: see docs/security.md.
# Usage: bash scripts/start.sh [--allow-open] [extra streamlit flags, e.g. --server.port 8600]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
args=()
for arg in "$@"; do
  if [ "$arg" = "--allow-open" ]; then export SEGCORE_ALLOW_OPEN=1; else args+=("$arg"); fi
done
set -- ${args[@]+"${args[@]}"}
# Before anything is installed: only the standard library is needed to read the flags and secrets.toml.
PYTHONPATH=. "$PY" -m segcore.access "$@"
accelerator=${SEGCORE_ACCELERATOR:-}
if [ -z "$accelerator" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then
    accelerator=nvidia
  else
    accelerator=cpu
  fi
fi
case "$accelerator" in
  nvidia) requirements=requirements-gpu.txt; export KERAS_BACKEND=${KERAS_BACKEND:-jax} ;;
  cpu) requirements=requirements.txt ;;
  *) echo "SEGCORE_ACCELERATOR must be nvidia or cpu, got '$accelerator'" >&2; exit 2 ;;
esac
if [ -n "${SEGCORE_START_DRY_RUN:-}" ]; then
  echo "accelerator=$accelerator requirements=$requirements backend=${KERAS_BACKEND:-tensorflow}"
  exit 0
fi
# Each step says what it does before it starts: the first start installs for a minute or more in silence otherwise.
say() { echo "segcore: $*"; }
if [ ! -x .venv/bin/python ]; then
  say "creating a Python environment in .venv (first start only)"
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat "$requirements" requirements-core.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the packages of $requirements into .venv ($accelerator machine); the first time this takes a few minutes"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$requirements"
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
  say "packages installed"
fi
say "checking the demo dataset (generated on the first start)"
.venv/bin/python -m segcore demo --quiet
say "opening the dashboard (the address follows)"
exec .venv/bin/python -m streamlit run streamlit_app.py "$@"
