#!/usr/bin/env bash
# Install the system packages lensloop's integration tests need: the PostgreSQL server
# they start themselves, and Chromium for the web UI's browser test (Playwright drives
# Debian's /usr/bin/chromium; nothing is downloaded by `playwright install`).
# Idempotent: installs only what is missing, and does nothing when all are present.
set -euo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

have_chromium() {
    [[ -x /usr/bin/chromium ]]
}

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium)
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    for package in "${missing[@]}"; do
        case $package in
            postgresql) what="PostgreSQL server"; tests="the PostgreSQL catalog tests" ;;
            chromium) what="Chromium (/usr/bin/chromium)"; tests="the web UI browser test" ;;
        esac
        echo "install-sysdeps: $what not found and cannot apt-get install it (not root or not Debian);" >&2
        echo "install-sysdeps: $tests will skip (or fail under LENSLOOP_REQUIRE_INTEGRATION=1)." >&2
    done
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postgresql starts a cluster on port 5432; our tests start their own on a free port.
have_postgres
have_chromium
