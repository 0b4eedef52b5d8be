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
if command -v apt-get >/dev/null && { ! dpkg -s libdnnl-dev >/dev/null 2>&1 || ! command -v g++ >/dev/null; }; then
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libdnnl-dev g++; } \
    >/dev/null 2>&1 || true   # optional: build.py below says (once) what is missing
fi
python3 -m pip install -q -r requirements.txt
python3 kdjax/kernels/onednn/build.py --quiet || true
