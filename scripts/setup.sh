#!/usr/bin/env bash
# Idempotent set-up for a fresh machine (Debian 12, Python >= 3.11, Node >= 20):
# Python virtual environment (.venv) with torch==2.13.0 installed first (the CPU wheel;
# a bare `torch` would pull several GB of CUDA packages), the locked Python packages,
# this project in editable mode, the pinned npm toolchain (solc, OpenZeppelin, Foundry)
# and the compiled contract artifacts. Re-running skips what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "crowdtrain needs Python >= 3.11"' \
  || { echo "Python >= 3.11 is required (found $($PY --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm (Node >= 20) is required: apt-get install nodejs npm" >&2; exit 1; }

stamp() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
want=$(stamp requirements.lock pyproject.toml)
if [ "$(cat .venv/.crowdtrain-stamp 2>/dev/null)" != "$want" ]; then
  say "installing Python packages (torch==2.13.0 first)"
  .venv/bin/python -m pip install -q --upgrade "pip>=24" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -r requirements.lock 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import torch, web3, fastapi, safetensors' \
    || { echo "Python packages failed to install; see the pip output above" >&2; exit 1; }
  echo "$want" > .venv/.crowdtrain-stamp
fi

want=$(stamp package-lock.json)
if [ "$(cat node_modules/.crowdtrain-stamp 2>/dev/null)" != "$want" ]; then
  say "installing the npm toolchain (solc, OpenZeppelin, Foundry)"
  # Not `npm ci`: the Foundry packages list optional per-platform binaries that the registry
  # does not carry for every platform, and `npm ci` rejects a lock without them. `npm install`
  # installs exactly the locked versions and leaves package-lock.json unchanged.
  npm install --no-audit --no-fund --loglevel=error
  echo "$want" > node_modules/.crowdtrain-stamp
fi
for t in anvil forge cast; do
  test -x "node_modules/@foundry-rs/$t-linux-amd64/bin/$t" || { echo "Foundry binary $t missing after npm install" >&2; exit 1; }
done
mkdir -p .bin
for t in anvil forge cast; do ln -sf "../node_modules/@foundry-rs/$t-linux-amd64/bin/$t" ".bin/$t"; done
ln -sf ../scripts/solc .bin/solc

if ls contracts/src/*.sol >/dev/null 2>&1; then
  node scripts/compile_contracts.js >/dev/null
fi
say "ready: .venv, node_modules, .bin/{anvil,forge,cast,solc}"
