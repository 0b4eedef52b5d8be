#!/usr/bin/env bash
# Installs what kdjax needs on a fresh Debian/Ubuntu machine: Fashion-MNIST (the offline default data) and the
# Python packages, then builds the optional oneDNN convolution kernels (kdjax/kernels/onednn: Debian's libdnnl-dev
# and g++; if they cannot be installed or built, one warning line and kdjax uses XLA's convolutions).
# Run as root (or with sudo available). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

# ---- Python packages: kdjax itself (editable, with its console scripts) and requirements.txt ------------------------
# Where they go:
#   * an active virtualenv (VIRTUAL_ENV, or a python3 that is a venv's): into it;
#   * a system Python that allows pip (no PEP 668 EXTERNALLY-MANAGED marker; e.g. root with a self-built Python): into
#     it, as before;
#   * an externally managed Python (PEP 668, Debian/Ubuntu's /usr/bin/python3): into a virtualenv, .venv beside this
#     script (KDJAX_VENV=DIR chooses another). The README's `python -m kdjax.main ...` and `python -m pytest -q tests`
#     then still work as written from this folder: started with a Python that lacks kdjax's packages they re-run
#     themselves with that venv's python (kdjax/__init__.py); for pytest the system Python needs pytest itself
#     (python3-pytest, installed here when apt can).
# KDJAX_PYTHON picks the interpreter (default python3); KDJAX_EXTERNALLY_MANAGED=1 takes the venv route regardless;
# KDJAX_PIP_ARGS adds pip options (e.g. --no-build-isolation offline).
PY="${KDJAX_PYTHON:-python3}"
read -r -a PIP_EXTRA <<< "${KDJAX_PIP_ARGS:-}"
externally_managed() {
  [ "${KDJAX_EXTERNALLY_MANAGED:-0}" = 1 ] && return 0
  "$PY" - <<'EOF'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if (not in_venv and os.path.isfile(marker)) else 1)
EOF
}
apt_install() {  # best effort: only where apt and root (or sudo) are available
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null || true
  fi
}
if externally_managed; then
  VENV="${KDJAX_VENV:-$PWD/.venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv --system-site-packages "$VENV" 2>/dev/null || { apt_install python3-venv; "$PY" -m venv --system-site-packages "$VENV"; }
  fi
  "$VENV/bin/python" -m pip install -q "${PIP_EXTRA[@]}" -e .
  KDJAX_PY="$VENV/bin/python"
  command -v python >/dev/null || apt_install python-is-python3
  "$PY" -c "import pytest" 2>/dev/null || apt_install python3-pytest
  echo "install.sh: $PY is externally managed (PEP 668): kdjax and its packages are in the virtualenv $VENV."
  echo "  Activate it (source $VENV/bin/activate) for kdjax-train, kdjax-infer, ...; from $PWD, \`python -m kdjax...\`"
  echo "  and \`python -m pytest\` re-run themselves there."
else
  "$PY" -m pip install -q "${PIP_EXTRA[@]}" -e .
  KDJAX_PY="$PY"
fi
# ---- end of the Python packages block ---------------------------------------------------------------------------

# ---- optional: the oneDNN convolution kernels (KDJAX_CONV=onednn); one warning line when they cannot be built -----
if command -v apt-get >/dev/null && { ! dpkg -s libdnnl-dev >/dev/null 2>&1 || ! command -v g++ >/dev/null; }; then
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libdnnl-dev g++; } \
    >/dev/null 2>&1 || true   # optional: build.py below says (once) what is missing
fi
"$KDJAX_PY" kdjax/kernels/onednn/build.py --quiet || true
