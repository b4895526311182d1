#!/usr/bin/env bash
# MLServer in a virtual environment of its own (.tools/mlserver), for the benchmark's
# 1000-row V2 tensor comparison (bench/mlserver.py). Its dependency pins differ from
# BentoML's, so it never goes into .venv. Optional: `make bench` reports "not run"
# without it.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
DEST=${1:-.tools/mlserver}
if [[ -x "$DEST/bin/mlserver" ]]; then
  echo "MLServer already in $DEST"
  exit 0
fi
"$PYTHON" -m venv "$DEST"
"$DEST/bin/python" -m pip install --quiet --upgrade pip
"$DEST/bin/python" -m pip install --quiet 'mlserver>=1.7,<2' 'mlserver-sklearn>=1.7,<2'
"$DEST/bin/mlserver" --version
