"""Native kernels for XLA:CPU (optional; built by install.sh, see each subpackage)."""
