#!/usr/bin/env bash
# Makes (or completes) the Python venv of the peer benchmarks, outside the repository:
#   KILN_PEERS_VENV  where (default $HOME/.cache/kiln-peers)
#   PYTHON           the interpreter that creates it (default python3; needs the venv module)
# Installs the pinned versions of bench/requirements.txt (also what Tests/Fixtures/make_fixtures.py
# needs), skips what is already there at the right version, and prints the versions.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${KILN_PEERS_VENV:-$HOME/.cache/kiln-peers}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating the venv $VENV"
    "$PYTHON" -m venv "$VENV" || { echo "error: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
PY="$VENV/bin/python"

# Which pinned requirements are missing or at another version?
mapfile -t wanted < <(grep -vE '^\s*(#|$)' "$BENCH/requirements.txt")
missing=()
for requirement in "${wanted[@]}"; do
    name="${requirement%%[\[=]*}"
    version="${requirement##*==}"
    if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('$name').split('+')[0] != '$version')" 2>/dev/null; then
        missing+=("$requirement")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install "${missing[@]}"
else
    echo "the venv has every pinned version"
fi

"$PY" - <<'PYTHON'
import importlib.metadata as m
import platform
print("python", platform.python_version())
for name in ("numpy", "threadpoolctl", "torch", "jax", "jaxlib", "tinygrad"):
    try:
        print(f"{name:14s} {m.version(name)}")
    except m.PackageNotFoundError:
        print(f"{name:14s} MISSING")
PYTHON
echo "venv: $VENV (python: $PY)"
