#!/usr/bin/env bash
# One command: install everything (system packages, Python packages from the lock file)
# and run the whole test suite. The tests start and stop their own servers on loopback.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k export  # any pytest options pass through
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-packages.sh
source scripts/ensure-uv.sh
uv sync --frozen --quiet
exec .venv/bin/python -m pytest "$@"
