"""Hand-written kernels the model zoo can use instead of XLA's defaults (chosen per backend, see layers.py).

`conv.py`: the convolution's VJP for XLA:CPU; `onednn/`: optional oneDNN convolutions as XLA FFI calls (built by
install.sh, used with KDJAX_CONV=onednn)."""
