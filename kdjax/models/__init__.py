"""Model zoo. Importing this package registers every architecture (one module per family)."""

from kdjax.models.registry import get_model, list_models, register_model  # noqa: F401
from kdjax.models import convnet  # noqa: F401
