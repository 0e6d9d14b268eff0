#!/usr/bin/env bash
# Install what the tests need into ./.venv and run the whole suite:
# once on the TensorFlow backend (everything), once on the PyTorch backend
# (the backend-portable model, loss, metric and training tests).
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements-dev.sha
want=$(cat requirements-core.txt requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
# The browser test drives Debian's Chromium; install it when we can (root).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export PYTHONHASHSEED=0 TF_CPP_MIN_LOG_LEVEL=2
echo "== pytest, KERAS_BACKEND=tensorflow"
KERAS_BACKEND=tensorflow .venv/bin/python -m pytest "$@"
echo "== pytest, KERAS_BACKEND=torch (backend-portable tests)"
KERAS_BACKEND=torch .venv/bin/python -m pytest -m backend "$@"
