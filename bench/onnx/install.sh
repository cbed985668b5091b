#!/usr/bin/env bash
# Makes (or completes) the Python venv of the ONNX checks, outside the repository:
#   KILN_ONNX_VENV   where (default $HOME/.cache/kiln-onnx)
#   PYTHON           the interpreter that creates it (default python3; needs the venv module)
# Installs the pinned versions of bench/onnx/requirements.txt. torch is large: if the peers'
# venv (bench/install.sh, $KILN_PEERS_VENV or $HOME/.cache/kiln-peers) already has torch 2.15.0,
# its site-packages are linked into this venv (a .pth file) instead of installing torch again.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${KILN_ONNX_VENV:-$HOME/.cache/kiln-onnx}"
PEERS="${KILN_PEERS_VENV:-$HOME/.cache/kiln-peers}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating the venv $VENV"
    "$PYTHON" -m venv "$VENV" || { echo "error: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
PY="$VENV/bin/python"
SITE="$("$PY" -c 'import site; print(site.getsitepackages()[0])')"
if [ -x "$PEERS/bin/python" ] && "$PEERS/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.15.0')" 2>/dev/null; then
    "$PEERS/bin/python" -c 'import site; print(site.getsitepackages()[0])' > "$SITE/zz-kiln-peers.pth"
    echo "torch: using the peers' venv $PEERS"
fi

mapfile -t wanted < <(grep -vE '^\s*(#|$)' "$HERE/requirements.txt")
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
"$PY" -c "
import importlib.metadata as m, platform
print('python', platform.python_version())
for n in ('numpy', 'onnx', 'onnxruntime', 'torch'):
    try: print(f'{n:12s} {m.version(n)}')
    except m.PackageNotFoundError: print(f'{n:12s} MISSING')
"
echo "venv: $VENV (python: $PY)"
