#!/usr/bin/env bash
# One command: install channel-worker into .venv/ and talk to the bundled restaurant worker.
#   bash scripts/quickstart.sh                 # chat in the terminal
#   bash scripts/quickstart.sh --script FILE   # any other `channel-worker chat` options pass through
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-uv.sh
uv sync --frozen --quiet
exec .venv/bin/channel-worker chat --worker examples/restaurant_booking.yaml "$@"
