#!/usr/bin/env bash
# Install segcore into ./.venv (first time only) and open the dashboard.
# The demo dataset is generated and registered on first start.
# Usage: bash scripts/start.sh [extra streamlit flags, e.g. --server.port 8600]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
.venv/bin/python -m segcore demo --quiet
exec .venv/bin/python -m streamlit run streamlit_app.py "$@"
