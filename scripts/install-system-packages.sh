#!/usr/bin/env bash
# System packages the test suite needs: a PostgreSQL server and Dovecot (IMAP), both started by
# the tests on loopback, openssl for Dovecot's test certificate, and espeak-ng to make caller
# speech for the voice tests, and chromium for the review console's browser tests (Playwright drives
# /usr/bin/chromium; its own browser download is never used).
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing system packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
