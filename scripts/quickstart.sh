#!/usr/bin/env bash
# One command: install channel-worker into .venv/, start the bundled booking system
# (examples/booking_api.py) in the background, and talk to the restaurant worker, whose actions
# call it. The booking system stops when the conversation does.
#   bash scripts/quickstart.sh                 # chat in the terminal
#   bash scripts/quickstart.sh --script FILE   # any other `channel-worker chat` options pass through
#   QUICKSTART_WORKER=examples/account_support.yaml bash scripts/quickstart.sh   # the bank's desk
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-uv.sh
uv sync --frozen --quiet

# The worker signs the outcome records it delivers with this; the booking system checks it.
export OUTCOME_WEBHOOK_SECRET="${OUTCOME_WEBHOOK_SECRET:-quickstart-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}"
api_log="$(mktemp)"
.venv/bin/python -m examples.booking_api --port "${BOOKING_API_PORT:-0}" >"$api_log" 2>&1 &
api_pid=$!
trap 'kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true; rm -f "$api_log"' EXIT
for _ in $(seq 100); do
    grep -q "listening on" "$api_log" && break
    kill -0 "$api_pid" 2>/dev/null || break
    sleep 0.1
done
url="$(sed -n 's/^booking API listening on //p' "$api_log" | head -n 1)"
if [ -z "$url" ]; then
    echo "the booking system did not start:" >&2
    cat "$api_log" >&2
    exit 1
fi
export BOOKING_API_URL="$url" BANK_API_URL="$url/bank"
echo "booking system running at $url (stops when you leave the chat)"

status=0
.venv/bin/channel-worker chat --worker "${QUICKSTART_WORKER:-examples/restaurant_booking.yaml}" "$@" || status=$?

# What the worker did in the business's own system: the requests it made, what the system holds.
echo
echo "Requests the worker made to the booking system:"
grep -E '"(GET|POST) ' "$api_log" | sed -E 's/^.*"((GET|POST) [^ ]+) HTTP[^"]*" ([0-9]+).*$/  \1 -> \3/' || echo "  (none)"
.venv/bin/python - "$url" <<'PY' || true
import json, sys, urllib.request
base = sys.argv[1]
get = lambda path: json.load(urllib.request.urlopen(base + path, timeout=5))
for b in get("/bookings"):
    print(f"Booking {b['booking_id']}: {b['people']} on {b['date']} at {b['time']} for {b['name']} ({b['status']})")
for r in get("/hooks/outcomes"):  # the bank's /bank/hooks/outcomes lands in the same list
    print(f"Outcome record received, signature checked: {r['task']} -> {r['outcome']} ({r['conversation_id']})")
PY
exit "$status"
