"""Hand-written kernels the model zoo can use instead of XLA's defaults (chosen per backend, see layers.py)."""
