#!/usr/bin/env bash
# Everything the test suite needs, on a fresh machine, then the suite itself.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: Chromium for the browser tests, the real Fashion-MNIST files, Node.js for
# the front end (built into alwidget/static by the editable install, unit-tested below).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing system packages: ${need[*]} (install them with: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

# Python environment. The constraints file pins the torch/torchvision pair that
# works on this machine so no install swaps torch silently.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -c constraints-cpu.txt -e ".[test]"

# The front end's unit tests (node:test, no browser), then the Python suite (browser tests included).
(cd js && npm ci --no-audit --no-fund --loglevel=error && npm test)
.venv/bin/python -m pytest -q -ra "$@"
