#!/usr/bin/env bash
# Install the system packages lensloop's integration tests start themselves (PostgreSQL).
# Idempotent: does nothing when they are already present.
set -euo pipefail

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if have_postgres; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "install-sysdeps: PostgreSQL server not found and cannot apt-get install it (not root or not Debian);" >&2
    echo "install-sysdeps: the PostgreSQL catalog tests will skip (or fail under LENSLOOP_REQUIRE_INTEGRATION=1)." >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian's package starts a cluster on port 5432; our tests start their own on a free port.
have_postgres
