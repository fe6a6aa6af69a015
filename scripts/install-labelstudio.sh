#!/usr/bin/env bash
# Install the Label Studio server the annotation integration tests start themselves, into its
# own virtual environment (.venv-labelstudio/ in the repository root): it pins Django and
# dozens of other packages that must not meet lensloop's own .venv.
# Idempotent: a stamp file names the installed version, and a second run does nothing.
# On failure it says why and exits 0, so the Label Studio tests skip; under
# LENSLOOP_REQUIRE_INTEGRATION=1 (CI) it exits 1 instead.
set -euo pipefail

LABEL_STUDIO_SPEC="label-studio==1.23.2"
PYTHON="${PYTHON:-python3.11}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-labelstudio"
STAMP="$VENV/.installed"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$LABEL_STUDIO_SPEC" ]]; then
    exit 0
fi

fail() {
    echo "install-labelstudio: $1" >&2
    echo "install-labelstudio: the Label Studio integration tests will skip (or fail under LENSLOOP_REQUIRE_INTEGRATION=1)." >&2
    if [[ "${LENSLOOP_REQUIRE_INTEGRATION:-}" == "1" ]]; then
        exit 1
    fi
    exit 0
}

if ! command -v "$PYTHON" >/dev/null; then
    fail "cannot find '$PYTHON' to create $VENV (set PYTHON=/path/to/python3.11)."
fi

echo "install-labelstudio: installing $LABEL_STUDIO_SPEC into $VENV (about 1 GB, a minute or two)..."
rm -f "$STAMP"
if [[ ! -x "$VENV/bin/python" ]] && ! "$PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    fail "could not create a virtual environment with '$PYTHON -m venv $VENV'."
fi
if ! "$VENV/bin/python" -m pip install --quiet "$LABEL_STUDIO_SPEC"; then
    rm -rf "$VENV"  # a half-installed environment would only confuse the next run
    fail "pip could not install $LABEL_STUDIO_SPEC (no access to the package index?); see pip's output above."
fi
# Only check the entry point exists: running it, even with --version, sets up a database under ~.
if [[ ! -x "$VENV/bin/label-studio" ]]; then
    rm -rf "$VENV"
    fail "$LABEL_STUDIO_SPEC installed, but $VENV/bin/label-studio is missing."
fi
echo "$LABEL_STUDIO_SPEC" >"$STAMP"
echo "install-labelstudio: done ($VENV/bin/label-studio)."
